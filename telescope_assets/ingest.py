"""Ingestion: from the incoming drop zone into the lake, or into quarantine.

One call of :func:`ingest` takes a bounded number of files from the incoming store and,
for each, either

* **accepts** it: the bytes are copied to ``raw/{site}/{night}/{frame_id}.fits`` and a
  JSON sidecar (the commit marker, written last) records what the header said;
* recognises a **duplicate**: the same bytes (same content hash) are already in the
  lake, so nothing is written; or
* **quarantines** it: the bytes and a machine-readable reason go to ``quarantine/``.

Then it writes one ledger record for the batch (``ingest/batches/{day}/{batch_id}.json``)
and only after that deletes the processed files from the incoming store. A crash at any
point therefore loses nothing: files not yet deleted are seen again on the next call,
recognised by their content hash, and land in a later ledger record. The sensor turns
ledger records into runs, keeping its place with a cursor (the last batch id it
requested runs for), so a restarted daemon neither loses nor repeats a batch.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import posixpath
import time
from dataclasses import dataclass, field

from telescope_assets.lake import Lake, Store
from telescope_assets.registry import SiteRegistry
from telescope_assets.science.frames import REASONS, FrameError, frame_id, inspect_frame

__all__ = ["IngestResult", "batches_after", "ingest", "read_batch", "waiting_files"]

LEDGER = "ingest/batches"


@dataclass
class IngestResult:
    """What one ingestion call did."""

    batch_id: str | None = None
    accepted: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)
    remaining: int = 0

    @property
    def partitions(self) -> list[tuple[str, str]]:
        """``(site, night)`` pairs that received frames, duplicates included.

        A duplicate may be the second sight of a frame whose first ingestion crashed
        before its ledger record was written; requesting its partition again costs a
        run that finds nothing stale, and guarantees the frame is never left behind.
        """
        return sorted({(a["site"], a["night"]) for a in self.accepted + self.duplicates})


def _prefix_site(rel: str) -> str | None:
    parts = rel.split("/")
    return parts[0] if len(parts) > 1 else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ingest(
    incoming: Store,
    lake: Lake,
    registry: SiteRegistry,
    *,
    max_files: int = 100,
    settle_seconds: float = 0.0,
    night_range: tuple[str, str] | None = None,
) -> IngestResult:
    """Move up to ``max_files`` files from ``incoming`` into the lake or quarantine.

    Parameters
    ----------
    incoming : Store
        The drop zone; a file's first folder may name its site.
    lake : Lake
        Destination.
    registry : SiteRegistry
        Which sites exist and how their headers read.
    max_files : int
        Bound on the work of one call (a sensor tick).
    settle_seconds : float
        Leave files younger than this alone: they may still be being written.
    night_range : tuple of str, optional
        First and last night that the partitions cover; frames outside are quarantined.

    Returns
    -------
    IngestResult
    """
    result = IngestResult()
    candidates = waiting_files(incoming, settle_seconds)
    todo, result.remaining = candidates[:max_files], max(0, len(candidates) - max_files)
    received = _now().isoformat()
    for rel in todo:
        data = incoming.read_bytes(rel)
        fid = frame_id(data)
        entry = {"frame_id": fid, "incoming_path": rel, "received_at": received}
        try:
            info, _ = inspect_frame(data, registry, _prefix_site(rel))
            if night_range is not None and not night_range[0] <= info.night <= night_range[1]:
                raise FrameError(
                    "bad_date_obs",
                    f"night {info.night} outside the partitions {night_range[0]}..{night_range[1]}",
                    site=info.site,
                )
        except FrameError as exc:
            entry |= {
                "site": exc.site,
                "night": exc.night,
                "reason": exc.reason,
                "detail": exc.detail,
                "advice": REASONS[exc.reason],
                "stage": "ingest",
                "size_bytes": len(data),
            }
            reason_path = lake.quarantine(exc.site, exc.night, fid, "json")
            if not lake.exists(reason_path):
                lake.write_bytes(lake.quarantine(exc.site, exc.night, fid, "fits"), data)
                lake.write_json(reason_path, entry)
            result.quarantined.append(entry)
            continue
        entry |= info.to_dict()
        sidecar = lake.raw(info.site, info.night, fid, "json")
        if lake.exists(sidecar):
            result.duplicates.append(entry)
            continue
        lake.write_bytes(lake.raw(info.site, info.night, fid, "fits"), data)
        lake.write_json(sidecar, entry)
        result.accepted.append(entry)
    if todo:
        ids = sorted(e["frame_id"] + e["incoming_path"] for e in _all(result))
        digest = hashlib.sha1("".join(ids).encode()).hexdigest()[:10]
        stamp = _now()
        result.batch_id = f"{stamp:%Y%m%dT%H%M%S%f}Z-{digest}"
        lake.write_json(
            f"{LEDGER}/{stamp:%Y-%m-%d}/{result.batch_id}.json",
            {
                "batch_id": result.batch_id,
                "partitions": [list(p) for p in result.partitions],
                "accepted": result.accepted,
                "duplicates": result.duplicates,
                "quarantined": result.quarantined,
            },
        )
    for rel in todo:
        incoming.delete(rel)
    return result


def waiting_files(incoming: Store, settle_seconds: float = 0.0) -> list[str]:
    """Files of ``incoming`` that :func:`ingest` would take now.

    Not partial uploads (``.partial``, ``.tmp``), and untouched for ``settle_seconds``.
    """
    now = time.time()
    out = []
    for rel in incoming.list("", recursive=True):
        if rel.endswith((".partial", ".tmp")):
            continue
        if settle_seconds > 0:
            mtime = incoming.modified(rel)
            if mtime is not None and now - mtime < settle_seconds:
                continue
        out.append(rel)
    return out


def _all(result: IngestResult):
    return [*result.accepted, *result.duplicates, *result.quarantined]


def batches_after(lake: Lake, cursor: str | None) -> list[str]:
    """Ledger batch ids newer than ``cursor`` (all of them if ``cursor`` is None), oldest first."""
    days = lake.list_dirs(LEDGER)
    if cursor:
        cursor_day = f"{cursor[:4]}-{cursor[4:6]}-{cursor[6:8]}"
        days = [d for d in days if d >= cursor_day]
    ids = []
    for day in days:
        for rel in lake.list(f"{LEDGER}/{day}", ".json"):
            batch = posixpath.basename(rel)[: -len(".json")]
            if cursor is None or batch > cursor:
                ids.append(batch)
    return sorted(ids)


def read_batch(lake: Lake, batch_id: str) -> dict:
    """The ledger record of one batch."""
    day = f"{batch_id[:4]}-{batch_id[4:6]}-{batch_id[6:8]}"
    return lake.read_json(f"{LEDGER}/{day}/{batch_id}.json")
