"""MLflow tracking and model registry as a Dagster resource (around ``MlflowClient``).

Models are logged in MLflow's ``pt2`` format (``torch.export``: a graph and tensors, no
pickled Python objects), and loading runs with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION``
off, so a pickled or tampered artifact is refused instead of executed. The registry
reading itself is :mod:`telescope_assets.ml.model_registry` (pure code, which dask workers run).
"""

from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from telescope_assets.ml import model_registry
from telescope_assets.ml.model_registry import CHAMPION, DEFAULT_TRACKING_URI

__all__ = ["CHAMPION", "MlflowResource", "NoChampionError"]


class NoChampionError(RuntimeError):
    """A consumer asked for a model that has no champion version."""


class MlflowResource(dg.ConfigurableResource):
    """Where runs are tracked and models registered.

    The embedded default is a SQLite store under ``models/`` with artifacts beside it;
    production points ``tracking_uri`` at an ``mlflow server`` (PostgreSQL backend, S3
    artifacts).
    """

    tracking_uri: str = Field(default=DEFAULT_TRACKING_URI)
    artifact_root: str = Field(
        default="models/artifacts",
        description="Artifact location for new experiments; empty: the tracking server's.",
    )

    def client(self):
        """An ``MlflowClient`` on this tracking and registry URI."""
        return model_registry.client(self.tracking_uri)

    def experiment_id(self, name: str) -> str:
        """The experiment of a model (created on first use)."""
        client = self.client()
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = self.artifact_root
        if not location:
            # A tracking server that serves artifacts decides where (mlflow-artifacts:/…,
            # proxied to its store): clients need no credentials for that store.
            return client.create_experiment(name)
        if "://" not in location:
            Path(location).mkdir(parents=True, exist_ok=True)
            location = Path(location).resolve().as_uri()
        return client.create_experiment(name, artifact_location=f"{location}/{name}")

    def champion(self, name: str):
        """The registered version with alias ``champion``, or ``None``."""
        return model_registry.champion(self.tracking_uri, name)

    def load_champion(self, name: str) -> tuple[Any, str]:
        """Load ``models:/<name>@champion`` safely.

        Returns
        -------
        model : callable
            The network (an exported program's module).
        version : str
            The registered version loaded.

        Raises
        ------
        NoChampionError
            If no version is champion yet.
        """
        version = self.champion(name)
        if version is None:
            raise self.no_champion(name)
        return self.load_version(name, version.version), str(version.version)

    def no_champion(self, name: str) -> NoChampionError:
        """The error of a consumer that found no champion of ``name``: what to do."""
        return NoChampionError(
            f"model {name!r} has no '{CHAMPION}' version in the registry at "
            f"{self.tracking_uri}: materialize the 'models' group (job models_job) first"
        )

    def load_version(self, name: str, version: str):
        """Load one registered version (pickle refused; once per process)."""
        return model_registry.load_version(self.tracking_uri, name, str(version))
