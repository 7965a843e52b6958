"""Per-partition and per-frame work: read from the lake, call science, write to the lake.

These functions are what the assets hand to dask. They are plain Python (no Dagster)
and take everything they need as arguments — a :class:`~telescope_assets.lake.Lake`
(picklable: it is rebuilt from its URL on the worker), the site from the registry, ids
and paths — so a worker process or a remote dask worker can run them.
"""

from telescope_assets.tasks import quality
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
    "FAILED_COLUMNS",
    "MIN_FRAMES",
    "build_masters",
    "calibrate_one",
    "calibration_provenance",
    "catalog_one",
    "failure_lines",
    "guarded",
    "load_reference",
    "quality",
    "raw_manifest",
    "split_failed",
    "split_up_to_date",
]

#: Columns of a per-frame failure row (:func:`guarded`).
FAILED_COLUMNS = ["frame_id", "night", "status", "step", "reason", "traceback"]


def guarded(step, item, **kwargs) -> dict:
    """``step(item, **kwargs)`` for one frame, or a row saying why it failed.

    One frame's error must not stop the partition's other frames. ``item`` is a frame's
    manifest row (or a tuple whose first element is). The error is not swallowed: the
    row (status ``failed``) goes into the asset's table of failures, its asset check
    fails, and the frame is tried again by the next run (it is not in the table of
    frames done). A step run as stages (:mod:`telescope_assets.tasks.stages`) names the
    stage that failed in ``step``. A full or read-only disk still fails the whole step
    (the ``OSError`` is raised again): that is the machine, not the frame.
    """
    import traceback

    from telescope_assets.tasks.stages import StageError, is_machine_error

    try:
        return step(item, **kwargs)
    except Exception as exc:
        if is_machine_error(exc):
            raise
        row = item[0] if isinstance(item, tuple) else item
        name = getattr(step, "__name__", str(step))
        # A staged step names the stage that failed: ``catalog_one.astrometry``.
        cause = exc.cause if isinstance(exc, StageError) else exc
        return {
            "frame_id": row["frame_id"],
            "night": row.get("night"),
            "status": "failed",
            "step": f"{name}.{exc.stage}" if isinstance(exc, StageError) else name,
            "reason": f"{type(cause).__name__}: {cause}"[:500],
            "traceback": "".join(traceback.format_exception(exc)[-6:])[-4000:],
        }


class Guarded:
    """``step`` run through :func:`guarded`, under ``step``'s own name.

    What ``DaskResource.map`` is given: dask names a task after its function, and the
    dashboard should say ``catalog_one``, not ``guarded``.
    """

    def __init__(self, step):
        self.step = step
        self.__name__ = step.__name__

    def __call__(self, item, **kwargs) -> dict:
        return guarded(self.step, item, **kwargs)


def failure_lines(failed: list[dict]) -> str:
    """The failed rows of :func:`guarded` as one line each: frame, step, reason."""
    return "\n".join(f"frame {r['frame_id']}: {r['step']} failed: {r['reason']}" for r in failed)


def split_failed(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """The rows of :func:`guarded` calls, as ``(done, failed)``."""
    failed = [r for r in rows if r.get("status") == "failed"]
    return [r for r in rows if r.get("status") != "failed"], failed


def split_up_to_date(rows, previous, expected, lake, path_field, force=False):
    """Split frames into those to (re)process and those whose output is current.

    A frame is current when its previous manifest row has the same provenance key
    (inputs, model and code versions) and its output file still exists.

    Parameters
    ----------
    rows : iterable of dict
        Frames of the partition (each with ``frame_id``).
    previous : dict
        ``{frame_id: row}`` of the asset's last manifest.
    expected : callable
        ``row -> provenance key`` (``None`` when it cannot be processed yet).
    lake : Lake
        To check that outputs exist.
    path_field : str
        Field of a manifest row naming the output file.
    force : bool
        Reprocess everything.

    Returns
    -------
    todo, kept : list of dict
        Rows to process; previous manifest rows to keep.
    """
    todo, kept = [], []
    for row in rows:
        old = previous.get(row["frame_id"])
        key = expected(row)
        fresh = (
            not force
            and key is not None
            and old is not None
            and old.get("provkey") == key
            and isinstance(old.get(path_field), str)
            and lake.exists(old[path_field])
        )
        (kept if fresh else todo).append(old if fresh else row)
    return todo, kept
