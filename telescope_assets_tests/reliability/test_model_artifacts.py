"""Tampered model artifacts are refused before MLflow or torch touch them."""

import importlib.util
import pickle
import sys
from pathlib import Path

import pytest
import yaml

from telescope_assets.ml import model_registry
from telescope_assets.ml.model_registry import ARTIFACT_HASH_TAG, UntrustedModelError
from telescope_assets.resources import MlflowResource
from telescope_assets_tests import champions

pytestmark = pytest.mark.services

KIND = "anomaly"  # the smallest network


class _Payload:
    """Unpickling this writes the marker file: proof that a pickle ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pickle ran"))


@pytest.fixture
def store(tmp_path) -> MlflowResource:
    """A fresh MLflow store with one signed champion (each test tampers with its own)."""
    resource = MlflowResource(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "artifacts")
    )
    net, example = champions.train()[KIND]
    champions.register(resource, {KIND: (net, example)})
    model_registry.load_version.cache_clear()
    yield resource
    model_registry.load_version.cache_clear()


def _model_dir(store: MlflowResource) -> Path:
    (mlmodel,) = Path(store.artifact_root).rglob("MLmodel")
    return mlmodel.parent


def _load(store):
    return model_registry.load_version(store.tracking_uri, KIND, "1")


def test_a_signed_artifact_loads_and_its_digest_is_recorded(store):
    tags = store.client().get_model_version(KIND, "1").tags
    assert tags[ARTIFACT_HASH_TAG] == model_registry.artifact_digest(_model_dir(store))
    assert callable(_load(store))


def test_a_code_folder_is_refused_and_never_imported(store, tmp_path):
    folder = _model_dir(store)
    marker = tmp_path / "planted_module_ran"
    (folder / "code").mkdir()
    (folder / "code" / "fastavro.py").write_text(f"open({str(marker)!r}, 'w').write('planted')\n")
    spec = yaml.safe_load((folder / "MLmodel").read_text())
    spec["flavors"]["pytorch"]["code"] = "code"
    (folder / "MLmodel").write_text(yaml.safe_dump(spec))
    path_before = list(sys.path)
    with pytest.raises(UntrustedModelError, match="names a code folder"):
        _load(store)
    assert sys.path == path_before
    # An import of fastavro now would find the real module, not the planted one.
    assert "site-packages" in importlib.util.find_spec("fastavro").origin
    assert not marker.exists()


def test_a_pickle_payload_is_refused_and_never_unpickled(store, tmp_path):
    marker = tmp_path / "pickle_ran"
    folder = _model_dir(store)
    (folder / "data" / "model.pth").write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(UntrustedModelError, match="pickled files"):
        _load(store)
    assert not marker.exists()


def test_altered_weights_are_refused(store):
    (program,) = _model_dir(store).rglob("*.pt2")
    data = bytearray(program.read_bytes())
    data[len(data) // 2] ^= 0xFF
    program.write_bytes(bytes(data))
    with pytest.raises(UntrustedModelError, match="altered after registration"):
        _load(store)


def test_an_unsigned_version_is_refused_with_what_to_do(store):
    store.client().delete_model_version_tag(KIND, "1", ARTIFACT_HASH_TAG)
    with pytest.raises(UntrustedModelError, match="retrain it with models_job"):
        _load(store)
