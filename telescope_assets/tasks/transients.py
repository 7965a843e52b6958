"""References, differences and transient candidates of one site and night (lake-aware work).

References are content-addressed: the reference a night is searched against is the stack
of the best earlier frames of that site, field and filter, so a rerun or a backfill of a
night picks the same frames and the same reference id, and a night's own frames are never
subtracted from a reference that contains them. A reference is rebuilt exactly when the
best earlier frames change (a better night arrived).
"""

from __future__ import annotations

import hashlib
import io
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from telescope_assets.lake import Lake
from telescope_assets.registry import Site
from telescope_assets.science import subtraction
from telescope_assets.tasks.stages import STOP, run_stages

__all__ = [
    "REFERENCE_VERSION",
    "build_reference",
    "difference_one",
    "difference_pair",
    "difference_provenance",
    "earlier_frames",
    "earlier_nights_in_flight",
    "reference_plan",
    "references_for_night",
    "to_score",
]

REFERENCE_VERSION = "ref-2"
#: Version of the subtraction and detection code: a change re-subtracts every frame.
DIFFERENCE_VERSION = "diff-7"
#: Frames stacked into a reference (the best by seeing among the usable earlier ones).
REFERENCE_FRAMES = 3
#: Most candidates kept per frame (the highest S/N); more means a failed subtraction.
MAX_CANDIDATES = 60


def _wcs(header_text: str):
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(fits.Header.fromstring(header_text, sep="\n"))


def earlier_nights_in_flight(partitions: list[str], site: str, night: str) -> list[str]:
    """Nights before ``night`` of ``site`` among runs' partition keys (``night|site``).

    >>> earlier_nights_in_flight(["2026-03-17|ctio", "2026-03-18|teide", "", "2026-03-17|ctio",
    ...                           "2026-03-19|ctio"], "ctio", "2026-03-18")
    ['2026-03-17']
    """
    nights = {
        other
        for other, _, other_site in (key.partition("|") for key in partitions)
        if other_site == site and other < night
    }
    return sorted(nights)


def earlier_frames(lake: Lake, site: str, night: str) -> pd.DataFrame:
    """Usable frames of ``site`` from nights before ``night``.

    Usable: catalogued with WCS and zero point solved, classical quality good or medium,
    not anomalous.
    """
    rows = []
    for rel in lake.list(lake.manifests_folder("frame_quality", site), ".parquet"):
        other = rel.rsplit("/", 1)[-1].removesuffix(".parquet")
        if other >= night:
            continue
        quality = lake.read_parquet(rel)
        cat_path = lake.manifest("source_catalogs", site, other)
        if not len(quality) or not lake.exists(cat_path):
            continue
        cats = lake.read_parquet(cat_path)
        merged = cats.merge(quality[["frame_id", "quality_class"]], on="frame_id")
        if "anomalous" in quality:
            merged = merged.merge(quality[["frame_id", "anomalous"]], on="frame_id")
        rows.append(merged)
    if not rows:
        return pd.DataFrame()
    frames = pd.concat(rows, ignore_index=True)
    usable = (
        frames.wcs_ok.astype(bool)
        & np.isfinite(frames.zero_point.astype(float))
        & np.isfinite(frames.fwhm_px.astype(float))
        & frames.quality_class.isin(["good", "medium"])
    )
    if "anomalous" in frames:
        usable &= ~frames.anomalous.fillna(False).astype(bool)
    return frames[usable].reset_index(drop=True)


def reference_plan(earlier: pd.DataFrame, field: str, band: str) -> tuple[str, pd.DataFrame]:
    """The reference id and frames for a field and filter (empty when none are usable)."""
    if not len(earlier):
        return "", earlier
    pick = earlier[(earlier.object == field) & (earlier["filter"] == band)]
    pick = pick.sort_values(["fwhm_px", "frame_id"]).head(REFERENCE_FRAMES)
    if not len(pick):
        return "", pick
    key = "|".join([REFERENCE_VERSION, *sorted(pick.frame_id)])
    return "ref-" + hashlib.sha256(key.encode()).hexdigest()[:12], pick


def references_for_night(lake: Lake, site: Site, night: str) -> pd.DataFrame:
    """The ``reference_images`` table of one site x night, building what is missing.

    One row per field and filter observed tonight or usably before: a field's reference
    is ready when its first frame of the night arrives (the run of the night's
    calibration frames builds it), not made on that frame's way to an alert.
    """
    tonight = lake.read_manifest("source_catalogs", site.name, night)
    earlier = earlier_frames(lake, site.name, night)
    pairs = {(r.object, r.filter) for r in tonight.itertuples()} if len(tonight) else set()
    if len(earlier):
        pairs |= set(zip(earlier.object, earlier["filter"], strict=True))
    rows = []
    for target, band in sorted(pairs):
        ref_id, _pick = reference_plan(earlier, target, band)
        if not ref_id:
            rows.append(
                {"field": target, "filter": band, "reference_id": "", "status": "no earlier frames"}
            )
            continue
        entry = build_reference(lake, site, target, band, earlier)
        rows.append(entry | {"status": "built" if entry["built_now"] else "unchanged"})
    return pd.DataFrame(rows)


def to_score(kept: list[dict], done: list[dict]) -> list[dict]:
    """Frames whose candidates are scored: kept ones reuse their scores, new ones not."""
    return [r | {"rescore": False} for r in kept] + [
        r | {"rescore": True} for r in done if r["status"] == "subtracted"
    ]


def build_reference(lake: Lake, site: Site, field: str, band: str, frames: pd.DataFrame) -> dict:
    """Align the frames onto the grid of the sharpest one, scale to its zero point, stack.

    Writes a FITS file with ``SCI``/``ERR``/``MASK`` and a ``FRAMES`` table (provenance)
    and returns its description. Already built (same id) means nothing to do.
    """
    from astropy.io import fits
    from astropy.table import Table

    ref_id, pick = reference_plan(frames, field, band)
    path = lake.reference(site.name, field, band, ref_id)
    best = pick.iloc[0]
    seeing = float(np.average(pick.fwhm_px, weights=10 ** (0.4 * pick.zero_point)))
    entry = {
        "reference_id": ref_id,
        "site": site.name,
        "field": field,
        "filter": band,
        "path": path,
        "n_frames": len(pick),
        "frames": ",".join(pick.frame_id),
        "zero_point": float(best.zero_point),
        "fwhm_px": max(seeing, float(pick.fwhm_px.max())),
        "seeing_arcsec": float(pick.fwhm_px.max()) * site.camera.pixel_scale,
        "built_now": False,
    }
    if lake.exists(path):
        return entry
    start = time.perf_counter()
    target_wcs = _wcs(best.wcs_header)
    images, errs, masks, scales = [], [], [], []
    shape = None
    for row in pick.itertuples():
        with lake.read_fits(Lake.calibrated(site.name, row.night, row.frame_id)) as hdul:
            sci = hdul["SCI"].data.astype(np.float64)
            err = hdul["ERR"].data.astype(np.float64)
            mask = hdul["MASK"].data.astype(np.uint8)
        shape = shape or sci.shape
        sky = float(np.median(sci[mask == 0]))
        if row.frame_id == best.frame_id:
            aligned = (sci - sky, err, mask)
        else:
            aligned = subtraction.align(
                sci - sky, err, mask, _wcs(row.wcs_header), target_wcs, shape
            )
        images.append(aligned[0])
        errs.append(aligned[1])
        masks.append(aligned[2])
        # Counts per second on the best frame's zero point.
        scales.append(10 ** (0.4 * (best.zero_point - row.zero_point)) * best.exptime / row.exptime)
    sci, err, mask = subtraction.stack(images, errs, masks, scales)
    header = target_wcs.to_header(relax=True)
    header["REFID"] = ref_id
    header["NFRAMES"] = len(pick)
    header["ZP"] = (float(best.zero_point), "mag of 1 e-/s, as the sharpest frame")
    header["EXPTIME"] = float(best.exptime)
    header["FWHMPX"] = entry["fwhm_px"]
    header["REFVERS"] = REFERENCE_VERSION
    provenance = Table.from_pandas(
        pick[["frame_id", "night", "fwhm_px", "zero_point", "quality_class"]].reset_index(drop=True)
    )
    hdul = fits.HDUList(
        [
            fits.PrimaryHDU(header=header),
            fits.ImageHDU(sci.astype(np.float32), header=header, name="SCI"),
            fits.ImageHDU(err.astype(np.float32), name="ERR"),
            fits.ImageHDU(mask, name="MASK"),
            fits.BinTableHDU(provenance, name="FRAMES"),
        ]
    )
    lake.write_fits(path, hdul)
    return entry | {"built_now": True, "seconds": time.perf_counter() - start}


def _kernel_stars(cat: pd.DataFrame, shape, n: int = 60) -> list[tuple[float, float]]:
    """Bright, clean, isolated stars for the kernel fit."""
    ok = (cat["flags"] == 0) & (cat.snr > 30) & np.isfinite(cat.x) & np.isfinite(cat.y)
    cand = cat[ok].sort_values("snr", ascending=False)
    xy = cat[["x", "y"]].to_numpy()
    out = []
    for x, y in cand[["x", "y"]].to_numpy():
        d = np.hypot(xy[:, 0] - x, xy[:, 1] - y)
        if np.sum(d < 12) > 1:  # a neighbour inside the stamp
            continue
        if 20 <= x < shape[1] - 20 and 20 <= y < shape[0] - 20:
            out.append((float(x), float(y)))
        if len(out) >= n:
            break
    return out


def difference_provenance(row: dict, reference: dict) -> str:
    """What a frame's difference depends on: its catalogue, its reference, this code."""
    key = "|".join([DIFFERENCE_VERSION, str(row["provkey"]), reference["reference_id"]])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def plan_subtractions(
    catalogs: pd.DataFrame,
    quality: pd.DataFrame,
    refs: pd.DataFrame,
    previous: dict[str, dict],
    lake: Lake,
) -> tuple[list[tuple[dict, dict]], list[dict], list[dict]]:
    """Which catalogued frames of a partition to subtract, keep, or skip, and why.

    Returns ``(todo, kept, skipped)``: ``(frame row, reference)`` pairs to subtract; the
    ``previous`` manifest rows still current (same provenance, candidates on disk); and
    rows with the status of a frame not searched — ``bad_quality`` (clouds, defocus,
    trailing: their residuals were every false alert of the demo, and their sources are
    poorly measured), ``no_reference``, ``no_wcs_or_zero_point``.
    """
    bad = set(quality.frame_id[quality.quality_class == "bad"]) if len(quality) else set()
    records = refs.to_dict("records") if len(refs) else []
    by_key = {(r["field"], r["filter"]): r for r in records if r.get("reference_id")}
    todo, kept, skipped = [], [], []
    for row in catalogs.to_dict("records") if len(catalogs) else []:
        ref = by_key.get((row["object"], row["filter"]))
        if row["frame_id"] in bad:
            skipped.append({"frame_id": row["frame_id"], "status": "bad_quality"})
        elif ref is None:
            skipped.append({"frame_id": row["frame_id"], "status": "no_reference"})
        elif not row["wcs_ok"] or not np.isfinite(row["zero_point"]):
            skipped.append({"frame_id": row["frame_id"], "status": "no_wcs_or_zero_point"})
        else:
            old = previous.get(row["frame_id"])
            current = (
                old is not None
                and old.get("provkey") == difference_provenance(row, ref)
                and old.get("status") == "subtracted"
                and lake.exists(old["candidates_path"])
            )
            (kept if current else todo).append(old if current else (row, ref))
    return todo, kept, skipped


@dataclass
class DifferenceWork:
    """One catalogued frame and its reference on the way to candidates."""

    row: dict
    lake: Lake
    site: Site
    reference: dict
    start: float = field(default_factory=time.perf_counter)
    status: str = "subtracted"
    reason: str = ""
    # read_pair
    sci: np.ndarray = None
    err: np.ndarray = None
    mask: np.ndarray = None
    wcs: Any = None
    aligned: tuple = ()  # the reference on this frame's grid and counts: sci, err, mask
    # subtract
    sub: Any = None
    # find_candidates
    n_detections: int = 0
    n_on_trails: int = 0
    candidates: pd.DataFrame = None
    stamps: np.ndarray = None
    # write_candidates
    candidates_path: str = ""
    cutouts_path: str = ""


def read_pair(w: DifferenceWork) -> None:
    """The calibrated frame, and its reference aligned onto it in its counts."""
    row, ref_info = w.row, w.reference
    with w.lake.read_fits(Lake.calibrated(w.site.name, row["night"], row["frame_id"])) as hdul:
        w.sci = hdul["SCI"].data.astype(np.float64)
        w.err = hdul["ERR"].data.astype(np.float64)
        w.mask = hdul["MASK"].data.astype(np.uint8)
    with w.lake.read_fits(ref_info["path"]) as hdul:
        ref = hdul["SCI"].data.astype(np.float64)
        ref_err = hdul["ERR"].data.astype(np.float64)
        ref_mask = hdul["MASK"].data.astype(np.uint8)
        ref_zp = float(hdul["SCI"].header["ZP"])
        ref_exptime = float(hdul["SCI"].header["EXPTIME"])
        ref_wcs = _wcs(hdul["SCI"].header.tostring(sep="\n"))
    w.wcs = _wcs(row["wcs_header"])
    # The reference in this frame's counts: same zero point and exposure time.
    scale = 10 ** (0.4 * (row["zero_point"] - ref_zp)) * row["exptime"] / ref_exptime
    w.aligned = subtraction.align(
        ref * scale, ref_err * scale, ref_mask, ref_wcs, w.wcs, w.sci.shape
    )


def subtract(w: DifferenceWork) -> str | None:
    """The difference image, the sharper image convolved to the other's PSF.

    A frame without a usable kernel is finished here (status ``subtraction_failed``).
    """
    stars = _kernel_stars(w.lake.read_parquet(w.row["catalog_path"]), w.sci.shape)
    try:
        w.sub = subtraction.subtract(
            w.sci,
            w.err,
            w.mask,
            *w.aligned,
            w.row["fwhm_px"],
            w.reference["fwhm_px"],
            stars,
            expected_scale=1.0,  # the reference is on this frame's zero point
        )
    except ValueError as exc:
        w.status, w.reason = "subtraction_failed", str(exc)
        return STOP
    return None


def find_candidates(w: DifferenceWork) -> None:
    """Detections on the difference, with positions, magnitudes and cutouts.

    Detections on satellite trails are set aside and the rest capped; each candidate
    also gets the fraction of a catalogued star's flux it amounts to.
    """
    row, fid = w.row, w.row["frame_id"]
    # The difference has the blurrier image's PSF (the sharper one was convolved to it).
    det = subtraction.detect_difference(w.sub, max(row["fwhm_px"], w.reference["fwhm_px"]))
    w.n_detections = len(det)
    # A satellite trail breaks into dozens of bright detections that would fill the
    # candidate cap and hide real transients: set them aside first.
    trail = subtraction.on_trails(det.x.to_numpy(), det.y.to_numpy())
    w.n_on_trails = int(trail.sum())
    det = det[~trail].head(MAX_CANDIDATES).reset_index(drop=True)
    xy = (det.x.to_numpy(), det.y.to_numpy())
    ra, dec = w.wcs.all_pix2world(*xy, 0) if len(det) else ([], [])
    zp, exptime = row["zero_point"], row["exptime"]
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = zp - 2.5 * np.log10(det.flux_ap.to_numpy() / exptime)
        mag_err = 1.0857 * det.fluxerr_ap.to_numpy() / det.flux_ap.to_numpy()
    w.candidates = det.assign(
        # Named by its pixel, not its rank: a rerun (even of changed code) that finds the
        # same source gives it the same id, and a different source never takes it.
        candidate_id=[f"{fid}-x{round(x):04d}y{round(y):04d}" for x, y in zip(*xy, strict=True)],
        frame_id=fid,
        site=w.site.name,
        night=row["night"],
        mjd=row["mjd"],
        filter=row["filter"],
        field=row["object"],
        ra=np.asarray(ra, float),
        dec=np.asarray(dec, float),
        mag=mag,
        mag_err=mag_err,
        fwhm_px=row["fwhm_px"],
        zero_point=zp,
        reference_id=w.reference["reference_id"],
    )
    w.candidates["star_fraction"] = star_fraction(w.lake, w.site, w.candidates, row)
    sky = float(np.median(w.sci[w.mask == 0]))
    images = [w.sci - sky, w.sub.convolved, w.sub.diff]
    w.stamps = (
        np.stack([subtraction.cutouts(images, x, y) for x, y in zip(*xy, strict=True)])
        if len(det)
        else np.zeros((0, 3, subtraction.STAMP, subtraction.STAMP), np.float32)
    )


def write_candidates(w: DifferenceWork) -> None:
    """The candidates (Parquet) and their science/reference/difference cutouts (npz)."""
    site, night, fid = w.site.name, w.row["night"], w.row["frame_id"]
    w.candidates_path = w.lake.candidates(site, night, fid)
    w.cutouts_path = w.lake.candidates(site, night, fid, "npz")
    w.lake.write_parquet(w.candidates_path, w.candidates)
    buf = io.BytesIO()
    ids = w.candidates.candidate_id.to_numpy(str)
    np.savez_compressed(buf, cutouts=w.stamps, candidate_id=ids)
    w.lake.write_bytes(w.cutouts_path, buf.getvalue())


#: The stages of :func:`difference_one`, in order.
DIFFERENCE_STAGES = (read_pair, subtract, find_candidates, write_candidates)


def difference_one(row: dict, lake: Lake, site: Site, reference: dict) -> dict[str, Any]:
    """Subtract the reference from one catalogued frame and detect candidates.

    Runs :data:`DIFFERENCE_STAGES`: writes ``candidates/{site}/{night}/{frame}.parquet``
    (one row per ≥ 5σ detection) and ``.npz`` (raw science / reference / difference
    cutouts) and returns a per-frame row.
    """
    w = run_stages(DIFFERENCE_STAGES, DifferenceWork(row, lake, site, reference))
    base = {
        "frame_id": row["frame_id"],
        "site": site.name,
        "night": row["night"],
        "reference_id": reference["reference_id"],
        "provkey": difference_provenance(row, reference),
        "mjd": row["mjd"],
        "filter": row["filter"],
        "object": row["object"],
    }
    if w.status != "subtracted":
        return base | {"status": w.status, "reason": w.reason, "n_candidates": 0}
    sub = w.sub
    good = np.isfinite(sub.err) & (sub.err > 0)
    pulls = sub.diff[good] / sub.err[good]
    return base | {
        "status": "subtracted",
        "reason": "",
        "candidates_path": w.candidates_path,
        "cutouts_path": w.cutouts_path,
        "n_candidates": len(w.candidates),
        "n_detections": w.n_detections,
        "n_on_trails": w.n_on_trails,
        "kernel_chi2": sub.chi2,
        "kernel_stamps": sub.n_stamps,
        "kernel_kind": sub.kernel_kind,
        "convolved": sub.convolved_image,
        "photometric_scale": sub.scale,
        "difference_pull_std": float(1.4826 * np.median(np.abs(pulls - np.median(pulls)))),
        "seconds": time.perf_counter() - w.start,
    }


#: Within this distance of a catalogued star (arcsec), a candidate is that star's.
STAR_MATCH_ARCSEC = 1.5


def star_fraction(lake: Lake, site: Site, cands: pd.DataFrame, row: dict) -> np.ndarray:
    """Each candidate's difference flux as a fraction of the constant star under it.

    NaN where no catalogued star is within :data:`STAR_MATCH_ARCSEC`, or it is a known
    variable. A residual of a few per cent on a bright constant star is what a zero point that
    varies across the frame (thin cloud) or a slightly mismatched PSF leaves, and it is
    shaped exactly like the frame's PSF; the alerts need a change larger than that
    (``AlertThresholds.min_star_fraction``).
    """
    from telescope_assets.tasks.alerts import _sep_arcsec
    from telescope_assets.tasks.catalogs import load_reference

    out = np.full(len(cands), np.nan)
    refcat, _ = load_reference(lake, site, row["object"])
    band = row["filter"]
    if refcat is None or not len(refcat) or band not in refcat or not len(cands):
        return out
    constant = ~refcat.variable.astype(bool) if "variable" in refcat else True
    stars = refcat[constant & np.isfinite(refcat[band])]
    if not len(stars):
        return out
    for i, (ra, dec, flux) in enumerate(zip(cands.ra, cands.dec, cands.flux_ap, strict=True)):
        sep = _sep_arcsec(ra, dec, stars.ra, stars.dec)
        j = int(np.argmin(sep))
        if sep[j] < STAR_MATCH_ARCSEC:
            star = 10 ** (-0.4 * (float(stars[band].iloc[j]) - row["zero_point"])) * row["exptime"]
            out[i] = flux / star
    return out


def difference_pair(pair: tuple[dict, dict], lake: Lake, site: Site) -> dict[str, Any]:
    """:func:`difference_one` of a ``(frame row, reference)`` pair (for ``DaskResource.map``)."""
    return difference_one(pair[0], lake, site, pair[1])
