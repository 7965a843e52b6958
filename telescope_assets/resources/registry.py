"""The site registry as a Dagster resource."""

import dagster as dg
from pydantic import Field

from telescope_assets.registry import SiteRegistry, load_registry

__all__ = ["RegistryResource"]


class RegistryResource(dg.ConfigurableResource):
    """The site registry file (``None``: ``$TELESCOPE_ASSETS_REGISTRY`` or the packaged one)."""

    path: str | None = Field(default=None, description="Registry YAML path.")

    def get(self) -> SiteRegistry:
        """Load the registry."""
        return load_registry(self.path)
