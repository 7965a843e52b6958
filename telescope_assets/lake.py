"""The lake: one root URL (a local folder or ``s3://bucket/prefix``) laid out by kind.

Layout (every path relative to the root). Every path is built by one of :class:`Lake`'s
builders, named after the product; no other module spells a lake path out::

    raw/{site}/{night}/{frame_id}.fits          raw bytes, exactly as received
    raw/{site}/{night}/{frame_id}.json          what ingestion learned from the header
    quarantine/{site}/{night}/{frame_id}.*      rejected bytes + a JSON reason
    quarantine/_unassigned/_unassigned/...      rejected before a site/night was known
    ingest/batches/{day}/{batch_id}.json        the ingestion ledger (one file per batch)
    ingest/pixels/{ab}/{pixel_id}.json          which frame first brought these pixels
    ingest/offline_cursor.json                  last batch processed without a daemon
    masters/{site}/{night}/{kind}.fits          bias, dark, flat_{filter}
    masters/{site}/{night}/manifest.json        which master each kind uses (own or fallback)
    calibrated/{site}/{night}/{frame_id}.fits   SCI/ERR/MASK multi-extension FITS
    catalogs/{site}/{night}/{frame_id}.parquet  a frame's source catalogue
    thumbnails/{site}/{night}/{frame_id}.npy    the frame-quality model's input (and
                                                ``.anomaly.npy``, the autoencoder's)
    references/{site}/{field}/{band}/{id}.fits  reference images for subtraction
    candidates/{site}/{night}/{frame_id}.*      difference candidates (.parquet) and their
                                                stamps (.npz)
    alerts/{site}/{night}/{alert_id}.avro       alert packets
    alerts/objects.parquet                      every object alerted on
    annotations/{site}/{night}/{alert_id}.avro  each alert's type, tracklet and prediction
    queues/{site}/{alert_id}.json               follow-up requests, one queue per site
    mpc/{site}/{night}.txt                      asteroid observations, MPC 80-column format
    manifests/{asset}/{site}/{night}.parquet    per-partition tables, each of its declared
                                                schema (manifests.py)
    lightcurves/objects/{tile}.parquet          objects of a sky tile
    lightcurves/points/{tile}/{night}.parquet   their photometry, one file per night
    lightcurves/fused/{tile}.parquet            light curves fused across sites
    lightcurves/offsets.parquet                 zero-point offsets between sites
    variability/{tile}.parquet                  periods and variability statistics
    anomalies/{night}/{table}.parquet           ranked anomalous objects and frames
    reports/{night}/report.html                 the nightly report
    refcat/{field}.parquet                      reference catalogues (Gaia or simulated)
    training/{name}/{part}.npz                  training and evaluation arrays
    site_models/{site}/real_bogus.json          a site's real/bogus learning decision

Every write is atomic: data goes to a hidden temporary name beside the target and is
then moved into place, so a reader never sees half a file (on S3 an object appears
whole when its upload completes). This module is plain Python (no Dagster) so that
dask workers can use it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import os
import posixpath
import stat
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = ["REJECTED", "Entry", "Lake", "Store", "StoreAccessError", "StoreFullError", "rejected"]


#: botocore's settings for every S3 store: a bounded number of attempts, with timeouts, so
#: that an object store that is down gives a clear error in seconds, not a retry storm.
S3_CLIENT_CONFIG = {
    "retries": {"max_attempts": 2, "mode": "standard"},
    "connect_timeout": 5,
    "read_timeout": 60,
}
#: s3fs's own retries of one call (on top of botocore's).
S3_CALL_RETRIES = 2


#: Where files too large to read are set aside inside the drop zone (renamed, not copied).
REJECTED = ".rejected"


def rejected(day: str, rel: str) -> str:
    """Where the drop zone keeps a file it set aside unread on ``day`` (its path ``rel``)."""
    return f"{REJECTED}/{day}/{rel}"


class StoreFullError(OSError):
    """A write failed for lack of space; nothing was replaced."""


class StoreAccessError(PermissionError):
    """The store refused our credentials or permissions (no secret is ever in the message)."""


def _explained(method):
    """Say what to do when the store refuses access (s3fs says only 'Forbidden')."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except StoreAccessError:
            raise
        except PermissionError as exc:
            advice = (
                "check the permissions of the folder and its files for this user"
                if self.is_local
                else "check the credentials in the environment (AWS_ACCESS_KEY_ID, "
                "AWS_SECRET_ACCESS_KEY), the endpoint (TELESCOPE_S3_ENDPOINT_URL) and the "
                "bucket policy"
            )
            raise StoreAccessError(f"{self.url} refused access ({exc}): {advice}") from exc

    return wrapper


@dataclass(frozen=True)
class Entry:
    """One name in a store, as the listing saw it (nothing behind it was opened).

    ``kind`` is ``"file"`` for a plain file; ``"symlink"``, ``"directory_link"`` or
    ``"special"`` (a FIFO, socket or device) for what must never be read from a drop zone.
    """

    rel: str
    kind: str
    size: int
    mtime: float | None
    target: str | None = None  # where a link points (never followed)


class Store:
    """A folder-like place reached through fsspec: the lake, or the incoming drop zone."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        import fsspec

        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        if self.url.startswith("s3://"):
            self.storage_options.setdefault("config_kwargs", S3_CLIENT_CONFIG)
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **self.storage_options)
        if self.url.startswith("s3://"):
            # s3fs retries each call 5 times over botocore's own retries: a store that is
            # down took 70 connections and a minute per write. Two of each: 4 attempts.
            self.fs.retries = S3_CALL_RETRIES
        self.root = self.root.rstrip("/")
        self.is_local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )

    def __reduce__(self):
        return (type(self), (self.url, self.storage_options))

    @property
    def key(self) -> tuple[str, str]:
        """A hashable identity (URL and options as JSON), for caches keyed by store.

        Storage options nest dicts (``client_kwargs``), which are not hashable; rebuild
        the store with :meth:`from_key`.
        """
        return self.url, json.dumps(self.storage_options, sort_keys=True)

    @classmethod
    def from_key(cls, key: tuple[str, str]):
        """The store a :attr:`key` names."""
        return cls(key[0], json.loads(key[1]))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def full(self, rel: str) -> str:
        """Absolute path (in the filesystem's terms) of ``rel``."""
        rel = rel.lstrip("/")
        if ".." in rel.split("/"):
            raise ValueError(f"path {rel!r} escapes the store")
        return posixpath.join(self.root, rel) if rel else self.root

    def url_of(self, rel: str) -> str:
        """The URL of ``rel`` (``s3://bucket/prefix/...`` or a folder path), for people to read."""
        return f"{self.url.rstrip('/')}/{rel}"

    def rel(self, full: str) -> str:
        """Relative path of a full path inside this store."""
        full = self.fs._strip_protocol(full)
        return posixpath.relpath(full, self.root)

    @_explained
    def exists(self, rel: str) -> bool:
        """Whether ``rel`` exists."""
        return self.fs.exists(self.full(rel))

    @_explained
    def read_bytes(self, rel: str) -> bytes:
        """All bytes of ``rel``."""
        return self.fs.cat_file(self.full(rel))

    @_explained
    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``rel`` atomically (temporary name, then move)."""
        target = self.full(rel)
        parent = posixpath.dirname(target)
        if self.is_local:
            self.fs.makedirs(parent, exist_ok=True)
        tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(target)}")
        try:
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, target)
        except BaseException as exc:
            with contextlib.suppress(Exception):  # the original error is what matters
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
                raise StoreFullError(
                    f"no space left on {self.url} writing {rel} ({len(data)} bytes): free "
                    "space or move the lake; the previous version of the file is intact"
                ) from exc
            raise

    @_explained
    def delete(self, rel: str) -> None:
        """Remove ``rel`` if it exists."""
        path = self.full(rel)
        if self.fs.exists(path):
            self.fs.rm(path)

    @_explained
    def list(self, prefix: str = "", suffix: str = "", recursive: bool = False) -> list[str]:
        """Relative paths of files under ``prefix`` (fresh listing, hidden files skipped).

        Listings never come from fsspec's cache (s3fs caches directory listings), so a
        sensor sees files that arrived since its last tick.
        """
        base = self.full(prefix)
        self.fs.invalidate_cache(base)
        if not self.fs.exists(base):
            return []
        if recursive:
            paths = self.fs.find(base)
        else:
            paths = [p for p in self.fs.ls(base, detail=False) if self.fs.isfile(p)]
        out = []
        for p in paths:
            name = posixpath.basename(p)
            if name.startswith(".") or not name.endswith(suffix):
                continue
            out.append(self.rel(p))
        return sorted(out)

    @_explained
    def entries(self, prefix: str = "") -> list[Entry]:
        """Every entry under ``prefix``, recursively, with its kind, size and time.

        On a local folder this looks at each name with ``lstat``: a symbolic link is
        reported as a link (never followed, whether it points at a file or a folder), a
        FIFO or device as ``special``. Hidden names (``.tmp-…`` uploads, ``.rejected/``)
        are skipped. Object stores have only plain objects.
        """
        base = self.full(prefix)
        if not self.is_local:
            self.fs.invalidate_cache(base)
            if not self.fs.exists(base):
                return []
            found = self.fs.find(base, detail=True)
            out = []
            for path, info in found.items():
                rel = self.rel(path)
                if any(part.startswith(".") for part in rel.split("/")):
                    continue
                when = info.get("LastModified") or info.get("mtime")
                mtime = when.timestamp() if hasattr(when, "timestamp") else when
                out.append(Entry(rel, "file", int(info.get("size") or 0), mtime))
            return sorted(out, key=lambda e: e.rel)
        out: list[Entry] = []
        self._scan(base, out)
        return sorted(out, key=lambda e: e.rel)

    def _scan(self, folder: str, out: list[Entry]) -> None:
        try:
            scanner = os.scandir(folder)
        except FileNotFoundError:
            return
        with scanner:
            for item in scanner:
                if item.name.startswith("."):
                    continue
                info = item.stat(follow_symlinks=False)
                rel = self.rel(item.path)
                if stat.S_ISLNK(info.st_mode):
                    target = os.readlink(item.path)
                    kind = "directory_link" if os.path.isdir(item.path) else "symlink"
                    out.append(Entry(rel, kind, 0, info.st_mtime, target))
                elif stat.S_ISDIR(info.st_mode):
                    self._scan(item.path, out)
                elif stat.S_ISREG(info.st_mode):
                    out.append(Entry(rel, "file", info.st_size, info.st_mtime))
                else:
                    out.append(Entry(rel, "special", 0, info.st_mtime))

    @_explained
    def temporaries(self, older_than: float = 3600.0) -> list[str]:
        """Temporary files of writes that never finished (a killed writer), oldest kept.

        Only ``.tmp-*`` names older than ``older_than`` seconds: a younger one may belong
        to a write in progress.
        """
        import time

        base = self.full("")
        self.fs.invalidate_cache(base)
        if not self.fs.exists(base):
            return []
        now, out = time.time(), []
        for path, info in self.fs.find(base, detail=True, withdirs=False).items():
            if not posixpath.basename(path).startswith(".tmp-"):
                continue
            when = info.get("mtime") or info.get("LastModified")
            when = when.timestamp() if hasattr(when, "timestamp") else when
            if when is not None and now - float(when) >= older_than:
                out.append(self.rel(path))
        return sorted(out)

    @_explained
    def remove_entry(self, rel: str) -> None:
        """Remove a name itself (a link, FIFO or file), never what a link points at."""
        path = self.full(rel)
        if self.is_local:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        else:
            self.delete(rel)

    @_explained
    def move(self, rel: str, dest: str) -> None:
        """Move ``rel`` to ``dest`` within this store (a rename on disk: nothing copied)."""
        source, target = self.full(rel), self.full(dest)
        if self.is_local:
            os.makedirs(posixpath.dirname(target), exist_ok=True)
            os.replace(source, target)
        else:
            self.fs.mv(source, target)

    @_explained
    def list_dirs(self, prefix: str) -> list[str]:
        """Names of the sub-folders of ``prefix``."""
        base = self.full(prefix)
        self.fs.invalidate_cache(base)
        if not self.fs.exists(base):
            return []
        entries = self.fs.ls(base, detail=True)
        return sorted(
            posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == "directory"
        )

    @_explained
    def modified(self, rel: str) -> float | None:
        """Modification time (UNIX seconds) of ``rel``, if the filesystem reports one."""
        info = self.fs.info(self.full(rel))
        value = info.get("mtime") or info.get("LastModified") or info.get("created")
        if value is None:
            return None
        if hasattr(value, "timestamp"):
            return value.timestamp()
        return float(value)

    # --- typed helpers -------------------------------------------------------------

    def read_json(self, rel: str) -> Any:
        """Parse a JSON file."""
        return json.loads(self.read_bytes(rel))

    def write_json(self, rel: str, obj: Any) -> None:
        """Write an object as JSON, atomically."""
        self.write_bytes(rel, json.dumps(obj, indent=1, sort_keys=True, default=str).encode())

    def read_parquet(self, rel: str):
        """Read a Parquet table as a pandas DataFrame."""
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.read_bytes(rel)))

    def write_parquet(self, rel: str, df, schema=None) -> None:
        """Write a DataFrame as Parquet (with an explicit Arrow schema if given)."""
        import pyarrow as pa

        self.write_arrow(rel, pa.Table.from_pandas(df, schema=schema, preserve_index=False))

    def write_arrow(self, rel: str, table) -> None:
        """Write an Arrow table as Parquet."""
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(table, buf)
        self.write_bytes(rel, buf.getvalue())

    def read_fits(self, rel: str):
        """Open a FITS file fully in memory (an ``HDUList``)."""
        from astropy.io import fits

        return fits.open(io.BytesIO(self.read_bytes(rel)), memmap=False, lazy_load_hdus=False)

    def write_fits(self, rel: str, hdul) -> None:
        """Write an ``HDUList`` atomically, every unit with ``CHECKSUM`` and ``DATASUM``.

        The cards' comment is fixed (astropy's default holds the time of writing), so the
        same product written twice is the same bytes: a rerun can be compared byte for byte.
        """
        for hdu in hdul:
            hdu.add_checksum(when="FITS 4.0 checksum")
        buf = io.BytesIO()
        hdul.writeto(buf)
        self.write_bytes(rel, buf.getvalue())


class Lake(Store):
    """The lake, with its layout: one builder per product (see the module's table)."""

    #: The ingestion ledger's folder.
    LEDGER = "ingest/batches"
    #: Where a site finds a field's reference catalogue unless its registry entry says
    #: otherwise (``reference_catalog``).
    REFCAT_PATTERN = "refcat/{field}.parquet"

    @staticmethod
    def raw(site: str, night: str, fid: str, ext: str = "fits") -> str:
        """Path of a raw frame (or its ``json`` sidecar)."""
        return f"raw/{site}/{night}/{fid}.{ext}"

    @staticmethod
    def raw_folder(site: str | None = None, night: str | None = None) -> str:
        """Folder of raw frames: of one site and night, of a site's nights, or of the sites."""
        return "/".join(["raw", *(p for p in (site, night) if p is not None)])

    @staticmethod
    def quarantine(site: str | None, night: str | None, fid: str, ext: str) -> str:
        """Path of a quarantined file or its reason."""
        return f"{Lake.quarantine_folder(site, night)}/{fid}.{ext}"

    @staticmethod
    def quarantine_folder(site: str | None, night: str | None) -> str:
        """Folder of one site and night's quarantined files."""
        return f"quarantine/{site or '_unassigned'}/{night or '_unassigned'}"

    @staticmethod
    def offline_cursor() -> str:
        """The last ledger batch processed without a daemon (``telescope-ingest``, the demo).

        A ``new_frames`` sensor started afterwards without a cursor starts from it, so it
        does not request those runs again.
        """
        return "ingest/offline_cursor.json"

    @staticmethod
    def pixel_index(pid: str) -> str:
        """Path of the record of which frame first brought these pixels (by pixel hash)."""
        return f"ingest/pixels/{pid[:2]}/{pid}.json"

    @staticmethod
    def ledger(day: str, batch_id: str | None = None) -> str:
        """The ledger's folder of one UTC day, or one batch's record in it."""
        folder = f"{Lake.LEDGER}/{day}"
        return folder if batch_id is None else f"{folder}/{batch_id}.json"

    @staticmethod
    def master(site: str, night: str, name: str) -> str:
        """Path of a master calibration frame (``bias``, ``dark``, ``flat_r``...)."""
        return f"masters/{site}/{night}/{name}.fits"

    @staticmethod
    def masters_manifest(site: str, night: str) -> str:
        """Which master each kind of a site and night uses (its own or a fallback)."""
        return f"masters/{site}/{night}/manifest.json"

    @staticmethod
    def masters_folder(site: str) -> str:
        """Folder of a site's masters, one subfolder per night."""
        return f"masters/{site}"

    @staticmethod
    def calibrated(site: str, night: str, fid: str) -> str:
        """Path of a calibrated frame."""
        return f"calibrated/{site}/{night}/{fid}.fits"

    @staticmethod
    def catalog(site: str, night: str, fid: str) -> str:
        """Path of a frame's source catalogue."""
        return f"catalogs/{site}/{night}/{fid}.parquet"

    @staticmethod
    def thumbnail(site: str, night: str, fid: str, model: str = "frame_quality") -> str:
        """Path of a frame's input to the frame-quality model or (``anomaly``) the autoencoder."""
        suffix = ".anomaly.npy" if model == "anomaly" else ".npy"
        return f"thumbnails/{site}/{night}/{fid}{suffix}"

    @staticmethod
    def reference(site: str, field: str, band: str, ref_id: str) -> str:
        """Path of a reference image."""
        return f"references/{site}/{field}/{band}/{ref_id}.fits"

    @staticmethod
    def candidates(site: str, night: str, fid: str, ext: str = "parquet") -> str:
        """Path of a frame's difference candidates (``parquet``) or their stamps (``npz``)."""
        return f"candidates/{site}/{night}/{fid}.{ext}"

    @staticmethod
    def alert(site: str, night: str, alert_id: str) -> str:
        """Path of an alert packet."""
        return f"alerts/{site}/{night}/{alert_id}.avro"

    @staticmethod
    def annotation(site: str, night: str, alert_id: str) -> str:
        """Path of an alert's annotation packet (its type, tracklet and prediction)."""
        return f"annotations/{site}/{night}/{alert_id}.avro"

    @staticmethod
    def alert_objects() -> str:
        """The table of every object an alert was issued for, across sites and nights."""
        return "alerts/objects.parquet"

    @staticmethod
    def mpc_report(site: str, night: str) -> str:
        """A site × night's asteroid observations in the MPC's 80-column format."""
        return f"mpc/{site}/{night}.txt"

    @staticmethod
    def queue(site: str, alert_id: str) -> str:
        """Path of a follow-up request in a site's queue."""
        return f"queues/{site}/{alert_id}.json"

    @staticmethod
    def manifest(asset: str, site: str, night: str) -> str:
        """Path of an asset's per-partition table."""
        return f"{Lake.manifests_folder(asset, site)}/{night}.parquet"

    @staticmethod
    def manifests_folder(asset: str, site: str | None = None) -> str:
        """Folder of an asset's per-partition tables (of one site, or one per site)."""
        return f"manifests/{asset}" if site is None else f"manifests/{asset}/{site}"

    @staticmethod
    def light_curve_objects(tile: int) -> str:
        """Path of the objects of a sky tile."""
        return f"lightcurves/objects/{tile}.parquet"

    @staticmethod
    def light_curve_points(tile: int | None = None, night: str | None = None) -> str:
        """A tile's photometry of one night; with no night its folder, with no tile theirs."""
        if tile is None:
            return "lightcurves/points"
        folder = f"lightcurves/points/{tile}"
        return folder if night is None else f"{folder}/{night}.parquet"

    @staticmethod
    def fused_light_curves(tile: int) -> str:
        """A tile's light curves fused across sites."""
        return f"lightcurves/fused/{tile}.parquet"

    @staticmethod
    def site_offsets() -> str:
        """Per site x night x filter zero-point offsets between sites."""
        return "lightcurves/offsets.parquet"

    @staticmethod
    def variability(tile: int | None = None) -> str:
        """Path of a tile's variability table (no tile: their folder)."""
        return "variability" if tile is None else f"variability/{tile}.parquet"

    @staticmethod
    def anomalies(night: str, table: str) -> str:
        """Path of a night's ranked anomalies: ``objects`` or ``frames``."""
        return f"anomalies/{night}/{table}.parquet"

    @staticmethod
    def report(night: str | None = None) -> str:
        """Path of a night's report (no night: the reports' folder)."""
        return "reports" if night is None else f"reports/{night}/report.html"

    @staticmethod
    def refcat(filename: str | None = None) -> str:
        """Path of a reference catalogue file (no name: their folder)."""
        return "refcat" if filename is None else f"refcat/{filename}"

    @staticmethod
    def training(name: str, part: str) -> str:
        """Path of a training set's arrays: ``train``, ``eval`` or a site's own parts."""
        return f"training/{name}/{part}.npz"

    @staticmethod
    def site_model(site: str) -> str:
        """Path of a site's real/bogus learning decision."""
        return f"site_models/{site}/real_bogus.json"

    def read_table(self, rel: str):
        """A Parquet table, or an empty DataFrame when there is none (yet)."""
        import pandas as pd

        return self.read_parquet(rel) if self.exists(rel) else pd.DataFrame()

    def read_manifest(self, asset: str, site: str, night: str):
        """An asset's per-partition table; with none yet, an empty one of its columns.

        The columns are those declared in :mod:`telescope_assets.manifests`.
        """
        from telescope_assets.manifests import MANIFEST_SCHEMAS, empty

        rel = self.manifest(asset, site, night)
        if self.exists(rel):
            return self.read_parquet(rel)
        return empty(asset) if asset in MANIFEST_SCHEMAS else self.read_table(rel)

    def write_manifest(self, asset: str, site: str, night: str, df) -> str:
        """Write an asset's per-partition table in its declared schema; returns its path."""
        from telescope_assets.manifests import conform

        rel = self.manifest(asset, site, night)
        self.write_arrow(rel, conform(asset, df))
        return rel

    def manifest_nights(self, asset: str, site: str) -> list[str]:
        """The nights for which ``asset`` has a table of ``site``, in order."""
        rels = self.list(self.manifests_folder(asset, site), ".parquet")
        return sorted(posixpath.basename(rel).removesuffix(".parquet") for rel in rels)

    def rows_by_frame(self, rel: str) -> dict[str, dict]:
        """A per-frame Parquet table (a partition manifest) as ``{frame_id: row}``."""
        if not self.exists(rel):
            return {}
        return {r["frame_id"]: r for r in self.read_parquet(rel).to_dict("records")}

    def night_table(self, asset: str, night: str, sites=None):
        """One night's partition tables of ``asset`` at every site, with a ``site`` column.

        ``sites`` defaults to every site that has such tables; a site without one for
        the night contributes nothing.
        """
        import pandas as pd

        if sites is None:
            sites = self.list_dirs(self.manifests_folder(asset))
        parts = [
            self.read_parquet(self.manifest(asset, site, night)).assign(site=site)
            for site in sites
            if self.exists(self.manifest(asset, site, night))
        ]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def quarantined(self, site: str, night: str) -> list[dict]:
        """Reasons of every file quarantined for one site and night."""
        return [self.read_json(p) for p in self.list(self.quarantine_folder(site, night), ".json")]
