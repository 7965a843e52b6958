"""Dagster resources: the lake, the incoming store, the site registry and dask."""

from telescope_assets.resources.compute import DaskResource
from telescope_assets.resources.mlflow import MlflowResource
from telescope_assets.resources.registry import RegistryResource
from telescope_assets.resources.storage import IncomingResource, LakeResource

__all__ = ["DaskResource", "IncomingResource", "LakeResource", "MlflowResource", "RegistryResource"]
