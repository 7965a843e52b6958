"""A site's own real/bogus champion: the gate, the provisional state, the registry."""

import numpy as np
import pandas as pd
import pytest

from telescope_assets.resources import MlflowResource
from telescope_assets.tasks import alerts, site_models
from telescope_assets.tasks.site_learning import held_out_frames

SITE = "lapalma"


def _examples(n: int, seed: int) -> dict[str, np.ndarray]:
    """Simulated triplets standing in for a site's examples (with S/N and frame ids)."""
    from telescope_assets.simulate.training import real_bogus_examples

    arrays = real_bogus_examples(n, seed=seed)
    rng = np.random.default_rng(seed)
    return {
        "x": arrays["x"],
        "y": arrays["y"],
        "snr": rng.uniform(6, 40, n).astype(np.float32),
        "frame_id": np.asarray([f"f{i % 7}" for i in range(n)]),
    }


def test_figures_count_missed_fakes_and_bogus_passed_per_frame_at_the_threshold():
    evaluation = {
        "y": np.array([0, 0, 0, 0, 1, 2, 3, 4]),
        "snr": np.array([5.0, 12.0, 30.0, 8.0, 9, 9, 9, 9]),
        "frame_id": np.array(["a", "a", "b", "b", "a", "b", "c", "c"]),
    }
    scores = np.array([0.9, 0.4, 0.7, 0.2, 0.6, 0.1, 0.0, 0.49])
    fig = site_models.site_figures(scores, evaluation)
    assert fig["n_real"] == 4
    assert fig["n_bogus"] == 4
    assert fig["n_frames"] == 3
    assert fig["fnr"] == 0.5  # 0.4 and 0.2 below 0.5
    assert fig["fnr_snr10"] == 0.5  # of the two at S/N >= 10, the 0.4 one
    assert fig["fpr"] == 0.25
    assert fig["n_bogus_passed"] == 1
    assert fig["false_per_frame"] == pytest.approx(1 / 3)
    assert not site_models.passes_gate(fig)
    assert site_models.passes_gate(fig | {"fnr_snr10": 0.05, "false_per_frame": 0.1})
    assert not site_models.passes_gate(fig | {"fnr_snr10": 0.05, "false_per_frame": 0.11})
    assert not site_models.passes_gate(fig | {"fnr_snr10": 0.051, "false_per_frame": 0.0})
    assert site_models.loss({"fnr_snr10": 0.05, "false_per_frame": 0.1}) == pytest.approx(2.0)
    # Judged only with enough held-out fakes and frames; bogus candidates need no minimum.
    assert not site_models.enough_examples(fig)
    assert site_models.enough_examples(fig | {"n_real": 60, "n_bogus": 0})
    assert not site_models.enough_examples(fig | {"n_real": 60, "n_frames": 1})


def test_provisional_candidates_need_the_higher_score():
    cands = pd.DataFrame(
        {
            "p_real": [0.6, 0.95, 0.6, 0.95],
            "snr": [8.0, 8, 8, 4],
            "provisional": [True, True, False, False],
        }
    )
    keep = alerts.passes_threshold(cands, 0.5, 0.9, 5.0)
    assert keep.tolist() == [False, True, True, False]
    # Tables from before provisional alerts existed: nothing is provisional.
    assert alerts.passes_threshold(cands.drop(columns="provisional"), 0.5, 0.9, 5.0).tolist() == [
        True,
        True,
        True,
        False,
    ]


def test_frames_are_held_out_whole_a_quarter_and_at_least_two():
    ids = [f"lapalma-20260319-{i:04d}" for i in range(400)]
    held = held_out_frames(ids)
    assert len(held) == 100
    assert held == held_out_frames(reversed(ids))  # fixed by the ids, not drawn or ordered
    assert held_out_frames(ids[:7]) <= set(ids[:7])
    assert len(held_out_frames(ids[:7])) == 2
    assert len(held_out_frames(ids[:4])) == 2
    assert len(held_out_frames(ids[:3])) == 1
    # A frame added later moves at most one frame in or out of the held-out set.
    assert len(held_out_frames(ids[:8]) ^ held_out_frames(ids[:7])) <= 2


def test_a_site_is_provisional_until_its_own_champion_passes_the_gate(tmp_path, monkeypatch):
    import mlflow

    from telescope_assets.ml.train import fit
    from telescope_assets.tasks.models import _log_model

    store = MlflowResource(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "artifacts")
    )
    uri = store.tracking_uri
    assert site_models.scoring_model(uri, SITE) is None  # no model at all
    network = _examples(96, seed=5)
    net, _ = fit("real_bogus", {"x": network["x"], "y": network["y"]}, max_epochs=1)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with mlflow.start_run(experiment_id=store.experiment_id("real_bogus")):
        _log_model(net, "real_bogus", network["x"][:2])
    store.client().set_registered_model_alias("real_bogus", "champion", "1")
    provisional = {"name": "real_bogus", "version": "1", "provisional": True}
    assert site_models.scoring_model(uri, SITE) == provisional

    train, evaluation = _examples(64, seed=6), _examples(48, seed=7)
    tags = {"test": "1"}
    # Too few held-out examples: nothing registered, still provisional.
    report = site_models.learn_site(SITE, train, evaluation, network, store, tags)
    assert report["registered_version"] is None
    assert "too few held-out examples" in report["reason"]
    assert site_models.scoring_model(uri, SITE) == provisional

    monkeypatch.setattr(site_models, "MIN_EVAL_REAL", 5)
    monkeypatch.setattr(site_models, "MIN_EVAL_FRAMES", 2)
    monkeypatch.setattr(site_models, "FINE_TUNE_EPOCHS", 1)
    # A gate no model can pass: the fine-tuned version is registered for the record, the
    # site stays provisional.
    monkeypatch.setattr(site_models, "GATE_FNR", -1.0)
    report = site_models.learn_site(SITE, train, evaluation, network, store, tags)
    assert report["registered_version"] == "1"
    assert report["registered_from"] == "fine_tuned"
    assert not report["promoted"]
    assert "misses the site gate" in report["reason"]
    assert {"network", "fine_tuned"} <= set(report)
    assert site_models.scoring_model(uri, SITE) == provisional

    # A gate that passes: the site's own champion scores its candidates from now on.
    monkeypatch.setattr(site_models, "GATE_FNR", 1.0)
    monkeypatch.setattr(site_models, "GATE_FALSE_PER_FRAME", 100.0)
    report = site_models.learn_site(SITE, train, evaluation, network, store, tags)
    assert report["promoted"]
    assert report["site_champion"] == report["registered_version"] == "2"
    own = site_models.scoring_model(uri, SITE)
    assert own == {"name": "real_bogus_lapalma", "version": "2", "provisional": False}
    version = store.client().get_model_version("real_bogus_lapalma", "2")
    assert version.tags["network_version"] == "1"
    assert "passes the site gate" in version.tags["gate"]
    # The registered version scores the held-out examples as the report said.
    loaded = store.load_version("real_bogus_lapalma", "2")
    chosen = report["registered_from"]
    got = site_models.site_figures(site_models.p_real(loaded, evaluation), evaluation)
    assert got["fpr"] == pytest.approx(report[chosen]["fpr"])
    assert got["fnr"] == pytest.approx(report[chosen]["fnr"])
    # Another site is still provisional.
    assert site_models.scoring_model(uri, "tololo") == provisional


def test_the_fine_tuning_set_keeps_the_network_prior_and_half_its_real_examples():
    from telescope_assets.tasks.site_models import FINE_TUNE_SIZE, REAL_SHARE, _mix

    rng = np.random.default_rng(0)
    # A site with many fakes and only 4 candidates; its examples are 0, the network's 1.
    site = {"x": np.zeros((345, 1)), "y": np.r_[np.zeros(341, int), np.full(4, 2)]}
    network = {"x": np.ones((6000, 1)), "y": np.r_[np.zeros(1200, int), np.full(4800, 1)]}
    mixed = _mix(site, network, rng)
    real = mixed["y"] == 0
    assert len(mixed["y"]) == FINE_TUNE_SIZE
    assert real.mean() == pytest.approx(REAL_SHARE)  # the prior the network learned
    assert (mixed["x"][real, 0] == 0).sum() == real.sum() // 2  # half the site's fakes
    assert (mixed["x"][~real, 0] == 0).sum() == 40  # each site candidate ten times at most
    # A site with many candidates fills at most half of the bogus part.
    busy = {"x": np.zeros((700, 1)), "y": np.r_[np.zeros(100, int), np.full(600, 3)]}
    mixed = _mix(busy, network, rng)
    bogus = mixed["y"] != 0
    assert (mixed["x"][bogus, 0] == 0).sum() == bogus.sum() // 2


def test_a_model_that_passes_the_networks_simulated_bogus_fails_the_gate():
    good = {"fnr_snr10": 0.0, "false_per_frame": 0.0}
    assert site_models.passes_gate(good)  # without the network's evaluation set
    assert site_models.passes_gate(good | {"network_fpr": 0.01})
    assert not site_models.passes_gate(good | {"network_fpr": 0.02})


def test_small_residuals_of_catalogued_constant_stars_are_not_alerted():
    cands = pd.DataFrame(
        {"p_real": [0.99] * 4, "snr": [9.0] * 4, "star_fraction": [0.02, 0.3, np.nan, 0.099]}
    )
    keep = alerts.passes_threshold(cands, 0.5, 0.9, 5.0, min_star_fraction=0.1)
    assert keep.tolist() == [False, True, True, False]
    assert alerts.passes_threshold(cands, 0.5, 0.9, 5.0).all()  # the cut is an option


def test_star_fraction_is_the_difference_flux_over_the_constant_star_under_it(tmp_path):
    from telescope_assets.lake import Lake
    from telescope_assets.tasks.transients import star_fraction
    from telescope_assets_tests.conftest import small_registry

    site = small_registry()["tololo"]
    lake = Lake(str(tmp_path))
    refcat = pd.DataFrame(
        {
            "source_id": ["a", "b"],
            "ra": [150.0, 150.01],
            "dec": [2.0, 2.0],
            "r": [14.0, 15.0],
            "variable": [False, True],
        }
    )
    lake.write_parquet(site.reference_catalog.format(field="F1"), refcat)
    row = {"object": "F1", "filter": "r", "zero_point": 24.0, "exptime": 10.0}
    star_e = 10 ** (-0.4 * (14.0 - 24.0)) * 10.0  # the 14 mag star's electrons
    cands = pd.DataFrame(
        {
            "ra": [150.0 + 0.5 / 3600, 150.01, 150.02],
            "dec": [2.0] * 3,
            "flux_ap": [0.03 * star_e, 5000.0, 5000.0],
        }
    )
    got = star_fraction(lake, site, cands, row)
    assert got[0] == pytest.approx(0.03)  # 0.5" from the constant star
    assert np.isnan(got[1])  # on a known variable: never cut
    assert np.isnan(got[2])  # on no star
