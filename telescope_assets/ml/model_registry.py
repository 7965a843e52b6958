"""The MLflow model registry as the pipeline reads it: champions and safely loaded models.

Pure code (no Dagster), so that it runs where the work runs: in a run's process, or on a
dask worker that scores frames. Models are logged in MLflow's ``pt2`` format
(``torch.export``: a graph and tensors, no pickled Python objects) and loaded with
``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` off, so a pickled or tampered artifact is refused
instead of executed.

A process keeps what it loaded: :func:`load_version` is cached by tracking URI, model
name and version (a registered version's files never change), and a client per tracking
URI. A standing dask cluster therefore loads each model once, not once per run — the
first load in a process costs seconds (``mlflow.pytorch`` imports Lightning), the next
ones nothing. Which version is champion is asked every time: the alias moves.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "ARTIFACT_HASH_TAG",
    "CHAMPION",
    "DEFAULT_TRACKING_URI",
    "RegistryUnavailableError",
    "UntrustedModelError",
    "artifact_digest",
    "champion",
    "champion_info",
    "client",
    "load_version",
    "safe_mode",
    "sign_version",
    "verify_artifact",
]

CHAMPION = "champion"
#: Model-version tag holding the digest of the version's files, recorded at registration.
ARTIFACT_HASH_TAG = "artifact_sha256"
#: Files whose presence means the artifact wants pickle or its own code run on load.
_META = "registered_model_meta"
_PICKLE_SUFFIXES = (".pkl", ".pickle", ".pth", ".joblib", ".cloudpickle")
#: The embedded default's MLflow store (relative to the repository root).
DEFAULT_TRACKING_URI = "sqlite:///models/mlflow.db"


class RegistryUnavailableError(RuntimeError):
    """The MLflow registry did not answer: no model version can be known, nothing is scored."""


#: Error codes that mean "no such model or alias", as opposed to "no answer".
_ABSENT = frozenset({"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"})
#: A tracking server that is down is reported within seconds, not after MLflow's default
#: seven retries with doubling waits (minutes per call); downloads of a few small files
#: draw no progress bars in run logs. The environment may say otherwise.
_MLFLOW_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


class UntrustedModelError(RuntimeError):
    """A model artifact that must not be loaded: altered, unsigned, pickled or with code."""


def safe_mode() -> None:
    """Refuse pickled model artifacts in this process."""
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"


@functools.lru_cache(maxsize=8)
def client(tracking_uri: str):
    """An ``MlflowClient`` on this tracking and registry URI (one per process and URI)."""
    from mlflow import MlflowClient

    safe_mode()
    for key, value in _MLFLOW_DEFAULTS.items():
        os.environ.setdefault(key, value)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def champion(tracking_uri: str, name: str):
    """The registered version of ``name`` with alias ``champion``, or ``None``.

    Raises
    ------
    RegistryUnavailableError
        If the registry does not answer (rather than answering "no champion").
    """
    from mlflow.exceptions import MlflowException

    try:
        return client(tracking_uri).get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in _ABSENT:
            return None
        raise RegistryUnavailableError(
            f"the MLflow registry at {tracking_uri} did not answer for {name}@{CHAMPION} "
            f"({exc.error_code}): start or reach the tracking server (MLFLOW_TRACKING_URI); "
            "nothing is scored without a known model version"
        ) from exc


def champion_info(tracking_uri: str, name: str) -> dict[str, Any] | None:
    """The champion's version, training run and that run's metrics; ``None`` if none.

    Plain data, so that a dask worker can answer it for a run.
    """
    version = champion(tracking_uri, name)
    if version is None:
        return None
    metrics = dict(client(tracking_uri).get_run(version.run_id).data.metrics)
    return {"version": str(version.version), "run_id": version.run_id, "metrics": metrics}


def artifact_digest(folder: str | os.PathLike) -> str:
    """SHA-256 over every file of a model folder (relative names and contents, sorted).

    MLflow's own ``registered_model_meta`` (written into a folder as it is downloaded
    from ``models:/``) is not part of the artifact and is left out.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = pathlib.Path(d, "MLmodel").write_text("x")
    ...     artifact_digest(d)[:12]
    'ed25e882875c'
    """
    root = Path(folder)
    digest = hashlib.sha256()
    files = (p for p in root.rglob("*") if p.is_file() and p.relative_to(root).as_posix() != _META)
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def verify_artifact(folder: str | os.PathLike, expected: str | None, label: str) -> None:
    """Refuse a downloaded model folder unless it is exactly what was registered.

    ``mlflow.pytorch.load_model`` puts a folder named by the MLmodel's ``code`` key first
    on ``sys.path`` whatever the pickle setting says, so a planted module would replace a
    real one at its next import: an artifact naming code, holding pickles, or whose files
    differ from the digest recorded at registration is never handed to MLflow.

    Raises
    ------
    UntrustedModelError
        Saying what is wrong and what to do.
    """
    import yaml

    root = Path(folder)
    if expected is None:
        raise UntrustedModelError(
            f"{label} has no {ARTIFACT_HASH_TAG} tag (registered before artifacts were "
            "signed, or not by this pipeline): retrain it with models_job"
        )
    mlmodel = yaml.safe_load((root / "MLmodel").read_text())
    flavors = mlmodel.get("flavors", {})
    named_code = [f for f, spec in flavors.items() if isinstance(spec, dict) and spec.get("code")]
    if named_code:
        raise UntrustedModelError(f"{label}'s MLmodel names a code folder ({named_code}): refused")
    # MLflow picks the format by the file it finds: model.pt2 (torch.export) or model.pth
    # (a pickle). Only a pt2 program, and nothing else that loads, is accepted.
    if not list(root.rglob("model.pt2")):
        raise UntrustedModelError(f"{label} is not a pt2 program (no model.pt2): refused")
    pickles = [p.name for p in root.rglob("*") if p.suffix in _PICKLE_SUFFIXES]
    if pickles:
        raise UntrustedModelError(f"{label} holds pickled files {pickles}: refused")
    found = artifact_digest(root)
    if found != expected:
        raise UntrustedModelError(
            f"{label}'s files were altered after registration (sha256 {found[:12]}…, "
            f"registered {expected[:12]}…): refused; restore it or retrain with models_job"
        )


def sign_version(tracking_uri: str, name: str, version: str) -> str:
    """Record the digest of a just-registered version's files as its tag; return it."""
    with tempfile.TemporaryDirectory() as tmp:
        digest = artifact_digest(_download(tracking_uri, name, version, tmp))
    client(tracking_uri).set_model_version_tag(name, version, ARTIFACT_HASH_TAG, digest)
    return digest


def _download(tracking_uri: str, name: str, version: str, folder: str) -> str:
    """Copy a registered version's files into ``folder``; return where they are.

    The files' location is asked of this registry (not of ``models:/``, which MLflow
    resolves against the process's global registry URI).
    """
    import mlflow.artifacts

    source = client(tracking_uri).get_model_version_download_uri(name, version)
    return mlflow.artifacts.download_artifacts(
        artifact_uri=source, dst_path=folder, tracking_uri=tracking_uri
    )


@functools.lru_cache(maxsize=16)
def load_version(tracking_uri: str, name: str, version: str):
    """Load ``models:/<name>/<version>`` once per process, only if it verifies.

    The files are downloaded, checked by :func:`verify_artifact` against the digest
    recorded at registration, and only then loaded (pickle refused) from that copy.
    """
    import mlflow.pytorch

    safe_mode()
    label = f"models:/{name}/{version}"
    tags = client(tracking_uri).get_model_version(name, version).tags
    with tempfile.TemporaryDirectory() as tmp:
        local = _download(tracking_uri, name, version, tmp)
        verify_artifact(local, tags.get(ARTIFACT_HASH_TAG), label)
        return mlflow.pytorch.load_model(local)
