"""Source catalogs and frame-quality metrics of calibrated frames: lake in, science, lake out."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from telescope_assets import __version__
from telescope_assets.lake import Lake
from telescope_assets.registry import Site
from telescope_assets.science import astrometry, detection, photcal, thumbnails
from telescope_assets.science.ephemeris import airmass

__all__ = ["CATALOG_SCHEMA", "CATALOG_VERSION", "catalog_one", "load_reference"]

#: Bump when catalogs change: every frame's catalog becomes stale and is redone.
#: cat-6: aperture correction from a fitted curve of growth; frames without a header WCS
#: solved from their pointing; airmass from the site, time and pointing.
CATALOG_VERSION = "cat-6"
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


def catalog_one(row: dict, lake: Lake, site: Site) -> dict[str, Any]:
    """Detect, measure and calibrate every source of one calibrated frame.

    Writes ``catalogs/{site}/{night}/{frame_id}.parquet`` and returns one row of frame
    quality (with ``status`` ``catalogued``). A frame with no stars, no reference
    catalogue or a failed WCS still gets its row, with ``quality_flags`` saying why.
    """
    start = time.perf_counter()
    fid, night = row["frame_id"], row["night"]
    with lake.read_fits(row["path"]) as hdul:
        sci = hdul["SCI"].data.astype(np.float64)
        err = hdul["ERR"].data.astype(np.float64)
        mask = hdul["MASK"].data.astype(np.uint8)
        header = hdul[0].header
        sci_header = hdul["SCI"].header
    from astropy.time import Time
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs0 = WCS(sci_header)
    band = header["FILTER"]
    exptime = float(header["EXPTIME"])
    when = Time(dt.datetime.fromisoformat(header["DATE-OBS"]).replace(tzinfo=None), scale="utc")
    field = header.get("OBJECT")
    scale = site.camera.pixel_scale
    pointing = (float(header["RA_PNT"]), float(header["DEC_PNT"])) if "RA_PNT" in header else None
    flags: list[str] = []

    guess = detection_fwhm(site)
    # Two passes, as SExtractor users do: the sky again with the sources masked.
    first = detection.measure_background(sci, mask)
    nsigma = site.detection_nsigma
    footprint = detection.source_footprint(sci, mask, first, fwhm_px=guess, nsigma=nsigma)
    bkg = detection.measure_background(sci, mask, sources=footprint)
    sources = detection.detect_sources(sci, mask, bkg, fwhm_px=guess, nsigma=nsigma)
    phot = detection.aperture_photometry(
        sci, err, mask, bkg, sources.x.to_numpy(), sources.y.to_numpy()
    )
    sources = pd.concat([sources, phot], axis=1)
    good_shape = (sources["flags"] == 0) & ~sources.blended & (sources.fwhm > 0)
    if good_shape.sum() >= 5:
        bright = good_shape & (sources.peak > 20 * bkg.median_rms)
        pick = bright if bright.sum() >= 5 else good_shape
        # The seeing is the median of the FWHM of the brightest clean stars: 50 give it
        # to about 1 %, and each is a 2-D fit (a quarter of a second per 100).
        pick = pick & sources.peak.where(pick).rank(ascending=False, method="first").le(FWHM_STARS)
        fits = detection.measure_fwhm(
            sci, bkg, sources.x[pick].to_numpy(), sources.y[pick].to_numpy(), guess
        )
        fwhm = float(np.nanmedian(fits)) if np.isfinite(fits).any() else float("nan")
        ellip = float(np.median(sources.ellipticity[pick]))
    else:
        fwhm, ellip = float("nan"), float("nan")
        flags.append("no_stars")
    radius = max(3.0, 1.5 * fwhm) if np.isfinite(fwhm) else 5.0
    phot2 = detection.aperture_photometry(
        sci, err, mask, bkg, sources.x.to_numpy(), sources.y.to_numpy(), radii=(radius,)
    )
    sources["flux_ap"] = phot2[f"flux_r{radius:g}"].to_numpy()
    sources["fluxerr_ap"] = phot2[f"fluxerr_r{radius:g}"].to_numpy()
    snr = sources.flux_ap / sources.fluxerr_ap
    sources["snr"] = snr
    clean = (sources["flags"] == 0) & ~sources.blended
    growth = _aperture_correction(sci, mask, bkg, sources, clean, radius)
    apcorr, n_apcorr = growth.correction, growth.n_stars
    sources["flux_total"] = sources.flux_ap * apcorr

    ref, ref_path = load_reference(lake, site, field)
    sources["ra"] = np.nan
    sources["dec"] = np.nan
    sources["ref_id"] = ""
    sources["ref_mag"] = np.nan
    solution = None
    if ref is None:
        flags.append("no_reference_catalog")
    elif band not in ref:
        flags.append("reference_lacks_band")
    else:
        args = (
            sources.x.to_numpy(),
            sources.y.to_numpy(),
            sources.flux_ap.to_numpy(),
            ref.ra.to_numpy(),
            ref.dec.to_numpy(),
            ref[band].to_numpy(),
        )
        if wcs0.has_celestial:
            solution = astrometry.refine_wcs(*args, wcs0, sci.shape)
        else:
            # No WCS in the header: from the pointing, else the catalogue's own centre.
            guess = pointing if pointing is not None else _catalogue_centre(ref)
            solution = astrometry.solve_from_pointing(*args, guess, scale, sci.shape)
            flags.append("wcs_from_pointing" if pointing is not None else "wcs_blind")
        if not solution.ok:
            flags.append("wcs_failed")
        elif not solution.refitted:
            flags.append("wcs_verified")  # the header's, confirmed by a few stars
    wcs = solution.wcs if solution is not None and solution.ok else wcs0
    if len(sources):
        ra, dec = wcs.all_pix2world(sources.x.to_numpy(), sources.y.to_numpy(), 0)
        sources["ra"], sources["dec"] = ra, dec

    zp = photcal.ZeroPoint(np.nan, np.nan, 0.0, 0, np.nan, False, "not attempted")
    with np.errstate(divide="ignore", invalid="ignore"):
        m_inst = -2.5 * np.log10(sources.flux_total.to_numpy() / exptime)
        m_inst_err = 1.0857 * sources.fluxerr_ap.to_numpy() / sources.flux_ap.to_numpy()
    if solution is not None and solution.ok:
        det, refi = solution.det_index, solution.ref_index
        sources.loc[sources.index[det], "ref_id"] = ref.source_id.to_numpy()[refi]
        sources.loc[sources.index[det], "ref_mag"] = ref[band].to_numpy()[refi]
        usable = clean.to_numpy()[det] & ~ref.variable.to_numpy()[refi].astype(bool)
        colour = None
        if {"g", "r"} <= set(ref.columns):
            colour = (ref.g - ref.r).to_numpy()[refi][usable]
        ref_err = (
            ref[f"{band}_err"].to_numpy()[refi]
            if f"{band}_err" in ref
            else np.full(len(refi), 0.01)
        )
        zp = photcal.fit_zero_point(
            m_inst[det][usable],
            m_inst_err[det][usable],
            ref[band].to_numpy()[refi][usable],
            ref_err[usable],
            colour=colour,
        )
        if not zp.ok:
            flags.append("zp_failed")
    sources["mag"] = m_inst + zp.zp
    sources["mag_err"] = np.hypot(m_inst_err, zp.zp_err if np.isfinite(zp.zp_err) else 0.0)

    # Airmass from the site, the time and where the telescope pointed: the solved WCS's
    # centre, else the header's pointing, else its WCS; NaN when nothing says where.
    ny, nx = sci.shape
    if wcs.has_celestial:
        centre = wcs.all_pix2world((nx - 1) / 2, (ny - 1) / 2, 0)
        pointing = (float(centre[0]), float(centre[1]))
    x_am = (
        float(airmass(site, pointing[0], pointing[1], when.datetime))
        if pointing is not None
        else float("nan")
    )
    if pointing is None:
        flags.append("no_pointing")
    expected = site.nominal_zero_point.get(band, np.nan) - site.extinction.get(band, 0.0) * (
        x_am - 1
    )
    transparency = float(10 ** (0.4 * (zp.zp - expected))) if zp.ok else float("nan")
    if np.isfinite(transparency) and transparency < 0.5:
        flags.append("clouds")
    if np.isfinite(ellip) and ellip > 0.3:
        flags.append("elongated")
    trail = int(((sources.ellipticity > 0.8) & (sources.area > 20 * max(fwhm, 2.0) ** 2)).sum())
    hot_cols = _hot_columns(sci, mask, bkg)
    sky_mag = (
        zp.zp - 2.5 * np.log10(max(bkg.median, 1e-3) / exptime / scale**2) if zp.ok else np.nan
    )

    sources.insert(0, "source_id", [f"{fid}-{i:05d}" for i in range(len(sources))])
    sources["frame_id"], sources["site"], sources["night"] = fid, site.name, night
    sources["filter"], sources["mjd"] = band, float(when.mjd)
    thumbnail_path = anomaly_input_path = None
    if min(sci.shape) >= thumbnails.REGION:
        good = np.where(mask & 1, np.nan, sci)
        thumbnail_path = lake.thumbnail(site.name, night, fid)
        anomaly_input_path = lake.thumbnail(site.name, night, fid, "anomaly")
        for rel, array in (
            (thumbnail_path, thumbnails.frame_thumbnail(good)),
            (anomaly_input_path, thumbnails.anomaly_representation(good)),
        ):
            buf = io.BytesIO()
            np.save(buf, array, allow_pickle=False)
            lake.write_bytes(rel, buf.getvalue())
    table = sources[[f.name for f in CATALOG_SCHEMA]]
    path = lake.catalog(site.name, night, fid)
    lake.write_parquet(path, table, schema=CATALOG_SCHEMA)
    return {
        "frame_id": fid,
        "site": site.name,
        "night": night,
        "status": "catalogued",
        "catalog_path": path,
        "provkey": catalog_provenance(row["provkey"], site),
        "date_obs": header["DATE-OBS"],
        "mjd": float(when.mjd),
        "filter": band,
        "object": field,
        "exptime": exptime,
        "airmass": x_am,
        "n_sources": len(sources),
        "seeing_arcsec": fwhm * scale,
        "fwhm_px": fwhm,
        "ellipticity": ellip,
        "background_e": bkg.median,
        "background_rms_e": bkg.median_rms,
        "sky_mag": float(sky_mag),
        "zero_point": zp.zp,
        "zero_point_err": zp.zp_err,
        "zp_n_stars": zp.n_used,
        "zp_scatter": zp.scatter,
        "colour_term": zp.colour_term,
        "transparency": transparency,
        "aperture_radius_px": radius,
        "aperture_correction": apcorr,
        "n_apcorr_stars": n_apcorr,
        "aperture_correction_measured": growth.measured,
        "psf_moffat_beta": growth.beta,
        "psf_alpha": growth.alpha,
        "limiting_mag": photcal.limiting_magnitude(zp.zp, exptime, bkg.median_rms, radius, apcorr),
        "astrometric_rms_px": solution.rms_px if solution is not None else np.nan,
        "astrometric_rms_arcsec": (solution.rms_px * scale) if solution is not None else np.nan,
        "n_astrometric_stars": solution.n_matched if solution is not None else 0,
        "wcs_ok": bool(solution is not None and solution.ok),
        "sip_degree": solution.sip_degree if solution else 0,
        "wcs_header": wcs.to_header(relax=True).tostring(sep="\n"),
        "reference_catalog": ref_path,
        "thumbnail_path": thumbnail_path,
        "anomaly_input_path": anomaly_input_path,
        "trail_candidates": trail,
        "hot_columns": hot_cols,
        "quality_flags": ",".join(flags),
        "pipeline_version": __version__,
        "seconds": time.perf_counter() - start,
    }


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
