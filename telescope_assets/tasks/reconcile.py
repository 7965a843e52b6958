"""Partitions whose raw frames have no complete products: what a killed run left behind.

Every run of ``frames_job`` rewrites each stage's partition table in the order of the
graph (raw frames, calibrated frames, catalogs, quality, references, candidates, alerts),
and each stage does only what is stale. (Follow-up requests are another job's, launched
by the ``new_alerts`` sensor for partitions with alerts only.) So a finished partition has a table
for every stage, each written after the one before, and its first tables name every raw
frame. A run killed between two stages (after the alert packets, before the alerts
table, say) leaves a table missing or older than its upstream; a frame whose run never
started is in no table. :func:`unfinished_partitions` finds both, and the ``reconciler``
sensor asks for one more run of each such partition: the run redoes only what is missing,
and packets already written are kept (alerts are immutable).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from telescope_assets.lake import Lake

__all__ = ["STAGES", "Unfinished", "remove_stale_temporaries", "unfinished_partitions"]


def remove_stale_temporaries(lake, older_than: float) -> list[str]:
    """Delete the temporary files of writes that never finished; return their paths.

    A writer killed mid-write leaves its temporary file (the lake writes atomically:
    temporary name, then rename); one older than ``older_than`` seconds is nobody's.
    """
    stale = lake.temporaries(older_than=older_than)
    for rel in stale:
        lake.delete(rel)
    return stale


#: The partition tables of one site × night, in the order a run writes them.
STAGES = (
    "raw_frames",
    "calibrated_frames",
    "source_catalogs",
    "frame_quality",
    "reference_images",
    "transient_candidates",
    "alerts",
)


@dataclass(frozen=True)
class Unfinished:
    """One partition that needs another run, and why."""

    site: str
    night: str
    reason: str

    @property
    def state_key(self) -> str:
        """A short hash of the partition and why: the same state is requested once."""
        return hashlib.sha1(f"{self.site}|{self.night}|{self.reason}".encode()).hexdigest()[:12]


def _frame_ids(lake: Lake, asset: str, site: str, night: str) -> set[str]:
    return set(lake.rows_by_frame(lake.manifest(asset, site, night)))


def _check(lake: Lake, site: str, night: str, settled: list[dict]) -> str | None:
    """Why one partition is unfinished, or ``None``."""
    ids = {s["frame_id"] for s in settled}
    science = {s["frame_id"] for s in settled if s.get("frame_type") == "science"}
    unlisted = ids - _frame_ids(lake, "raw_frames", site, night)
    if unlisted:
        return f"{len(unlisted)} raw frames in no raw_frames table"
    uncalibrated = science - _frame_ids(lake, "calibrated_frames", site, night)
    if uncalibrated:
        return f"{len(uncalibrated)} science frames in no calibrated_frames table"
    before = None
    for stage in STAGES:
        path = lake.manifest(stage, site, night)
        if not lake.exists(path):
            return f"no {stage} table after its upstream's"
        when = lake.modified(path)
        if before is not None and when is not None and when < before[1]:
            return f"{stage} table older than {before[0]}'s: a run stopped between them"
        before = (stage, when) if when is not None else before
    return None


def unfinished_partitions(
    lake: Lake, *, settle_seconds: float = 900.0, now: dt.datetime | None = None
) -> list[Unfinished]:
    """Every site × night whose raw frames lack complete products.

    Parameters
    ----------
    lake : Lake
        The lake.
    settle_seconds : float
        Frames received less than this long ago are left to the run that their arrival
        requested.
    now : datetime, optional
        The current time (UTC), for tests.

    Returns
    -------
    list of Unfinished
        Sorted by site and night.
    """
    now = now or dt.datetime.now(dt.UTC)
    out = []
    for site in lake.list_dirs(lake.raw_folder()):
        for night in lake.list_dirs(lake.raw_folder(site)):
            sidecars = [lake.read_json(p) for p in lake.list(lake.raw_folder(site, night), ".json")]
            settled = [
                s
                for s in sidecars
                if (now - dt.datetime.fromisoformat(s["received_at"])).total_seconds()
                >= settle_seconds
            ]
            if not settled:
                continue
            reason = _check(lake, site, night, settled)
            if reason is not None:
                out.append(Unfinished(site, night, reason))
    return out
