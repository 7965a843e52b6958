"""Per-partition and per-frame work: read from the lake, call science, write to the lake.

These functions are what the assets hand to dask. They are plain Python (no Dagster)
and take everything they need as arguments — a :class:`~telescope_assets.lake.Lake`
(picklable: it is rebuilt from its URL on the worker), the site from the registry, ids
and paths — so a worker process or a remote dask worker can run them.
"""

from telescope_assets.tasks.calibration import (
    CALIBRATION_VERSION,
    MIN_FRAMES,
    build_masters,
    calibrate_one,
    calibration_provenance,
    raw_manifest,
)
from telescope_assets.tasks.catalogs import CATALOG_VERSION, catalog_one, load_reference

__all__ = [
    "CALIBRATION_VERSION",
    "CATALOG_VERSION",
    "MIN_FRAMES",
    "build_masters",
    "calibrate_one",
    "calibration_provenance",
    "catalog_one",
    "load_reference",
    "raw_manifest",
]
