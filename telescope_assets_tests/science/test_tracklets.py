"""Tracklets against the simulator's asteroids, on nights and seeds the demo never uses."""

import numpy as np
import pandas as pd
import pytest

from telescope_assets.registry import load_registry
from telescope_assets.science import tracklets
from telescope_assets.simulate.network import SimulationConfig, night_span, plan_night
from telescope_assets.simulate.sky import asteroid_positions, make_sky

#: Held-out seeds (the demo is seed 8) and nights.
SEEDS = tuple(range(21, 29))
NIGHTS = ("2026-04-10", "2026-04-11")
HALF_FRAME_DEG = 0.15  # about the demo cameras' half width
LIMIT_MAG = 20.5
POSITION_ERROR_ARCSEC = 0.3


def _night_detections(seed: int, night: str) -> pd.DataFrame:
    """Every site's detections of one night: asteroids, stationary transients, junk.

    Asteroids where the simulator has them at each exposure (brighter than the limit,
    on the frame), with astrometric noise; a stationary transient in every frame; two
    false detections per frame at random places.
    """
    registry = load_registry()
    cfg = SimulationConfig(seed=seed, nights=NIGHTS)
    sky = make_sky(seed, stars_per_field=10, mjd_span=night_span(NIGHTS))
    rng = np.random.default_rng(seed)
    rows = []
    for site in registry.sites.values():
        for exp in plan_night(site, night, sky, cfg):
            if exp.kind != "science":
                continue
            mjd = exp.when.timestamp() / 86400 + 40587.0
            frame = f"{site.name}-{mjd:.5f}"
            cosd = np.cos(np.radians(exp.dec))
            ast = sky.asteroids[sky.asteroids.field == exp.field]
            ra, dec = asteroid_positions(ast, mjd)
            on = (np.abs((ra - exp.ra) * cosd) < HALF_FRAME_DEG) & (
                np.abs(dec - exp.dec) < HALF_FRAME_DEG
            )
            on &= ast.r.to_numpy() < LIMIT_MAG
            noise = rng.normal(0, POSITION_ERROR_ARCSEC / 3600, (2, on.sum()))
            for oid, a, d, na, nd in zip(ast.object_id[on], ra[on], dec[on], *noise, strict=True):
                rows.append((frame, site.name, mjd, a + na / cosd, d + nd, oid))
            # A supernova: the same place in every frame of the field.
            rows.append((frame, site.name, mjd, exp.ra + 0.05, exp.dec - 0.05, f"SN-{exp.field}"))
            for k in range(2):
                junk = rng.uniform(-HALF_FRAME_DEG, HALF_FRAME_DEG, 2)
                rows.append(
                    (frame, site.name, mjd, exp.ra + junk[0] / cosd, exp.dec + junk[1], f"junk{k}")
                )
    return pd.DataFrame(rows, columns=["frame_id", "site", "mjd", "ra", "dec", "truth"])


@pytest.fixture(scope="module")
def linked():
    nights = []
    for seed in SEEDS:
        for night in NIGHTS:
            det = _night_detections(seed, night)
            found, labels = tracklets.link(det, night)
            nights.append((seed, night, det.assign(label=labels), found))
    return nights


def test_asteroids_with_three_detections_are_linked_into_their_own_tracklet(linked):
    n_asteroids, n_right = 0, 0
    for _seed, _night, det, _found in linked:
        ast = det[det.truth.str.contains("-A|-N", regex=True)]
        counts = ast.groupby("truth").size()
        for oid in counts[counts >= 3].index:
            n_asteroids += 1
            mine = det[det.truth == oid]
            label = mine.label.iloc[0]
            # Right: every detection of the object in one tracklet, and nothing else in it.
            n_right += bool(
                label
                and (mine.label == label).all()
                and (det[det.label == label].truth == oid).all()
            )
    assert n_asteroids >= 40
    # The target is 98 % (measured 100 %: 61 of 61 on these seeds, 2026-12-07).
    assert n_right / n_asteroids >= 0.98


def test_no_supernova_is_ever_a_moving_object_and_junk_rarely_lines_up(linked):
    junk_labels = []
    for _seed, _night, det, _found in linked:
        stationary = det[det.truth.str.startswith("SN-")]
        assert stationary.groupby("truth").size().max() >= 3  # seen often enough to tempt
        assert (stationary.label == "").all()
        junk_labels += det[det.truth.str.startswith("junk")].label.tolist()
    # Two false detections per frame (20 times the alert stream's target) over 16
    # nights: measured 3 of 768 in a tracklet (one tracklet of three across 16 hours).
    assert len(junk_labels) > 700
    assert np.mean([label != "" for label in junk_labels]) <= 0.005


def test_rates_and_directions_are_the_simulated_ones(linked):
    for seed, _night, det, found in linked:
        sky = make_sky(seed, stars_per_field=10, mjd_span=night_span(NIGHTS))
        truth = sky.asteroids.set_index("object_id")
        for t in found:
            oid = det.truth.iloc[t.members[0]]
            if oid not in truth.index:
                continue  # false tracklets are counted above
            true = truth.loc[oid]
            assert t.rate_arcsec_per_hour == pytest.approx(true.rate_arcsec_per_hour, rel=0.05)
            delta = (t.pa_deg - true.pa_deg + 180) % 360 - 180
            assert abs(delta) < 3
            assert t.rms_arcsec < 1.0


def test_one_detection_per_exposure_and_a_straight_line_only():
    hours = np.array([0.0, 0.0, 1.0, 2.0, 3.0])
    det = pd.DataFrame(
        {
            "mjd": 61000 + hours / 24,
            "ra": 150 + np.array([0.0, 0.0001, 30, 60, 200]) / 3600,  # the last one bends
            "dec": np.full(5, 0.0),
        }
    )
    found, labels = tracklets.link(det, "n")
    assert len(found) == 1
    assert found[0].members in ((0, 2, 3), (1, 2, 3))
    assert labels[4] == ""


def test_two_detections_at_one_place_and_a_third_point_are_no_tracklet():
    # A supernova in back-to-back exposures (a minute apart), and an unrelated detection
    # two hours later 100″ away: the line through the first and the third passes within
    # 0.8″ of the second, but motion is shown at two places only.
    hours = np.array([0.0, 1 / 60, 2.0])
    det = pd.DataFrame(
        {"mjd": 61000 + hours / 24, "ra": 150 + np.array([0.0, 0.05, 100]) / 3600, "dec": 0.0}
    )
    found, labels = tracklets.link(det, "n")
    assert found == []
    assert list(labels) == ["", "", ""]
    # Three places apart on the same line are one.
    det.loc[1, ["mjd", "ra"]] = [61000 + 1 / 24, 150 + 50 / 3600]
    assert len(tracklets.link(det, "n")[0]) == 1
