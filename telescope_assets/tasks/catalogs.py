"""Source catalogs and frame-quality metrics of calibrated frames: lake in, science, lake out."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from telescope_assets import __version__
from telescope_assets.lake import Lake
from telescope_assets.registry import Site
from telescope_assets.science import astrometry, detection, photcal, quality, thumbnails
from telescope_assets.science.ephemeris import airmass
from telescope_assets.tasks.stages import run_stages

__all__ = [
    "CATALOG_SCHEMA",
    "CATALOG_STAGES",
    "CATALOG_VERSION",
    "FrameWork",
    "catalog_one",
    "load_reference",
    "zero_point_scatter",
]

#: Bump when catalogs change: every frame's catalog becomes stale and is redone.
#: cat-6: aperture correction from a fitted curve of growth; frames without a header WCS
#: solved from their pointing; airmass from the site, time and pointing.
#: cat-7: the zero point from calibration stars that no neighbour's light reaches, at the
#: calibration stars' median colour.
CATALOG_VERSION = "cat-7"
#: Stars whose 2-D Gaussian fits give a frame's seeing (their median FWHM).
FWHM_STARS = 50


def _schema():
    import pyarrow as pa

    fields = [
        ("source_id", pa.string()),
        ("frame_id", pa.string()),
        ("site", pa.string()),
        ("night", pa.string()),
        ("filter", pa.string()),
        ("mjd", pa.float64()),
        ("x", pa.float64()),
        ("y", pa.float64()),
        ("ra", pa.float64()),
        ("dec", pa.float64()),
    ]
    for r in detection.APERTURE_RADII:
        fields += [(f"flux_r{r:g}", pa.float64()), (f"fluxerr_r{r:g}", pa.float64())]
    fields += [
        ("flux_ap", pa.float64()),
        ("fluxerr_ap", pa.float64()),
        ("flux_total", pa.float64()),
        ("snr", pa.float64()),
        ("mag", pa.float64()),
        ("mag_err", pa.float64()),
        ("fwhm", pa.float64()),
        ("ellipticity", pa.float64()),
        ("theta", pa.float64()),
        ("area", pa.float64()),
        ("peak", pa.float64()),
        ("flags", pa.int32()),
        ("ref_id", pa.string()),
        ("ref_mag", pa.float64()),
    ]
    return pa.schema(fields)


#: Declared schema of ``source_catalogs`` (one row per source per frame).
CATALOG_SCHEMA = _schema()


@functools.lru_cache(maxsize=32)
def _reference_cached(store: tuple[str, str], rel: str) -> pd.DataFrame:
    lake = Lake.from_key(store)
    data = lake.read_bytes(rel)
    if rel.endswith(".parquet"):
        table = pd.read_parquet(io.BytesIO(data))
    else:
        from astropy.table import Table

        fmt = "ascii.csv" if rel.endswith(".csv") else "fits"
        table = Table.read(io.BytesIO(data), format=fmt).to_pandas()
    missing = {"ra", "dec"} - set(table.columns)
    if missing:
        raise ValueError(f"reference catalogue {rel} lacks columns {sorted(missing)}")
    if "source_id" not in table:
        table["source_id"] = [f"ref{i}" for i in range(len(table))]
    if "variable" not in table:
        table["variable"] = False
    return table


def load_reference(lake: Lake, site: Site, field: str | None) -> tuple[pd.DataFrame | None, str]:
    """A field's reference catalogue as named by the site's registry entry.

    Returns
    -------
    table : pandas.DataFrame or None
        ``None`` when the field has no catalogue (the frame is then flagged).
    path : str
        Where it was looked for.
    """
    rel = site.reference_catalog.format(field=field or "_unknown_")
    if not field or not lake.exists(rel):
        return None, rel
    table = _reference_cached(lake.key, rel)
    # Band columns are matched to the site's filters without regard to case ("R" and
    # "R_err" serve a site whose filter is "r"), and through its filter aliases.
    renames = {}
    for column in table.columns:
        base, _, suffix = str(column).partition("_err")
        band = site.canonical_filter(base)
        if band is not None and band not in table.columns and not suffix:
            renames[column] = band + ("_err" if column.endswith("_err") else "")
    return (table.rename(columns=renames) if renames else table), rel


def detection_fwhm(site: Site) -> float:
    """The detection kernel's FWHM (px): the site's median seeing, at least 2 px."""
    return max(site.median_seeing_arcsec / site.camera.pixel_scale, 2.0)


def catalog_options(site: Site) -> str:
    """The site's settings that change a catalog (part of its provenance key).

    A site whose detection kernel is broader than 2 px has its threshold lowered to the
    same S/N (``detection.threshold_scale``): that, too, is in its key.
    """
    options = f"nsigma={site.detection_nsigma:g}"
    fwhm = detection_fwhm(site)
    if fwhm > detection.THRESHOLD_KERNEL_FWHM:
        options += f",kernel_fwhm={fwhm:.2f},matched_threshold"
    return options


def catalog_provenance(cal_provkey: str, site: Site) -> str:
    """Provenance key of a catalog: its calibrated frame, the code version and options.

    Changing a site's ``detection_nsigma`` changes the key, so its catalogs are redone.
    """
    text = f"{cal_provkey}|{CATALOG_VERSION}|{catalog_options(site)}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass
class FrameWork:
    """One calibrated frame on its way to a catalogue: what each stage reads and adds."""

    row: dict
    lake: Lake
    site: Site
    start: float = field(default_factory=time.perf_counter)
    flags: list[str] = field(default_factory=list)
    # read: the pixels and what the header says
    sci: np.ndarray = None
    err: np.ndarray = None
    mask: np.ndarray = None
    header: Any = None
    wcs0: Any = None  # the header's WCS
    band: str = ""
    exptime: float = float("nan")
    when: Any = None  # astropy Time of DATE-OBS
    field_name: str | None = None  # OBJECT
    pointing: tuple[float, float] | None = None
    # detection, seeing, apertures
    bkg: Any = None
    sources: pd.DataFrame = None
    fwhm: float = float("nan")
    ellip: float = float("nan")
    radius: float = 5.0
    clean: pd.Series = None
    growth: Any = None
    # astrometry, photometric calibration, conditions
    ref: pd.DataFrame | None = None
    ref_path: str = ""
    solution: Any = None
    wcs: Any = None
    zp: Any = None
    airmass: float = float("nan")
    transparency: float = float("nan")
    trail: int = 0
    hot_columns: int = 0
    sky_mag: float = float("nan")
    # outputs
    thumbnail_path: str | None = None
    anomaly_input_path: str | None = None
    catalog_path: str = ""

    @property
    def solved(self) -> bool:
        """Whether the astrometry stage found a WCS that fits the catalogue."""
        return bool(self.solution is not None and self.solution.ok)


def read_frame(w: FrameWork) -> None:
    """The calibrated pixels (SCI, ERR, MASK), filter, exposure, time, field and pointing."""
    from astropy.time import Time
    from astropy.wcs import WCS, FITSFixedWarning

    with w.lake.read_fits(w.row["path"]) as hdul:
        w.sci = hdul["SCI"].data.astype(np.float64)
        w.err = hdul["ERR"].data.astype(np.float64)
        w.mask = hdul["MASK"].data.astype(np.uint8)
        w.header = hdul[0].header
        sci_header = hdul["SCI"].header
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        w.wcs0 = WCS(sci_header)
    header = w.header
    w.band = header["FILTER"]
    w.exptime = float(header["EXPTIME"])
    when = dt.datetime.fromisoformat(header["DATE-OBS"]).replace(tzinfo=None)
    w.when = Time(when, scale="utc")
    w.field_name = header.get("OBJECT")
    if "RA_PNT" in header:
        w.pointing = (float(header["RA_PNT"]), float(header["DEC_PNT"]))


def detect(w: FrameWork) -> None:
    """Sky and sources, then photometry in the fixed apertures.

    In two passes, as SExtractor users do: the sky again with the sources masked.
    """
    guess, nsigma = detection_fwhm(w.site), w.site.detection_nsigma
    first = detection.measure_background(w.sci, w.mask)
    footprint = detection.source_footprint(w.sci, w.mask, first, fwhm_px=guess, nsigma=nsigma)
    w.bkg = detection.measure_background(w.sci, w.mask, sources=footprint)
    sources = detection.detect_sources(w.sci, w.mask, w.bkg, fwhm_px=guess, nsigma=nsigma)
    phot = detection.aperture_photometry(
        w.sci, w.err, w.mask, w.bkg, sources.x.to_numpy(), sources.y.to_numpy()
    )
    w.sources = pd.concat([sources, phot], axis=1)


def seeing(w: FrameWork) -> None:
    """The frame's FWHM and ellipticity from its brightest clean stars (< 5: ``no_stars``)."""
    sources = w.sources
    good_shape = (sources["flags"] == 0) & ~sources.blended & (sources.fwhm > 0)
    if good_shape.sum() < 5:
        w.flags.append("no_stars")
        return
    bright = good_shape & (sources.peak > 20 * w.bkg.median_rms)
    pick = bright if bright.sum() >= 5 else good_shape
    # The seeing is the median of the FWHM of the brightest clean stars: 50 give it to
    # about 1 %, and each is a 2-D fit (a quarter of a second per 100).
    pick = pick & sources.peak.where(pick).rank(ascending=False, method="first").le(FWHM_STARS)
    fits = detection.measure_fwhm(
        w.sci, w.bkg, sources.x[pick].to_numpy(), sources.y[pick].to_numpy(), detection_fwhm(w.site)
    )
    w.fwhm = float(np.nanmedian(fits)) if np.isfinite(fits).any() else float("nan")
    w.ellip = float(np.median(sources.ellipticity[pick]))


def apertures(w: FrameWork) -> None:
    """Photometry in 1.5 FWHM, corrected to total flux by the curve of growth.

    The aperture's radius is at least 3 px; 5 px when the frame has no seeing.
    """
    sources = w.sources
    w.radius = max(3.0, 1.5 * w.fwhm) if np.isfinite(w.fwhm) else 5.0
    phot = detection.aperture_photometry(
        w.sci, w.err, w.mask, w.bkg, sources.x.to_numpy(), sources.y.to_numpy(), radii=(w.radius,)
    )
    sources["flux_ap"] = phot[f"flux_r{w.radius:g}"].to_numpy()
    sources["fluxerr_ap"] = phot[f"fluxerr_r{w.radius:g}"].to_numpy()
    sources["snr"] = sources.flux_ap / sources.fluxerr_ap
    w.clean = (sources["flags"] == 0) & ~sources.blended
    w.growth = _aperture_correction(w.sci, w.mask, w.bkg, sources, w.clean, w.radius)
    sources["flux_total"] = sources.flux_ap * w.growth.correction


def solve_astrometry(w: FrameWork) -> None:
    """The WCS against the field's reference catalogue; sky positions from it.

    The header's WCS refined, else one solved from the pointing, else blind from the
    catalogue's centre.
    """
    sources = w.sources
    w.ref, w.ref_path = load_reference(w.lake, w.site, w.field_name)
    sources["ra"] = np.nan
    sources["dec"] = np.nan
    sources["ref_id"] = ""
    sources["ref_mag"] = np.nan
    ref, band = w.ref, w.band
    if ref is None:
        w.flags.append("no_reference_catalog")
    elif band not in ref:
        w.flags.append("reference_lacks_band")
    else:
        args = (
            sources.x.to_numpy(),
            sources.y.to_numpy(),
            sources.flux_ap.to_numpy(),
            ref.ra.to_numpy(),
            ref.dec.to_numpy(),
            ref[band].to_numpy(),
        )
        if w.wcs0.has_celestial:
            w.solution = astrometry.refine_wcs(*args, w.wcs0, w.sci.shape)
        else:
            # No WCS in the header: from the pointing, else the catalogue's own centre.
            guess = w.pointing if w.pointing is not None else _catalogue_centre(ref)
            scale = w.site.camera.pixel_scale
            w.solution = astrometry.solve_from_pointing(*args, guess, scale, w.sci.shape)
            w.flags.append("wcs_from_pointing" if w.pointing is not None else "wcs_blind")
        if not w.solution.ok:
            w.flags.append("wcs_failed")
        elif not w.solution.refitted:
            w.flags.append("wcs_verified")  # the header's, confirmed by a few stars
    w.wcs = w.solution.wcs if w.solved else w.wcs0
    if len(sources):
        ra, dec = w.wcs.all_pix2world(sources.x.to_numpy(), sources.y.to_numpy(), 0)
        sources["ra"], sources["dec"] = ra, dec


def calibrate_photometry(w: FrameWork) -> None:
    """The zero point from matched, clean, non-variable stars; every source's magnitude.

    With a colour term when the catalogue has g and r.
    """
    sources, ref, band = w.sources, w.ref, w.band
    w.zp = photcal.ZeroPoint(np.nan, np.nan, 0.0, 0, np.nan, False, "not attempted")
    with np.errstate(divide="ignore", invalid="ignore"):
        m_inst = -2.5 * np.log10(sources.flux_total.to_numpy() / w.exptime)
        m_inst_err = 1.0857 * sources.fluxerr_ap.to_numpy() / sources.flux_ap.to_numpy()
    if w.solved:
        det, refi = w.solution.det_index, w.solution.ref_index
        sources.loc[sources.index[det], "ref_id"] = ref.source_id.to_numpy()[refi]
        sources.loc[sources.index[det], "ref_mag"] = ref[band].to_numpy()[refi]
        usable = w.clean.to_numpy()[det] & ~ref.variable.to_numpy()[refi].astype(bool)
        colour = (ref.g - ref.r).to_numpy()[refi] if {"g", "r"} <= set(ref.columns) else None
        ref_err = (
            ref[f"{band}_err"].to_numpy()[refi]
            if f"{band}_err" in ref
            else np.full(len(refi), 0.01)
        )

        def fit(use: np.ndarray) -> photcal.ZeroPoint:
            return photcal.fit_zero_point(
                m_inst[det][use], m_inst_err[det][use], ref[band].to_numpy()[refi][use],
                ref_err[use], colour=None if colour is None else colour[use],
            )  # fmt: skip

        w.zp = fit(usable & _isolated_calibrators(w, det, refi))
        if not w.zp.ok or w.zp.n_used < MIN_ISOLATED_CALIBRATORS:
            # Too few stars clear of neighbours (a crowded or a small frame): all of them.
            crowded = fit(usable)
            if crowded.ok:
                w.zp = crowded
                w.flags.append("zp_crowded")
        if not w.zp.ok:
            w.flags.append("zp_failed")
    zp = w.zp
    sources["mag"] = m_inst + zp.zp
    sources["mag_err"] = np.hypot(m_inst_err, zp.zp_err if np.isfinite(zp.zp_err) else 0.0)


def conditions(w: FrameWork) -> None:
    """Airmass, transparency and sky brightness; flags of clouds, elongation, trails.

    Also counts trail candidates and hot columns.
    """
    # Airmass from the site, the time and where the telescope pointed: the solved WCS's
    # centre, else the header's pointing, else its WCS; NaN when nothing says where.
    ny, nx = w.sci.shape
    if w.wcs.has_celestial:
        centre = w.wcs.all_pix2world((nx - 1) / 2, (ny - 1) / 2, 0)
        w.pointing = (float(centre[0]), float(centre[1]))
    if w.pointing is None:
        w.flags.append("no_pointing")
    else:
        w.airmass = float(airmass(w.site, w.pointing[0], w.pointing[1], w.when.datetime))
    site, band, zp = w.site, w.band, w.zp
    expected = site.nominal_zero_point.get(band, np.nan) - site.extinction.get(band, 0.0) * (
        w.airmass - 1
    )
    w.transparency = float(10 ** (0.4 * (zp.zp - expected))) if zp.ok else float("nan")
    if np.isfinite(w.transparency) and w.transparency < quality.BAD_TRANSPARENCY:
        w.flags.append("clouds")
    if np.isfinite(w.ellip) and w.ellip > quality.ELONGATED_ELLIPTICITY:
        w.flags.append("elongated")
    sources = w.sources
    long = (sources.ellipticity > 0.8) & (sources.area > 20 * max(w.fwhm, 2.0) ** 2)
    w.trail = int(long.sum())
    w.hot_columns = _hot_columns(w.sci, w.mask, w.bkg)
    sky_per_arcsec2 = max(w.bkg.median, 1e-3) / w.exptime / site.camera.pixel_scale**2
    w.sky_mag = float(zp.zp - 2.5 * np.log10(sky_per_arcsec2) if zp.ok else np.nan)


def write_thumbnails(w: FrameWork) -> None:
    """The frame-quality model's and the autoencoder's inputs (frames large enough)."""
    if min(w.sci.shape) < thumbnails.REGION:
        return
    good = np.where(w.mask & 1, np.nan, w.sci)
    site, night, fid = w.site.name, w.row["night"], w.row["frame_id"]
    w.thumbnail_path = w.lake.thumbnail(site, night, fid)
    w.anomaly_input_path = w.lake.thumbnail(site, night, fid, "anomaly")
    for rel, array in (
        (w.thumbnail_path, thumbnails.frame_thumbnail(good)),
        (w.anomaly_input_path, thumbnails.anomaly_representation(good)),
    ):
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        w.lake.write_bytes(rel, buf.getvalue())


def write_catalog(w: FrameWork) -> None:
    """The catalogue, in its declared schema, at ``catalogs/{site}/{night}/{frame_id}``."""
    sources, fid = w.sources, w.row["frame_id"]
    sources.insert(0, "source_id", [f"{fid}-{i:05d}" for i in range(len(sources))])
    sources["frame_id"], sources["site"], sources["night"] = fid, w.site.name, w.row["night"]
    sources["filter"], sources["mjd"] = w.band, float(w.when.mjd)
    w.catalog_path = w.lake.catalog(w.site.name, w.row["night"], fid)
    table = sources[[f.name for f in CATALOG_SCHEMA]]
    w.lake.write_parquet(w.catalog_path, table, schema=CATALOG_SCHEMA)


#: The stages of :func:`catalog_one`, in order.
CATALOG_STAGES = (
    read_frame,
    detect,
    seeing,
    apertures,
    solve_astrometry,
    calibrate_photometry,
    conditions,
    write_thumbnails,
    write_catalog,
)


def catalog_one(row: dict, lake: Lake, site: Site) -> dict[str, Any]:
    """Detect, measure and calibrate every source of one calibrated frame.

    Runs :data:`CATALOG_STAGES`; writes ``catalogs/{site}/{night}/{frame_id}.parquet``
    and returns one row of frame quality (with ``status`` ``catalogued``). A frame with no
    stars, no reference catalogue or a failed WCS still gets its row, with
    ``quality_flags`` saying why; a stage that fails raises
    :class:`~telescope_assets.tasks.stages.StageError` naming it.
    """
    return quality_row(run_stages(CATALOG_STAGES, FrameWork(row, lake, site)))


def quality_row(w: FrameWork) -> dict[str, Any]:
    """The ``frame_quality`` row of a catalogued frame."""
    scale, zp, growth, solution = w.site.camera.pixel_scale, w.zp, w.growth, w.solution
    limit = photcal.limiting_magnitude(
        zp.zp, w.exptime, w.bkg.median_rms, w.radius, growth.correction
    )
    return {
        "frame_id": w.row["frame_id"],
        "site": w.site.name,
        "night": w.row["night"],
        "status": "catalogued",
        "catalog_path": w.catalog_path,
        "provkey": catalog_provenance(w.row["provkey"], w.site),
        "date_obs": w.header["DATE-OBS"],
        "mjd": float(w.when.mjd),
        "filter": w.band,
        "object": w.field_name,
        "exptime": w.exptime,
        "airmass": w.airmass,
        "n_sources": len(w.sources),
        "seeing_arcsec": w.fwhm * scale,
        "fwhm_px": w.fwhm,
        "ellipticity": w.ellip,
        "background_e": w.bkg.median,
        "background_rms_e": w.bkg.median_rms,
        "sky_mag": w.sky_mag,
        "zero_point": zp.zp,
        "zero_point_err": zp.zp_err,
        "zp_n_stars": zp.n_used,
        "zp_scatter": zp.scatter,
        "colour_term": zp.colour_term,
        "colour_pivot": zp.colour_pivot,
        "transparency": w.transparency,
        "aperture_radius_px": w.radius,
        "aperture_correction": growth.correction,
        "n_apcorr_stars": growth.n_stars,
        "aperture_correction_measured": growth.measured,
        "psf_moffat_beta": growth.beta,
        "psf_alpha": growth.alpha,
        "limiting_mag": limit,
        "astrometric_rms_px": solution.rms_px if solution is not None else np.nan,
        "astrometric_rms_arcsec": (solution.rms_px * scale) if solution is not None else np.nan,
        "n_astrometric_stars": solution.n_matched if solution is not None else 0,
        "wcs_ok": w.solved,
        "sip_degree": solution.sip_degree if solution else 0,
        "wcs_header": w.wcs.to_header(relax=True).tostring(sep="\n"),
        "reference_catalog": w.ref_path,
        "thumbnail_path": w.thumbnail_path,
        "anomaly_input_path": w.anomaly_input_path,
        "trail_candidates": w.trail,
        "hot_columns": w.hot_columns,
        "quality_flags": ",".join(w.flags),
        "pipeline_version": __version__,
        "seconds": time.perf_counter() - w.start,
    }


#: A calibration star is used when its neighbours put less than this fraction of its own
#: light in its aperture (estimated from the reference catalogue and the detections).
MAX_CALIBRATOR_CONTAMINATION = 0.002
#: Neighbours count out to the aperture plus this many FWHM.
CALIBRATOR_REACH_FWHM = 4.0
#: A zero point from fewer isolated calibrators than this (or none) is fitted again on
#: every usable star (a crowded or small frame), and the frame is flagged ``zp_crowded``.
MIN_ISOLATED_CALIBRATORS = 10


def _isolated_calibrators(w: FrameWork, det, refi) -> np.ndarray:
    """Which matched stars (``det``, ``refi``) their neighbours' light does not reach.

    A neighbour adds its light to a star's aperture: on a dense simulated field (4000
    stars on 512², 3.3″ seeing) stars with a neighbour within 10 px brighter than 1 % of
    them were measured 1.5 % (S/N 50–100) to 8 % (S/N 10–20) too bright, and the zero
    points of eight frames came out +0.007 to +0.014 mag (2026-12-07). Each star's
    contamination is the neighbours' flux times the share of a Moffat (the frame's curve
    of growth, else β = 3 at its FWHM) that its aperture holds at their distance; the
    neighbours are the reference catalogue's stars (to its depth) and the frame's own
    detections (galaxies, and stars the catalogue lacks), the larger of the two sums.
    """
    sources, ref, band = w.sources, w.ref, w.band
    fwhm = w.fwhm if np.isfinite(w.fwhm) else 3.0
    beta = w.growth.beta if np.isfinite(w.growth.beta) and w.growth.beta > 1.2 else 3.0
    alpha = (
        w.growth.alpha if np.isfinite(w.growth.alpha) else fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    )
    reach = w.radius + CALIBRATOR_REACH_FWHM * fwhm
    grid = np.linspace(0, reach, 64)
    table = photcal.offset_aperture_fraction(grid, w.radius, alpha, beta)

    def fraction(d):
        return np.interp(d, grid, table)

    x = sources.x.to_numpy()[det]
    y = sources.y.to_numpy()[det]
    ref_mag = ref[band].to_numpy()
    finite = np.isfinite(ref_mag)
    rx, ry = w.wcs.all_world2pix(ref.ra.to_numpy()[finite], ref.dec.to_numpy()[finite], 0)
    position = np.cumsum(finite) - 1  # a catalogue row's index among the finite ones
    from_ref = photcal.contamination(
        (rx, ry, 10 ** (-0.4 * ref_mag[finite])), position[refi], reach, fraction, (x, y)
    )
    flux = sources.flux_ap.to_numpy()
    from_det = photcal.contamination(
        (sources.x.to_numpy(), sources.y.to_numpy(), flux), det, reach, fraction
    )
    return np.maximum(from_ref, from_det) < MAX_CALIBRATOR_CONTAMINATION


#: Radii of the curve of growth, in units of the photometric aperture (1.5 FWHM): out to
#: 5 FWHM, where the local sky is still measured well away from the star.
GROWTH_RADII = (0.5, 0.67, 0.83, 1.0, 1.33, 1.67, 2.0, 2.67, 3.33)
#: Stars whose curves of growth give the aperture correction (the brightest isolated).
GROWTH_STARS = 40


def _aperture_correction(sci, mask, bkg, sources, clean, radius):
    """Total/aperture flux from the fitted curve of growth of bright, clean, isolated stars."""
    from scipy.spatial import cKDTree

    xy = sources[["x", "y"]].to_numpy()
    # Out to 5 FWHM, but no further than 30 px: on an oversampled camera (FWHM 6–8 px)
    # a wider circle holds a neighbour around almost every star; the fitted curve
    # extrapolates the rest (under 1 % of the light for β ≥ 3 beyond 3.5 FWHM).
    radii = radius * np.asarray(GROWTH_RADII)
    radii = radii[radii <= max(30.0, 1.5 * radius)]
    r_max = float(radii[-1])
    if len(xy) < 2:
        return photcal.GrowthCurve(1.0, 1.0, np.nan, np.nan, 0, False, "no stars")
    # Isolated: no neighbour within the largest aperture brighter than 1 % of the star
    # (fainter ones change its curve by less than the sky noise does). A 0.3″/px frame's
    # 5 FWHM is 40 px, inside which some faint neighbour almost always lies.
    flux = sources.flux_ap.to_numpy()
    tree = cKDTree(xy)
    isolated = np.array([
        all(j == i or not flux[j] > 0.01 * flux[i] for j in tree.query_ball_point(xy[i], r_max + 2))
        for i in range(len(xy))
    ])  # fmt: skip
    ny, nx = sci.shape
    # The apertures lie on the frame; the sky annulus may run off it (its median is then
    # taken over the pixels that are on it).
    inside = (
        (xy[:, 0] > r_max + 2) & (xy[:, 0] < nx - r_max - 3)
        & (xy[:, 1] > r_max + 2) & (xy[:, 1] < ny - r_max - 3)
    )  # fmt: skip
    use = clean.to_numpy() & isolated & inside
    snr = sources.snr.to_numpy()
    # The wings are measured to a fraction of a percent only on bright stars.
    use &= snr > (100 if (use & (snr > 100)).sum() >= 5 else 30)
    use &= sources.snr.where(use).rank(ascending=False, method="first").le(GROWTH_STARS).to_numpy()
    if use.sum() < 3:
        return photcal.GrowthCurve(1.0, 1.0, np.nan, np.nan, int(use.sum()), False, "few stars")
    x, y = xy[use, 0], xy[use, 1]
    local = detection.local_background(sci, mask, bkg, x, y, r_max + 2, r_max + 20)
    phot = detection.aperture_photometry(
        sci, np.ones_like(sci), mask, bkg, x, y, radii=tuple(float(r) for r in radii)
    )
    fluxes = np.column_stack(
        [phot[f"flux_r{r:g}"].to_numpy() - local * np.pi * r**2 for r in radii]
    )
    fluxes[phot["flags"].to_numpy() != 0] = np.nan
    return photcal.growth_curve_correction(radii, fluxes, radius)


def _catalogue_centre(ref: pd.DataFrame) -> tuple[float, float]:
    """The middle of a reference catalogue's field (RA by its circular mean)."""
    ra = np.radians(ref.ra.to_numpy())
    centre_ra = np.degrees(np.arctan2(np.sin(ra).mean(), np.cos(ra).mean())) % 360.0
    return float(centre_ra), float(np.median(ref.dec.to_numpy()))


def _hot_columns(sci, mask, bkg) -> int:
    """Columns whose unmasked median stands above the sky by more than 5 sigma."""
    import bottleneck

    data = np.where(mask == 0, sci - bkg.level, np.nan)
    # bottleneck's median is numpy's (exact), three times faster; all-masked columns NaN.
    col = bottleneck.nanmedian(data, axis=0)
    noise = bkg.median_rms / np.sqrt(sci.shape[0]) * 1.25
    return int(np.sum(col > 5 * noise + 0.02 * bkg.median_rms))


def zero_point_scatter(table: pd.DataFrame) -> dict[str, float]:
    """Per filter, the scatter (mag) of the frames' extinction-corrected zero points.

    That is the scatter of 2.5 log10(transparency); a filter with one frame has none.
    """
    clear = table[table.transparency > 0]
    return {
        band: float(np.std(2.5 * np.log10(group.transparency))) if len(group) > 1 else 0.0
        for band, group in clear.groupby("filter")
    }
