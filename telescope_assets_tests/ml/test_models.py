"""Models: Lightning modules, a real MLflow store, the champion gate, safe loading."""

import warnings

import mlflow
import numpy as np
import pytest
import torch

from telescope_assets.ml.evaluate import evaluate
from telescope_assets.ml.train import MODELS, fit
from telescope_assets.resources.mlflow import MlflowResource, NoChampionError
from telescope_assets.simulate.training import quality_examples, real_bogus_examples
from telescope_assets.simulate.typing import typing_examples
from telescope_assets.tasks.models import model_arrays, train_and_register


@pytest.fixture(scope="module")
def quality_small():
    return quality_examples(96, seed=5)


@pytest.fixture(scope="module")
def rb_small():
    return real_bogus_examples(96, seed=5)


@pytest.mark.parametrize("kind", ["frame_quality", "real_bogus", "anomaly", "transient_type"])
def test_fast_dev_run_of_every_module(kind, quality_small, rb_small):
    data = {"real_bogus": rb_small, "transient_type": typing_examples(96, seed=5)}
    arrays = model_arrays(kind, data.get(kind, quality_small))
    net, _ = fit(kind, {k: arrays[k] for k in MODELS[kind].keys}, fast_dev_run=True)
    x = torch.as_tensor(arrays["x"][:4])
    with torch.no_grad():
        out = net(x, torch.as_tensor(arrays["scalars"][:4])) if kind == "frame_quality" else net(x)
    expected = {
        "frame_quality": (4, 9),
        "real_bogus": (4, 5),
        "anomaly": tuple(x.shape),
        "transient_type": (4, 6),
    }[kind]
    assert tuple(out.shape) == expected
    assert torch.isfinite(out).all()


def test_training_sets_are_deterministic_and_labelled():
    a, b = real_bogus_examples(20, seed=3), real_bogus_examples(20, seed=3)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert set(np.unique(real_bogus_examples(200, seed=4)["y"])) == set(range(5))
    q = quality_examples(60, seed=3)
    assert set(np.unique(q["y"])) == {0, 1, 2}
    # the rule behind the labels: clouds are transparency < 0.5, and clouds make a frame bad
    clouds = q["flags"][:, 0] > 0
    assert (q["y"][clouds] == 2).all()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    return MlflowResource(
        tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_root=str(root / "artifacts")
    )


@pytest.fixture(scope="module")
def rb_data():
    return real_bogus_examples(3000, seed=1), real_bogus_examples(800, seed=990_002)


@pytest.fixture(scope="module")
def champion_report(store, rb_data):
    train, evaluation = rb_data
    return train_and_register(
        "real_bogus",
        train,
        evaluation,
        mlflow_resource=store,
        tags={"training_set": "test"},
        max_epochs=8,
    )


def test_small_training_run_registers_promotes_and_loads_a_champion(
    store, champion_report, rb_data
):
    report = champion_report
    print({k: v for k, v in report.items() if k != "plots"})
    assert report["promoted"], report["reason"]
    assert report["metrics"]["fpr_at_fnr_1pct"] <= 0.005
    assert report["champion_version"] == report["version"] == "1"
    client = store.client()
    run = client.get_run(report["run_id"])
    assert "eval_fpr_at_fnr_1pct" in run.data.metrics
    assert run.data.tags["training_set"] == "test"
    history = client.get_metric_history(report["run_id"], "val_loss")
    assert len(history) == 8  # one point per epoch from Lightning's MLFlowLogger
    artifacts = {a.path for a in client.list_artifacts(report["run_id"], "evaluation")}
    assert artifacts == {
        "evaluation/confusion_matrix.png",
        "evaluation/roc.png",
        "evaluation/fpr_fnr_vs_threshold.png",
    }
    net, version = store.load_champion("real_bogus")
    assert version == "1"
    metrics, _ = evaluate("real_bogus", net, rb_data[1])
    assert metrics["fpr_at_fnr_1pct"] == pytest.approx(report["metrics"]["fpr_at_fnr_1pct"])


def test_gate_refuses_a_worse_model_and_production_is_unchanged(store, champion_report, rb_data):
    train, evaluation = rb_data
    worse = train_and_register(
        "real_bogus",
        {k: v[:200] for k, v in train.items()},
        evaluation,
        mlflow_resource=store,
        tags={"training_set": "tiny"},
        max_epochs=1,
    )
    assert not worse["promoted"]
    assert worse["version"] == "2"
    assert str(store.champion("real_bogus").version) == champion_report["version"]
    assert "production unchanged" in worse["reason"] or "misses the target" in worse["reason"]
    tag = store.client().get_model_version("real_bogus", "2").tags["gate"]
    assert tag == worse["reason"]


def test_missing_champion_fails_with_a_clear_message(store):
    with pytest.raises(NoChampionError, match=r"no .champion. version.*models_job"):
        store.load_champion("frame_quality")


def test_pickled_artifact_is_refused(store, rb_data):
    from mlflow.exceptions import MlflowException

    from telescope_assets.ml import model_registry
    from telescope_assets.ml.model_registry import UntrustedModelError
    from telescope_assets.ml.networks import RealBogusNet

    mlflow.set_tracking_uri(store.tracking_uri)
    mlflow.set_registry_uri(store.tracking_uri)
    with (
        mlflow.start_run(experiment_id=store.experiment_id("pickled")),
        warnings.catch_warnings(),
    ):
        # As in tasks/models.py: MLflow cannot validate the wrapper's Any-typed hints.
        warnings.filterwarnings("ignore", message=".*inferred as AnyType.*")
        info = mlflow.pytorch.log_model(
            RealBogusNet(),
            name="model",
            serialization_format="pickle",
            registered_model_name="pickled_model",
            pip_requirements=["torch==2.13.0"],
        )
    version = str(info.registered_model_version)
    # Not registered by the pipeline: unsigned, refused before anything is read.
    with pytest.raises(UntrustedModelError, match="no artifact_sha256 tag"):
        store.load_version("pickled_model", version)
    # Signed as if it were ours: still refused, being a pickle and not a pt2 program...
    model_registry.sign_version(store.tracking_uri, "pickled_model", version)
    model_registry.load_version.cache_clear()
    with pytest.raises(UntrustedModelError, match="not a pt2 program"):
        store.load_version("pickled_model", version)
    # ...and MLflow itself, handed the files directly, refuses to unpickle them.
    local = mlflow.artifacts.download_artifacts(
        store.client().get_model_version_download_uri("pickled_model", version),
        tracking_uri=store.tracking_uri,
    )
    model_registry.safe_mode()
    with pytest.raises(MlflowException, match="pickle"):
        mlflow.pytorch.load_model(local)


def test_tampered_artifact_is_refused(store, champion_report):
    from pathlib import Path

    from mlflow.exceptions import MlflowException

    version = store.client().get_model_version("real_bogus", champion_report["version"])
    local = Path(
        mlflow.artifacts.download_artifacts(version.source, tracking_uri=store.tracking_uri)
    )
    archives = list(local.rglob("*.pt2"))
    assert archives
    import pickle
    import zipfile

    evil = local / "evil.pt2"
    with zipfile.ZipFile(archives[0]) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith(".pkl") or "/data/" in item.filename:
                data = pickle.dumps(print)  # an arbitrary callable smuggled into the archive
            dst.writestr(item, data)
    evil.replace(archives[0])
    mlflow.set_tracking_uri(store.tracking_uri)
    with pytest.raises(MlflowException, match="pickle"):
        mlflow.pytorch.load_model(str(local))


def test_autoencoder_meets_its_target_through_the_registry(store):
    """The full path of the anomaly model: train on normal frames, register, gate, load."""
    train, evaluation = quality_examples(600, seed=21), quality_examples(500, seed=990_001)
    # A tenth of the production data, so more epochs (still ~10 s).
    report = train_and_register(
        "anomaly",
        train,
        evaluation,
        mlflow_resource=store,
        tags={"training_set": "test"},
        max_epochs=80,
    )
    print({k: v for k, v in report.items() if k != "plots"})
    assert report["metrics"]["n_normal"] > 250
    assert report["metrics"]["n_anomalous"] > 150
    assert report["metrics"]["tpr_at_fpr_1pct"] >= 0.90
    assert report["promoted"], report["reason"]
    net, version = store.load_champion("anomaly")
    assert version == report["version"]
    rep = model_arrays("anomaly", evaluation)
    metrics, _ = evaluate("anomaly", net, rep)
    assert metrics["tpr_at_fpr_1pct"] == pytest.approx(report["metrics"]["tpr_at_fpr_1pct"])


def test_champion_check_reads_the_champion_after_promotion():
    from telescope_assets.defs.models.assets import champion_value

    base = {"version": "2", "metrics": {"fpr": 0.002}, "metric": "fpr"}
    # Promoted now (the registry may hand the version out as a number): the new metric.
    assert champion_value(base | {"champion_version": 2, "previous_metric": 0.46}) == 0.002
    assert champion_value(base | {"champion_version": "2", "previous_metric": None}) == 0.002
    # Not promoted: the standing champion's metric on the same evaluation split.
    assert champion_value(base | {"champion_version": "1", "previous_metric": 0.004}) == 0.004
    # No champion at all.
    assert champion_value(base | {"champion_version": None, "previous_metric": None}) is None


def test_typing_reaches_its_macro_recall_on_held_out_seeds_through_the_registry(store):
    """Six classes, trained on one seed, judged on another it never saw (3 epochs)."""
    report = train_and_register(
        "transient_type",
        typing_examples(6000, seed=1),
        typing_examples(3000, seed=990_003),
        mlflow_resource=store,
        tags={"training_set": "test"},
        max_epochs=3,
    )
    metrics = report["metrics"]
    print({k: round(v, 3) for k, v in metrics.items()})
    assert report["promoted"], report["reason"]
    assert metrics["macro_recall"] >= 0.90
    assert min(v for k, v in metrics.items() if k.startswith("recall_")) >= 0.80
    # an asteroid never sent on as a supernova, a supernova never dropped as an asteroid
    assert metrics["sn_as_moving_p90"] == 0
    assert metrics["moving_as_sn_p90"] == 0
    client = store.client()
    assert {a.path for a in client.list_artifacts(report["run_id"], "evaluation")} == {
        "evaluation/confusion_matrix.png"
    }
    assert client.get_run(report["run_id"]).data.metrics["eval_macro_recall"] >= 0.90
    net, version = store.load_champion("transient_type")
    assert version == report["version"]
    again, _ = evaluate("transient_type", net, typing_examples(3000, seed=990_003))
    assert again["macro_recall"] == pytest.approx(metrics["macro_recall"])
