"""MLflow unreachable or failing mid-registration: nothing half-registered, nothing scored
without a known model version."""

import socket
import time

import dagster as dg
import pytest

from telescope_assets.defs.catalogs.assets import frame_quality, source_catalogs
from telescope_assets.defs.frames.assets import calibrated_frames, calibration_masters, raw_frames
from telescope_assets.defs.models.assets import anomaly_model, frame_quality_model
from telescope_assets.ingest import ingest
from telescope_assets.ml import model_registry
from telescope_assets.ml.model_registry import RegistryUnavailableError, UntrustedModelError
from telescope_assets.resources import MlflowResource
from telescope_assets_tests.conftest import NIGHT


@pytest.fixture
def dead_tracking_uri() -> str:
    """An HTTP tracking URI on a loopback port where nothing listens (a server that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _tiny_training_set():
    from telescope_assets.simulate.training import quality_examples

    data = quality_examples(48, seed=5)
    return data, quality_examples(32, seed=6)


@pytest.mark.fast
def test_a_dead_registry_is_reported_as_such_within_seconds(dead_tracking_uri):
    start = time.perf_counter()
    with pytest.raises(RegistryUnavailableError, match="did not answer"):
        model_registry.champion_info(dead_tracking_uri, "real_bogus")
    assert time.perf_counter() - start < 30  # not MLflow's default minutes of retries


@pytest.mark.services
def test_training_with_the_registry_gone_at_signing_leaves_no_champion(tmp_path, monkeypatch):
    from telescope_assets.tasks.models import train_and_register

    store = MlflowResource(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "art")
    )
    train, evaluation = _tiny_training_set()

    def gone(*args, **kwargs):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(model_registry, "sign_version", gone)
    with pytest.raises(ConnectionError):
        train_and_register(
            "anomaly", train, evaluation, mlflow_resource=store, tags={}, max_epochs=1
        )
    monkeypatch.undo()
    (version,) = store.client().search_model_versions("name='anomaly'")
    assert model_registry.ARTIFACT_HASH_TAG not in version.tags  # registered, never signed...
    assert store.champion("anomaly") is None  # ...so never promoted...
    model_registry.load_version.cache_clear()
    with pytest.raises(UntrustedModelError):  # ...and never loaded by a consumer
        model_registry.load_version(store.tracking_uri, "anomaly", version.version)


@pytest.mark.services
def test_training_against_a_dead_server_fails_fast(dead_tracking_uri):
    from telescope_assets.tasks.models import train_and_register

    store = MlflowResource(tracking_uri=dead_tracking_uri, artifact_root="")
    train, evaluation = _tiny_training_set()
    start = time.perf_counter()
    with pytest.raises(Exception, match=r"127\.0\.0\.1") as caught:
        train_and_register(
            "anomaly", train, evaluation, mlflow_resource=store, tags={}, max_epochs=1
        )
    assert "Connection refused" in str(caught.value) or "Max retries" in str(caught.value)
    assert time.perf_counter() - start < 60


@pytest.mark.services
def test_frame_quality_with_the_registry_down_fails_clearly_and_writes_nothing(
    resources, registry, dead_tracking_uri
):
    resources = {**resources, "mlflow": MlflowResource(tracking_uri=dead_tracking_uri)}
    lake = resources["lake_resource"].get()
    ingest(resources["incoming"].get(), lake, registry, max_files=10_000)
    models = [anomaly_model.to_source_asset(), frame_quality_model.to_source_asset()]
    result = dg.materialize(
        [
            raw_frames,
            calibration_masters,
            calibrated_frames,
            source_catalogs,
            frame_quality,
            *models,
        ],
        partition_key=dg.MultiPartitionKey({"site": "tololo", "night": NIGHT}),
        resources=resources,
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure.step_key == "frame_quality"
    assert "did not answer" in failure.step_failure_data.error.to_string()
    assert not lake.exists(lake.manifest("frame_quality", "tololo", NIGHT))
