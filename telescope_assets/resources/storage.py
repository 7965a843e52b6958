"""The lake and the incoming drop zone as Dagster resources (local folders or S3)."""

import dagster as dg
from pydantic import Field

from telescope_assets.lake import Lake, Store

__all__ = ["IncomingResource", "LakeResource"]


def _s3_options(endpoint_url: str | None) -> dict:
    # Credentials come from the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY),
    # which s3fs reads itself: no secret ever passes through configuration.
    return {"client_kwargs": {"endpoint_url": endpoint_url}} if endpoint_url else {}


class LakeResource(dg.ConfigurableResource):
    """Where every product lives: a local folder or ``s3://bucket/prefix``."""

    root: str = Field(default="data/lake", description="Lake root URL or folder.")
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (e.g. a local object store)."
    )

    def get(self) -> Lake:
        """The lake as a plain (picklable) object for science and dask tasks."""
        return Lake(self.root, _s3_options(self.s3_endpoint_url))


class IncomingResource(dg.ConfigurableResource):
    """The drop zone that sites upload frames into (``<site>/...`` folders allowed)."""

    url: str = Field(default="data/incoming", description="Incoming folder or s3:// URL.")
    s3_endpoint_url: str | None = None
    settle_seconds: float = Field(
        default=2.0,
        description="Leave files younger than this: an uploader may still be writing them.",
    )
    truncated_grace_seconds: float = Field(
        default=120.0,
        description="A file cut short that changed less than this long ago is left alone: "
        "its writer may append the rest. Older, it is quarantined as truncated.",
    )
    max_files_per_tick: int = Field(default=100, description="Bound on one sensor tick's work.")

    def get(self) -> Store:
        """The drop zone as a plain store."""
        return Store(self.url, _s3_options(self.s3_endpoint_url))
