"""Masters and calibrated frames: lake in, science, lake out."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from telescope_assets import __version__
from telescope_assets.lake import Lake
from telescope_assets.registry import Site, parse_section
from telescope_assets.science import calibration
from telescope_assets.science.frames import REASONS, FrameError, has_sky_wcs, read_image

__all__ = [
    "CALIBRATION_VERSION",
    "MIN_FRAMES",
    "CalibrationPlan",
    "build_masters",
    "calibrate_one",
    "calibrated_table",
    "calibration_provenance",
    "masters_report",
    "plan_calibration",
    "raw_manifest",
]

#: Bump when calibration changes its output: every frame becomes stale and is redone.
CALIBRATION_VERSION = "cal-3"  # cal-3: star cores spared from the cosmic-ray mask
#: Fewest frames a master may be combined from.
MIN_FRAMES = 3

RAW_COLUMNS = [
    "frame_id",
    "site",
    "night",
    "frame_type",
    "date_obs",
    "exptime",
    "filter",
    "object",
    "ra_deg",
    "dec_deg",
    "ny",
    "nx",
    "bitpix",
    "size_bytes",
    "pixel_id",
    "container",
    "incoming_path",
    "received_at",
]


def _hash(*parts: object) -> str:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()


def raw_manifest(lake: Lake, site: str, night: str) -> pd.DataFrame:
    """Every raw frame of one site and night, from the ingestion sidecars."""
    rows = [lake.read_json(p) for p in lake.list(lake.raw_folder(site, night), ".json")]
    df = pd.DataFrame(rows, columns=RAW_COLUMNS)
    return df.sort_values(["date_obs", "frame_id"], ignore_index=True)


# --- masters -------------------------------------------------------------------------


def _master_names(site: Site) -> list[tuple[str, str, str | None]]:
    """(name, frame type, filter) of every master a site needs, in dependency order."""
    if site.precalibrated:
        return []
    return [("bias", "bias", None), ("dark", "dark", None)] + [
        (f"flat_{f}", "flat", f) for f in site.filters
    ]


def _own_entry(lake: Lake, site: str, night: str, name: str) -> dict | None:
    path = lake.masters_manifest(site, night)
    if not lake.exists(path):
        return None
    entry = lake.read_json(path).get(name)
    if entry and not entry.get("fallback") and lake.exists(entry["path"]):
        return entry
    return None


def _nearest_own(lake: Lake, site: str, night: str, name: str) -> dict | None:
    """The master made from its own frames on the night nearest to ``night``."""
    target = dt.date.fromisoformat(night)
    best, best_key = None, None
    for other in lake.list_dirs(lake.masters_folder(site)):
        if other == night:
            continue
        entry = _own_entry(lake, site, other, name)
        if entry is None:
            continue
        delta = (dt.date.fromisoformat(other) - target).days
        key = (abs(delta), delta > 0)  # nearest first; on a tie, the earlier night
        if best_key is None or key < best_key:
            best, best_key = entry, key
    return best


def build_masters(lake: Lake, site: Site, night: str, raw: pd.DataFrame) -> dict[str, Any]:
    """Make (or reuse) tonight's masters, falling back to the nearest night's.

    Parameters
    ----------
    lake : Lake
        Where raw frames are read and masters written.
    site : Site
        The site's registry entry (camera, filters).
    night : str
        The night key.
    raw : pandas.DataFrame
        Tonight's raw-frame manifest.

    Returns
    -------
    dict
        One entry per master name: path, master id, source night, whether it is a
        fallback, frames used, statistics, and whether it was (re)made in this call;
        ``None`` for a master that exists neither tonight nor on any other night.
    """
    manifest: dict[str, Any] = {}
    images: dict[str, np.ndarray] = {}
    for name, kind, flt in _master_names(site):
        rows = raw[(raw.frame_type == kind) & ((raw["filter"] == flt) if flt else True)]
        ids = sorted(rows.frame_id)
        if len(ids) < MIN_FRAMES:
            entry = _nearest_own(lake, site.name, night, name)
            if entry is not None:
                entry = entry | {"fallback": True, "made_now": False, "unused_frames": ids}
            manifest[name] = entry
            continue
        deps = [manifest[d]["master_id"] for d in ("bias", "dark") if manifest.get(d)]
        needed = {"dark": ["bias"], "flat": ["bias", "dark"]}.get(kind, [])
        if any(manifest.get(d) is None for d in needed):
            manifest[name] = None  # cannot make it without its dependencies
            continue
        inphash = _hash(*ids, *deps, CALIBRATION_VERSION)
        master_id = f"{site.name}-{night}-{name}-{inphash[:8]}"
        path = lake.master(site.name, night, name)
        existing = _own_entry(lake, site.name, night, name)
        if existing is not None and existing["master_id"] == master_id:
            manifest[name] = existing | {"made_now": False}
            continue
        raws = [read_image(lake.read_bytes(lake.raw(site.name, night, f))) for f in ids]
        exptimes = rows.set_index("frame_id").loc[ids, "exptime"].astype(float).tolist()
        if kind == "bias":
            image = calibration.make_master_bias(raws, site.camera)
        elif kind == "dark":
            image = calibration.make_master_dark(
                raws, exptimes, site.camera, _load(lake, manifest["bias"])
            )
        else:
            image = calibration.make_master_flat(
                raws,
                exptimes,
                site.camera,
                _load(lake, manifest["bias"]),
                _load(lake, manifest["dark"]),
            )
        images[name] = image
        stats = calibration.master_stats(image)
        _write_master(lake, path, image, site, night, name, master_id, inphash, ids, manifest)
        manifest[name] = {
            "name": name,
            "path": path,
            "master_id": master_id,
            "night": night,
            "fallback": False,
            "made_now": True,
            "n_frames": len(ids),
            "frame_ids": ids,
            "stats": stats,
        }
    lake.write_json(lake.masters_manifest(site.name, night), manifest)
    return manifest


def masters_report(manifest: dict, site: Site) -> tuple[pd.DataFrame, list[str]]:
    """One row per master of a night's manifest, and every problem found with them.

    A master is missing (no frames tonight and none on any other night), or outside its
    sanity limits (:func:`master_problems`).
    """
    rows, problems = [], []
    for name, entry in manifest.items():
        if entry is None:
            rows.append({"master": name, "source": "missing"})
            problems.append(f"{name}: no frames tonight and no master on any other night")
            continue
        stats = entry["stats"]
        source = f"fallback from {entry['night']}" if entry["fallback"] else "tonight"
        rows.append(
            {
                "master": name,
                "source": source,
                "n_frames": entry["n_frames"],
                "made_now": entry["made_now"],
                "median": round(stats["median"], 4),
                "mad_std": round(stats["mad_std"], 4),
                "master_id": entry["master_id"],
            }
        )
        problems += master_problems(name, entry, site)
    return pd.DataFrame(rows), problems


def master_problems(name: str, entry: dict, site: Site) -> list[str]:
    """Sanity limits of a master: finite, plausible level and noise."""
    s, cam = entry["stats"], site.camera
    out = []
    if s["n_nonfinite"]:
        out.append(f"{name}: {s['n_nonfinite']} non-finite pixels")
    if name == "bias" and not s["mad_std"] < 3 * cam.read_noise:
        out.append(f"bias: noise {s['mad_std']:.1f} e- exceeds 3x read noise")
    if name == "dark" and not -1.0 < s["median"] < 100 * cam.dark_current + 1.0:
        out.append(f"dark: median current {s['median']:.3f} e-/s is implausible")
    if name.startswith("flat_") and not (0.9 < s["median"] < 1.1 and s["mad_std"] < 0.2):
        out.append(f"{name}: median {s['median']:.3f}, spread {s['mad_std']:.3f}")
    return out


def _write_master(lake, path, image, site, night, name, master_id, inphash, ids, manifest):
    from astropy.io import fits

    hdu = fits.PrimaryHDU(image.astype(np.float32))
    h = hdu.header
    h["OBSTYPE"] = (f"M{name.split('_')[0].upper()}", "master calibration frame")
    h["SITE"] = site.name
    h["NIGHT"] = night
    if name.startswith("flat_"):
        h["FILTER"] = name.split("_", 1)[1]
    h["BUNIT"] = {"bias": "electron", "dark": "electron/s"}.get(name, "")
    h["NFRAMES"] = (len(ids), "frames combined (sigma-clipped mean)")
    h["MASTERID"] = master_id
    h["INPHASH"] = inphash
    h["PIPEVER"] = (__version__, "telescope_assets version")
    h["CALVER"] = CALIBRATION_VERSION
    for dep, key in (("bias", "L1IDBIAS"), ("dark", "L1IDDARK")):
        if dep != name and manifest.get(dep) and name != "bias":
            h[key] = manifest[dep]["master_id"]
    for i, fid in enumerate(ids):
        h[f"IMCMB{i + 1:03d}"] = fid
    lake.write_fits(path, fits.HDUList([hdu]))


@functools.lru_cache(maxsize=16)
def _load_cached(store: tuple[str, str], path: str, master_id: str) -> np.ndarray:
    with Lake.from_key(store).read_fits(path) as hdul:
        return np.asarray(hdul[0].data, dtype=np.float64)


def _load(lake: Lake, entry: dict) -> np.ndarray:
    return _load_cached(lake.key, entry["path"], entry["master_id"])


@functools.lru_cache(maxsize=16)
def _bad_cached(store: tuple[str, str], dark: tuple[str, str], flat: tuple[str, str]) -> np.ndarray:
    return calibration.bad_pixel_mask(_load_cached(store, *dark), _load_cached(store, *flat))


def _bad_pixels(lake: Lake, dark: dict, flat: dict) -> np.ndarray:
    """The masters' bad-pixel mask, made once per process (0.3 s on a 2048² frame)."""
    return _bad_cached(
        lake.key, (dark["path"], dark["master_id"]), (flat["path"], flat["master_id"])
    )


# --- calibrated frames ---------------------------------------------------------------


def calibration_provenance(
    frame: str,
    masters: dict[str, Any],
    flt: str,
    detect_cosmics: bool = True,
    precalibrated: bool = False,
    overscan: bool = False,
) -> dict[str, str] | None:
    """Master ids a frame needs and its provenance key, or ``None`` if a master is missing.

    Every processing option is in the key: turning cosmic-ray detection off changes it,
    so the frames are calibrated again and everything downstream follows. A site whose
    frames arrive already reduced needs no masters (their ids read ``none``); whether its
    camera has an overscan to subtract (``overscan``) is then an option of the key too.
    """
    options = "" if detect_cosmics else "no-cosmics"
    if precalibrated:
        extra = [o for o in (options, "overscan" if overscan else "") if o]
        key = _hash(frame, "precalibrated", CALIBRATION_VERSION, *extra)
        return dict.fromkeys(("L1IDBIAS", "L1IDDARK", "L1IDFLAT"), "none") | {"PROVKEY": key[:20]}
    need = {
        "L1IDBIAS": masters.get("bias"),
        "L1IDDARK": masters.get("dark"),
        "L1IDFLAT": masters.get(f"flat_{flt}"),
    }
    if any(v is None for v in need.values()):
        return None
    ids = {k: v["master_id"] for k, v in need.items()}
    key = _hash(frame, *ids.values(), CALIBRATION_VERSION, *([options] if options else []))
    return ids | {"PROVKEY": key[:20]}


def calibrate_one(
    row: dict,
    lake: Lake,
    site: Site,
    masters: dict[str, Any],
    detect_cosmics: bool = True,
) -> dict[str, Any]:
    """Calibrate one raw science frame and write ``calibrated/{site}/{night}/{id}.fits``.

    A frame that turns out to be unusable is quarantined (its raw bytes stay in the
    lake) and reported with ``status='quarantined'``; it never stops the partition.

    Returns
    -------
    dict
        One row of the ``calibrated_frames`` manifest.
    """
    start = time.perf_counter()
    fid, night, flt = row["frame_id"], row["night"], row["filter"]
    prov = calibration_provenance(
        fid, masters, flt, detect_cosmics, site.precalibrated, site.camera.biassec is not None
    )
    base = {
        "frame_id": fid,
        "site": site.name,
        "night": night,
        "filter": flt,
        "date_obs": row["date_obs"],
        "exptime": row["exptime"],
        "object": row["object"],
    }
    if prov is None:
        return base | {"status": "waiting_for_masters"}
    try:
        data = lake.read_bytes(lake.raw(site.name, night, fid))
        raw = read_image(data)
        if site.precalibrated:
            cal = calibration.calibrate_reduced(raw, site.camera, detect_cosmics=detect_cosmics)
        else:
            cal = calibration.calibrate_frame(
                raw,
                float(row["exptime"]),
                site.camera,
                _load(lake, masters["bias"]),
                _load(lake, masters["dark"]),
                _load(lake, masters[f"flat_{flt}"]),
                detect_cosmics=detect_cosmics,
                bad=_bad_pixels(lake, masters["dark"], masters[f"flat_{flt}"]),
            )
    except (FrameError, ValueError) as exc:
        reason = exc.reason if isinstance(exc, FrameError) else "calibration_failed"
        record = base | {
            "reason": reason,
            "detail": str(exc),
            "advice": REASONS[reason],
            "stage": "calibration",
        }
        lake.write_json(lake.quarantine(site.name, night, fid, "json"), record)
        return base | {"status": "quarantined", "reason": reason, "detail": str(exc)}
    header = _raw_header(data)
    path = lake.calibrated(site.name, night, fid)
    _write_calibrated(lake, path, cal, header, site, row, masters, prov)
    unmasked = cal.mask == 0
    return base | {
        "status": "calibrated",
        "path": path,
        "provkey": prov["PROVKEY"],
        "bias_id": prov["L1IDBIAS"],
        "dark_id": prov["L1IDDARK"],
        "flat_id": prov["L1IDFLAT"],
        "sky_median_e": float(np.median(cal.sci[unmasked])),
        "n_cosmic_ray": cal.n_cosmic_ray,
        "n_saturated": cal.n_saturated,
        "n_masked": int((~unmasked).sum()),
        "n_nan_unmasked": int((~np.isfinite(cal.sci) & unmasked).sum()),
        "seconds": time.perf_counter() - start,
    }


@dataclass
class CalibrationPlan:
    """What a run of ``calibrated_frames`` has to do for one site x night."""

    science: pd.DataFrame  # every science frame of the night
    masters: dict  # the night's masters manifest
    todo: list[dict]  # frames to (re)calibrate
    kept: list[dict]  # manifest rows of frames already up to date


def plan_calibration(
    lake: Lake, site: Site, night: str, detect_cosmics: bool, force: bool = False
) -> CalibrationPlan:
    """The night's science frames, split by provenance into to-do and up to date."""
    from telescope_assets.tasks import split_up_to_date

    raw = raw_manifest(lake, site.name, night)
    science = raw[raw.frame_type == "science"]
    masters = lake.read_json(lake.masters_manifest(site.name, night))
    previous = lake.rows_by_frame(lake.manifest("calibrated_frames", site.name, night))

    def expected(row):
        prov = calibration_provenance(
            row["frame_id"],
            masters,
            row["filter"],
            detect_cosmics,
            site.precalibrated,
            site.camera.biassec is not None,
        )
        return prov["PROVKEY"] if prov else None

    todo, kept = split_up_to_date(
        science.to_dict("records"), previous, expected, lake, "path", force=force
    )
    return CalibrationPlan(science, masters, todo, kept)


def calibrated_table(plan: CalibrationPlan, done: list[dict]) -> tuple[pd.DataFrame, list[str]]:
    """The ``calibrated_frames`` table, and the science frames it does not account for.

    The table holds the kept and the new rows, by frame id; a frame is accounted for
    when it is calibrated or quarantined.
    """
    table = pd.DataFrame([*plan.kept, *done])
    if table.empty:
        table = pd.DataFrame(columns=["frame_id", "status"])
    table = table.sort_values("frame_id", ignore_index=True)
    accounted = table.frame_id[table.status.isin(["calibrated", "quarantined"])]
    return table, sorted(set(plan.science.frame_id) - set(accounted))


def _raw_header(data: bytes):
    from telescope_assets.science.frames import parse_header

    header, _ = parse_header(data)
    return header


def _write_calibrated(lake, path, cal, raw_header, site: Site, row, masters, prov) -> None:
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    primary = fits.PrimaryHDU()
    h = primary.header
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs_header = WCS(raw_header).to_header() if has_sky_wcs(raw_header) else fits.Header()
    skip = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "BZERO", "BSCALE"}
    skip |= set(wcs_header) | {"CD1_1", "CD1_2", "CD2_1", "CD2_2", "WCSAXES"}
    for card in raw_header.cards:
        if getattr(card, "_invalid", False):
            # A card of no FITS convention (ESO-MIDAS's "ESO-LOG hh:mm:ss>" log lines):
            # kept as HISTORY, so that the product parses cleanly everywhere.
            h.add_history(str(card).rstrip())
        elif card.keyword not in skip and card.keyword not in h and card.keyword != "":
            h.append(card, end=True)
    h["RAWID"] = (row["frame_id"], "content hash of the raw file")
    h["SITE"] = site.name
    h["NIGHT"] = row["night"]
    h["FRAMETYP"] = "science"
    h["FILTER"] = row["filter"]
    h["EXPTIME"] = (float(row["exptime"]), "[s]")
    when = dt.datetime.fromisoformat(row["date_obs"]).astimezone(dt.UTC)
    h["DATE-OBS"] = (when.strftime("%Y-%m-%dT%H:%M:%S.%f"), "UTC start of exposure")
    ra, dec = row.get("ra_deg"), row.get("dec_deg")
    if ra is not None and dec is not None and np.isfinite(ra) and np.isfinite(dec):
        h["RA_PNT"] = (float(ra), "[deg] pointing from the raw header")
        h["DEC_PNT"] = (float(dec), "[deg] pointing from the raw header")
    for key in ("L1IDBIAS", "L1IDDARK", "L1IDFLAT", "PROVKEY"):
        h[key] = prov[key]
    if site.precalibrated:
        h["L1PRECAL"] = (True, "reduced by the acquisition software; no masters")
    else:
        for key, name in (("L1FBBIAS", "bias"), ("L1FBDARK", "dark")):
            h[key] = (bool(masters[name].get("fallback")), f"{name} master from another night")
        h["L1FBFLAT"] = (
            bool(masters[f"flat_{row['filter']}"].get("fallback")),
            "flat from another night",
        )
    h["PIPEVER"] = (__version__, "telescope_assets version")
    h["CALVER"] = CALIBRATION_VERSION
    h["GAIN"] = (1.0, "[e-/ADU] data are in electrons")
    h["RDNOISE"] = (site.camera.read_noise, "[e-]")
    h["SATURATE"] = (site.camera.saturation * site.camera.gain, "[e-]")
    if site.camera.trimsec and "CRPIX1" in wcs_header:
        rows, cols = parse_section(site.camera.trimsec)
        wcs_header["CRPIX1"] -= cols.start
        wcs_header["CRPIX2"] -= rows.start
    sci = fits.ImageHDU(cal.sci, name="SCI")
    sci.header["BUNIT"] = "electron"
    sci.header.update(wcs_header)
    err = fits.ImageHDU(cal.err, name="ERR")
    err.header["BUNIT"] = "electron"
    mask = fits.ImageHDU(cal.mask.astype(np.uint8), name="MASK")
    for bit_name, bit in calibration.MASK_BITS.items():
        mask.header[f"MASKB{bit}"] = (bit_name, f"meaning of bit value {bit}")
    lake.write_fits(path, fits.HDUList([primary, sci, err, mask]))
