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
import functools
import hashlib
import math
import posixpath
import time
from dataclasses import dataclass, field

from telescope_assets.lake import Entry, Lake, Store, rejected
from telescope_assets.registry import SiteRegistry
from telescope_assets.science.frames import (
    REASONS,
    FrameError,
    frame_id,
    inspect_frame,
    max_frame_bytes,
)
from telescope_assets.science.nights import night_of

__all__ = [
    "IngestResult",
    "batch_partitions",
    "batches_after",
    "ingest",
    "read_batch",
    "size_limit",
    "waiting_files",
]


@dataclass
class IngestResult:
    """What one ingestion call did."""

    batch_id: str | None = None
    accepted: list[dict] = field(default_factory=list)
    duplicates: list[dict] = field(default_factory=list)
    quarantined: list[dict] = field(default_factory=list)
    remaining: int = 0
    waiting: list[str] = field(default_factory=list)  # cut short and young: left alone

    @property
    def partitions(self) -> list[tuple[str, str]]:
        """``(site, night)`` pairs that received frames, duplicates and quarantined included.

        A duplicate may be the second sight of a frame whose first ingestion crashed
        before its ledger record was written; requesting its partition again costs a
        run that finds nothing stale, and guarantees the frame is never left behind.
        """
        received = self.accepted + self.duplicates
        # Quarantined files are counted in the partition where they arrived: its run's
        # raw_frames check fails and says why.
        counted = [q for q in self.quarantined if q.get("in_partitions")]
        return sorted({(a["site"], a["night"]) for a in received + counted})


#: Reasons that a file still being written also gives; a young file with one of them is
#: left in the drop zone for ``truncated_grace_seconds`` instead of quarantined.
STILL_ARRIVING = frozenset({"empty_file", "truncated_header", "truncated_data"})


def _prefix_site(rel: str) -> str | None:
    parts = rel.split("/")
    return parts[0] if len(parts) > 1 else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def size_limit(registry: SiteRegistry, rel: str) -> int:
    """Largest file accepted at ``rel``: its folder's camera, else the registry's largest."""
    site = _prefix_site(rel)
    if site in registry:
        return max_frame_bytes(registry[site].camera.shape)
    return max(max_frame_bytes(registry[name].camera.shape) for name in registry.names)


def ingest(
    incoming: Store,
    lake: Lake,
    registry: SiteRegistry,
    *,
    max_files: int = 100,
    settle_seconds: float = 0.0,
    truncated_grace_seconds: float = 0.0,
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
    truncated_grace_seconds : float
        A file cut short (or empty) that changed less than this long ago is left alone
        too: its writer may have paused and will append the rest. Older, it is
        quarantined as truncated.
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
    done = []
    for entry in todo:
        record = {"incoming_path": entry.rel, "received_at": received}
        where = functools.partial(_where_it_arrived, registry, entry.rel, night_range)
        if entry.kind != "file":
            result.quarantined.append(_refuse_entry(incoming, lake, entry, record, where))
            continue
        limit = size_limit(registry, entry.rel)
        if entry.size > limit:
            result.quarantined.append(_set_aside(incoming, lake, entry, record, limit, where))
            continue
        try:
            data = incoming.read_bytes(entry.rel)
        except FileNotFoundError:
            continue  # taken away since the listing: nothing of ours to account for
        except PermissionError as exc:
            result.quarantined.append(
                _set_aside(incoming, lake, entry, record, limit, where, denied=exc)
            )
            continue
        record["frame_id"] = frame_id(data)
        outcome, record = _file_one(data, lake, registry, entry, record, limit, night_range)
        if (
            outcome == "quarantined"
            and record["reason"] in STILL_ARRIVING
            and entry.mtime is not None
            and time.time() - entry.mtime < truncated_grace_seconds
        ):
            result.waiting.append(entry.rel)
            continue
        if outcome == "quarantined":
            record = where(record)
            _keep_quarantined(lake, data, record)
        getattr(result, outcome).append(record)
        done.append(entry.rel)
    if _all(result):
        _write_ledger(lake, result)
    for rel in done:
        incoming.delete(rel)
    return result


def _file_one(data, lake, registry, entry, record, limit, night_range) -> tuple[str, dict]:
    """Inspect one file's bytes; write an accepted frame. Returns the outcome and record."""
    try:
        info, header = inspect_frame(data, registry, _prefix_site(entry.rel), max_bytes=limit)
        if night_range is not None and not night_range[0] <= info.night <= night_range[1]:
            raise FrameError(
                "night_out_of_range",
                f"night {info.night} outside the partitions {night_range[0]}..{night_range[1]}",
                site=info.site,
                night=info.night,
            )
    except FrameError as exc:
        return "quarantined", record | _reason(exc.reason, exc.detail, exc.site, exc.night)
    except Exception as exc:  # one file must never stop the drop zone: kept, reported
        detail = f"{type(exc).__name__}: {exc}"
        return "quarantined", record | _reason("internal_error", detail, None, None)
    record |= info.to_dict()
    fid = record["frame_id"]
    if lake.exists(lake.raw(info.site, info.night, fid, "json")):
        return "duplicates", record | {"duplicate_of": fid, "duplicate_kind": "bytes"}
    values = _header_values(header)
    index = lake.pixel_index(info.pixel_id)
    first = lake.read_json(index) if lake.exists(index) else None
    if first is not None and first["frame_id"] != fid:
        return "duplicates", record | {
            "duplicate_of": first["frame_id"],
            "duplicate_kind": "pixels",
            "header_changes": _header_changes(first["header"], values),
            "claimed_site": info.site,
            "claimed_night": info.night,
            "site": first["site"],
            "night": first["night"],
        }
    lake.write_bytes(lake.raw(info.site, info.night, fid, "fits"), data)
    if first is None:
        lake.write_json(
            index, {"frame_id": fid, "site": info.site, "night": info.night, "header": values}
        )
    lake.write_json(lake.raw(info.site, info.night, fid, "json"), record)
    return "accepted", record


def _reason(reason: str, detail: str, site, night) -> dict:
    return {
        "site": site,
        "night": night,
        "reason": reason,
        "detail": detail,
        "advice": REASONS[reason],
        "stage": "ingest",
    }


def _where_it_arrived(registry: SiteRegistry, rel: str, night_range, record: dict) -> dict:
    """A quarantined file's site and night, where its header did not give them.

    The site of the drop-zone folder it arrived in (``site_from: folder``), and the night
    at that site when it arrived (``night_from: arrival``), so that it is counted in that
    partition's ``raw_frames`` (whose check fails, with the reason) instead of only under
    ``quarantine/_unassigned/``. ``in_partitions`` says whether that night is one the
    partitions cover (only then is a run asked for it).
    """
    record = dict(record)
    site = record.get("site")
    if site is None and _prefix_site(rel) in registry:
        site = record["site"] = _prefix_site(rel)
        record["site_from"] = "folder"
    if site in registry and record.get("night") is None:
        received = dt.datetime.fromisoformat(record["received_at"])
        record["night"] = night_of(received, registry[site].timezone)
        record["night_from"] = "arrival"
    night = record.get("night")
    record["in_partitions"] = bool(
        site in registry
        and night is not None
        and (night_range is None or night_range[0] <= night <= night_range[1])
    )
    return record


def _reason_path(lake: Lake, record: dict) -> str:
    return lake.quarantine(record["site"], record["night"], record["frame_id"], "json")


def _keep_quarantined(lake: Lake, data: bytes, record: dict) -> None:
    record["size_bytes"] = len(data)
    site, night, fid = record["site"], record["night"], record["frame_id"]
    reason_path = _reason_path(lake, record)
    if not lake.exists(reason_path):
        lake.write_bytes(lake.quarantine(site, night, fid, "fits"), data)
        lake.write_json(reason_path, record)


def _entry_id(entry: Entry, received: str) -> str:
    return hashlib.sha256(f"{entry.rel}|{entry.kind}|{received}".encode()).hexdigest()[:24]


def _refuse_entry(incoming: Store, lake: Lake, entry: Entry, record: dict, where) -> dict:
    """A link or special file: recorded and removed from the drop zone, never read."""
    what = {"symlink": "a symbolic link", "directory_link": "a link to a folder"}.get(
        entry.kind, "a FIFO, socket or device"
    )
    detail = f"{what}" + (f" (to {entry.target!r}, not followed)" if entry.target else "")
    record = record | {"frame_id": _entry_id(entry, record["received_at"]), "size_bytes": 0}
    record = where(record | _reason("not_regular_file", detail, None, None))
    lake.write_json(_reason_path(lake, record), record)
    incoming.remove_entry(entry.rel)
    return record


def _set_aside(
    incoming: Store, lake: Lake, entry: Entry, record: dict, limit: int, where, denied=None
) -> dict:
    """A file too large to be a frame, or that we may not read: set aside, and recorded.

    It is renamed into the drop zone's ``.rejected/`` folder unread (nothing is copied).
    """
    kept = rejected(record["received_at"][:10], entry.rel)
    if denied is not None:
        reason, detail = "permission_denied", str(denied)
    else:
        reason = "too_large"
        detail = f"{entry.size} bytes, more than the {limit} a frame of this camera can be"
    record = record | {
        "frame_id": _entry_id(entry, record["received_at"]),
        "size_bytes": entry.size,
        "kept_at": kept,
    }
    record = where(record | _reason(reason, detail, None, None))
    lake.write_json(_reason_path(lake, record), record)
    incoming.move(entry.rel, kept)
    return record


def _header_values(header) -> dict[str, str]:
    """A header as ``{keyword: value}`` text, for telling two copies of one frame apart."""
    return {
        card.keyword: str(card.value)
        for card in header.cards
        if card.keyword and card.keyword not in ("COMMENT", "HISTORY")
    }


def _header_changes(first: dict[str, str], now: dict[str, str]) -> dict[str, list]:
    """``{keyword: [first value, this value]}`` for every keyword that differs."""
    keys = sorted(set(first) | set(now))
    return {k: [first.get(k), now.get(k)] for k in keys if first.get(k) != now.get(k)}


def _write_ledger(lake: Lake, result: IngestResult) -> None:
    ids = sorted(e["frame_id"] + e["incoming_path"] for e in _all(result))
    digest = hashlib.sha1("".join(ids).encode()).hexdigest()[:10]
    stamp = _now()
    result.batch_id = f"{stamp:%Y%m%dT%H%M%S%f}Z-{digest}"
    lake.write_json(
        lake.ledger(f"{stamp:%Y-%m-%d}", result.batch_id),
        {
            "batch_id": result.batch_id,
            "partitions": [list(p) for p in result.partitions],
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "quarantined": result.quarantined,
        },
    )


def waiting_files(incoming: Store, settle_seconds: float = 0.0) -> list[Entry]:
    """Entries of ``incoming`` that :func:`ingest` would take now.

    Not partial uploads (``.partial``, ``.tmp``, hidden names), and only from folders
    that have been quiet for ``settle_seconds``: while any file of a folder (a partial
    upload included) is younger than that, its other files wait too, so that a copy of
    a night's frames slower than the settle time still makes one batch (and one run),
    not one per settle interval. A camera's folder falls quiet between exposures (the
    settle time, 2 s on the sensor, is shorter than any exposure and readout); a folder
    written to without any such pause waits until there is one. A copy that gives its
    files their original times (``cp -p``, ``rsync -a``) looks settled throughout and is
    batched as it comes. Links and special files are included: ingestion records and
    removes them without reading them.
    """
    now = time.time()
    entries = incoming.entries("")
    newest: dict[str, float] = {}
    for entry in entries:
        if entry.mtime is not None:
            folder = entry.rel.rpartition("/")[0]
            newest[folder] = max(newest.get(folder, entry.mtime), entry.mtime)
    out = []
    for entry in entries:
        if entry.rel.endswith((".partial", ".tmp")):
            continue
        folder = entry.rel.rpartition("/")[0]
        if settle_seconds > 0 and now - newest.get(folder, -math.inf) < settle_seconds:
            continue  # the folder (this file included) is still being written
        out.append(entry)
    return out


def _all(result: IngestResult):
    return [*result.accepted, *result.duplicates, *result.quarantined]


def batches_after(lake: Lake, cursor: str | None) -> list[str]:
    """Ledger batch ids newer than ``cursor`` (all of them if ``cursor`` is None), oldest first."""
    days = lake.list_dirs(lake.LEDGER)
    if cursor:
        cursor_day = f"{cursor[:4]}-{cursor[4:6]}-{cursor[6:8]}"
        days = [d for d in days if d >= cursor_day]
    ids = []
    for day in days:
        for rel in lake.list(lake.ledger(day), ".json"):
            batch = posixpath.basename(rel)[: -len(".json")]
            if cursor is None or batch > cursor:
                ids.append(batch)
    return sorted(ids)


def batch_partitions(lake: Lake, batch_ids: list[str]) -> list[tuple[str, str, str]]:
    """``(batch id, site, night)`` of every partition each batch touched, in order."""
    return [
        (batch_id, site, night)
        for batch_id in batch_ids
        for site, night in read_batch(lake, batch_id)["partitions"]
    ]


def read_batch(lake: Lake, batch_id: str) -> dict:
    """The ledger record of one batch."""
    day = f"{batch_id[:4]}-{batch_id[4:6]}-{batch_id[6:8]}"
    return lake.read_json(lake.ledger(day, batch_id))
