"""Warm-up of a standing dask worker: what a frame's way to an alert would import and load.

A worker of a standing cluster (``telescope-ui``, the production stack) imports the
science stack and loads the champions the first time a run asks for them: the first
frame of a fresh cluster took 35 s to its alert instead of 12 s (photutils, astroscrappy,
torch, MLflow and the models, on this project's two-core machine; docs/transients.md).
Loaded as a dask worker preload (``dask worker --preload telescope_assets.ops.warmup``,
:func:`telescope_assets.ops.cluster.worker_argv`), this does that work before the worker
joins its scheduler, so the first frame is as quick as the next ones.

Nothing here is needed for correctness: a failure is reported with its reason in the
worker's log and the worker starts cold. No Dagster.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
import sys
import time
from pathlib import Path

__all__ = ["MODULES", "dask_setup", "warm_up"]

#: Imported by a frame's calibration, catalogue, quality, subtraction, scoring, alerts
#: and follow-up planning on a worker.
MODULES = (
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "scipy.ndimage",
    "scipy.optimize",
    "scipy.signal",
    "scipy.interpolate",
    "scipy.special",
    "bottleneck",
    "astropy.io.fits",
    "astropy.wcs",
    "astropy.time",
    "astropy.coordinates",
    "astropy.stats",
    "astroscrappy",
    "threadpoolctl",
    "photutils.background",
    "photutils.segmentation",
    "photutils.aperture",
    "fastavro",
    "torch",
    "mlflow.pytorch",
    "telescope_assets.tasks.calibration",
    "telescope_assets.tasks.catalogs",
    "telescope_assets.tasks.quality",
    "telescope_assets.tasks.transients",
    "telescope_assets.tasks.alerts",
    "telescope_assets.tasks.followup",
)
#: The champions a frame's run scores with.
MODELS = ("frame_quality", "anomaly", "real_bogus")


def warm_up(tracking_uri: str | None = None) -> dict[str, float]:
    """Import :data:`MODULES`, plan one visibility, load the champions; seconds per part.

    ``tracking_uri`` defaults to the pipeline's (``MLFLOW_TRACKING_URI``, else the local
    store); a local SQLite store that does not exist yet is left alone (MLflow would create
    an empty one).
    """
    seconds = {}
    start = time.perf_counter()
    for name in MODULES:
        importlib.import_module(name)
    seconds["imports"] = time.perf_counter() - start

    start = time.perf_counter()
    from telescope_assets.registry import load_registry
    from telescope_assets.science.ephemeris import observability

    sites = load_registry()
    site = sites[sites.names[0]]
    now = dt.datetime.now(dt.UTC)
    observability(site, now.date().isoformat(), 180.0, 0.0, after=now)
    seconds["ephemeris"] = time.perf_counter() - start

    start = time.perf_counter()
    from telescope_assets.ml import model_registry

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", model_registry.DEFAULT_TRACKING_URI)
    local = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    if local is None or Path(local).exists():
        for name in MODELS:
            info = model_registry.champion_info(uri, name)
            if info is not None:
                model_registry.load_version(uri, name, info["version"])
    seconds["models"] = time.perf_counter() - start
    return seconds


def dask_setup(worker) -> None:
    """Dask's preload hook: warm up as the worker starts (a failure is reported, not raised)."""
    try:
        seconds = warm_up()
    except Exception as exc:  # a cold worker still works: say why, carry on
        print(f"worker warm-up failed ({exc!r}); runs load what they need", file=sys.stderr)
        return
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
    print(f"worker warmed up in {sum(seconds.values()):.1f} s ({parts})", file=sys.stderr)
