"""The code location: every asset, check, sensor and job of telescope_assets.

Resources come from the environment (see the README's Environments section); with no
variables set everything is local: the lake and incoming folders under ``data/``.
"""

import importlib
import os

import dagster as dg

from telescope_assets.defs import DOMAINS
from telescope_assets.ml.model_registry import DEFAULT_TRACKING_URI
from telescope_assets.resources import (
    DaskResource,
    IncomingResource,
    LakeResource,
    MlflowResource,
    RegistryResource,
)


def resources_from_env() -> dict:
    """Resources configured by environment variables, with local defaults."""
    endpoint = os.environ.get("TELESCOPE_S3_ENDPOINT_URL") or None
    return {
        "lake_resource": LakeResource(
            root=os.environ.get("TELESCOPE_LAKE_URL", "data/lake"), s3_endpoint_url=endpoint
        ),
        "incoming": IncomingResource(
            url=os.environ.get("TELESCOPE_INCOMING_URL", "data/incoming"),
            s3_endpoint_url=endpoint,
            settle_seconds=float(os.environ.get("TELESCOPE_INCOMING_SETTLE_SECONDS", "2")),
        ),
        "registry_resource": RegistryResource(
            path=os.environ.get("TELESCOPE_ASSETS_REGISTRY") or None
        ),
        "mlflow": MlflowResource(
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI),
            artifact_root=os.environ.get("TELESCOPE_MLFLOW_ARTIFACTS", "models/artifacts"),
        ),
        "dask": DaskResource(
            scheduler_address=os.environ.get("TELESCOPE_DASK_SCHEDULER") or None,
            n_workers=int(os.environ.get("TELESCOPE_DASK_WORKERS", "2")),
        ),
    }


def domain_definitions() -> list[dg.Definitions]:
    """Each domain's ``defs`` (``telescope_assets/defs/<domain>/__init__.py``)."""
    return [importlib.import_module(f"telescope_assets.defs.{d}").defs for d in DOMAINS]


defs = dg.Definitions.merge(
    *domain_definitions(),
    dg.Definitions(
        resources=resources_from_env(),
        # Runs launched from the UI or a backfill (the implicit asset job) run their steps
        # in one process, as the jobs do: per-frame work is spread by dask, and a process
        # per step would import the code location again for every step.
        executor=dg.in_process_executor,
    ),
)
