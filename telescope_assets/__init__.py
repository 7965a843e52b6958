"""telescope_assets: the Dagster code location of a network of robotic telescopes."""

__version__ = "0.1.0"
