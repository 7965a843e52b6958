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
import os
from typing import Any

__all__ = [
    "CHAMPION",
    "DEFAULT_TRACKING_URI",
    "champion",
    "champion_info",
    "client",
    "load_version",
    "safe_mode",
]

CHAMPION = "champion"
#: The embedded default's MLflow store (relative to the repository root).
DEFAULT_TRACKING_URI = "sqlite:///models/mlflow.db"


def safe_mode() -> None:
    """Refuse pickled model artifacts in this process."""
    os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"


@functools.lru_cache(maxsize=8)
def client(tracking_uri: str):
    """An ``MlflowClient`` on this tracking and registry URI (one per process and URI)."""
    from mlflow import MlflowClient

    safe_mode()
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def champion(tracking_uri: str, name: str):
    """The registered version of ``name`` with alias ``champion``, or ``None``."""
    from mlflow.exceptions import MlflowException

    try:
        return client(tracking_uri).get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def champion_info(tracking_uri: str, name: str) -> dict[str, Any] | None:
    """The champion's version, training run and that run's metrics; ``None`` if none.

    Plain data, so that a dask worker can answer it for a run.
    """
    version = champion(tracking_uri, name)
    if version is None:
        return None
    metrics = dict(client(tracking_uri).get_run(version.run_id).data.metrics)
    return {"version": str(version.version), "run_id": version.run_id, "metrics": metrics}


@functools.lru_cache(maxsize=16)
def load_version(tracking_uri: str, name: str, version: str):
    """Load ``models:/<name>/<version>`` (pickle refused), once per process."""
    import mlflow.pytorch

    safe_mode()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return mlflow.pytorch.load_model(f"models:/{name}/{version}")
