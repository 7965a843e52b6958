"""Simulate the whole network: every site observing the shared sky, night by night.

For each site and night the simulator plans what a robotic telescope would do —
biases and darks in the afternoon, twilight flats, science exposures of whichever
field is up (airmass < 2) during astronomical night — then renders each frame and drops
it, in the site's own software dialect, into the incoming store. Truth tables go beside
it: per frame (conditions, zero point, quality class, defects), per source (true
position and flux), the sky (variables with periods, transients with light curves), and
a reference catalogue per field (the stand-in for Gaia).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from telescope_assets.registry import Site, SiteRegistry
from telescope_assets.science import quality
from telescope_assets.science.ephemeris import airmass, night_window
from telescope_assets.science.frames import frame_id
from telescope_assets.simulate.optics import PSF, STANDARD_PSF
from telescope_assets.simulate.render import (
    Conditions,
    Source,
    camera_defects,
    frame_zero_point,
    render_raw,
    write_fits,
)
from telescope_assets.simulate.sky import Sky, asteroid_positions, make_sky, rng_for

__all__ = ["DEMO_NIGHTS", "Exposure", "SimulationConfig", "plan_night", "simulate_network"]

DEMO_NIGHTS = ("2026-03-18", "2026-03-19", "2026-03-20")
MJD_UNIX_EPOCH = 40587.0
OPTICS_FWHM_PX = STANDARD_PSF.optics_fwhm_px


@dataclass
class SimulationConfig:
    """What to simulate. The defaults are the README's demo."""

    seed: int = 8
    nights: tuple[str, ...] = DEMO_NIGHTS
    sites: tuple[str, ...] | None = None
    science_per_night: int = 6
    n_bias: int = 5
    n_dark: int = 3
    n_flat: int = 3
    science_exptime: float = 60.0
    dark_exptime: float = 60.0
    stars_per_field: int = 1400
    #: Fraction of uploads cut short in transit (the truth table marks them).
    truncated_uploads: float = 0.01
    defect_rates: dict[str, float] = field(
        default_factory=lambda: {
            "tracking": 0.05,
            "defocus": 0.04,
            "satellite": 0.07,
            "hot_column": 0.03,
            "poor_seeing": 0.05,
        }
    )
    #: Each site's optics (simulate.optics); a site not named has the standard PSF.
    psf: dict[str, PSF] = field(default_factory=dict)


@dataclass
class Exposure:
    """One planned exposure."""

    kind: str
    when: dt.datetime
    exptime: float
    band: str | None = None
    field: str | None = None
    ra: float | None = None
    dec: float | None = None
    airmass: float = 1.0


def _mjd(when: dt.datetime) -> float:
    return MJD_UNIX_EPOCH + when.timestamp() / 86400.0


def night_span(nights) -> tuple[float, float]:
    """MJD from noon UTC of the first night's date to noon UTC after the last night's."""
    if not nights:
        return (0.0, 0.0)
    start = _mjd(dt.datetime.fromisoformat(min(nights)).replace(hour=12, tzinfo=dt.UTC))
    end = _mjd(dt.datetime.fromisoformat(max(nights)).replace(hour=12, tzinfo=dt.UTC))
    return (start, end + 1.0)


def plan_night(site: Site, night: str, sky: Sky, cfg: SimulationConfig) -> list[Exposure]:
    """Plan calibrations and science exposures for one site and night."""
    window = night_window(site, night)
    plan: list[Exposure] = []
    if window.sunset is None:
        return plan
    t = window.sunset - dt.timedelta(hours=2)
    for _ in range(cfg.n_bias):
        plan.append(Exposure("bias", t, 0.0))
        t += dt.timedelta(seconds=20)
    for _ in range(cfg.n_dark):
        plan.append(Exposure("dark", t, cfg.dark_exptime))
        t += dt.timedelta(seconds=cfg.dark_exptime + 20)
    t = window.sunset + dt.timedelta(minutes=10)
    # Clouds at dusk: no twilight flats tonight (the pipeline falls back to another night's).
    flat_bands = () if night_weather(cfg, site.name, night) == "cloudy" else site.filters
    for band in flat_bands:
        for _ in range(cfg.n_flat):
            plan.append(Exposure("flat", t, 5.0, band=band))
            t += dt.timedelta(seconds=40)
    if window.dark_hours <= 0 or cfg.science_per_night == 0:
        return plan
    start, hours = window.evening_twilight_end, window.dark_hours
    ras = np.array([f.ra for f in sky.fields])
    decs = np.array([f.dec for f in sky.fields])
    n = cfg.science_per_night
    for i in range(n):
        when = start + dt.timedelta(hours=hours * (i + 0.5) / n)
        x = airmass(site, ras, decs, when)
        visible = np.flatnonzero(x < 2.0)
        if visible.size == 0:
            continue
        visible = visible[np.argsort(x[visible])]
        nb = len(site.filters)
        pick = visible[(i // nb) % visible.size]
        f = sky.fields[pick]
        plan.append(
            Exposure(
                "science",
                when,
                cfg.science_exptime,
                band=site.filters[i % nb],
                field=f.name,
                ra=f.ra,
                dec=f.dec,
                airmass=float(x[pick]),
            )
        )
    return plan


def night_weather(cfg: SimulationConfig, site: str, night: str) -> str:
    """The night's weather at a site: ``clear``, ``thin`` (cirrus) or ``cloudy``."""
    rng = rng_for(cfg.seed, "weather", site, night)
    return str(rng.choice(["clear", "thin", "cloudy"], p=[0.7, 0.2, 0.1]))


def _conditions(site, night, exp: Exposure, index, cfg, moon_illum, rng) -> Conditions:
    state = night_weather(cfg, site.name, night)
    cond = Conditions(airmass=exp.airmass, psf=cfg.psf.get(site.name, STANDARD_PSF))
    if state == "clear":
        cond.transparency = rng.uniform(0.93, 1.0)
    elif state == "thin":
        cond.transparency = rng.uniform(0.6, 0.9)
    else:
        cond.transparency = rng.uniform(0.15, 0.45)
        cond.cloud_gradient = 0.3
        cond.flags.append("clouds")
    seeing = site.median_seeing_arcsec * rng.lognormal(0, 0.2) * exp.airmass**0.6
    rates = cfg.defect_rates
    if rng.random() < rates["poor_seeing"]:
        seeing *= rng.uniform(2.2, 3.0)
    # Delivered image quality: atmosphere plus optics, focus and guiding (~2 px), so
    # that a small telescope's images are sampled as real ones are.
    cond.seeing_arcsec = float(np.hypot(seeing, cond.psf.optics_fwhm_px * site.camera.pixel_scale))
    if cond.seeing_arcsec > quality.BAD_SEEING_ARCSEC:
        cond.flags.append("poor_seeing")
    moon = {"g": 10.0, "r": 6.0}[exp.band] * moon_illum**2
    cond.sky_mag = site.dark_sky_mag[exp.band] - 2.5 * np.log10(1 + moon) - 0.2 * (exp.airmass - 1)
    ny, nx = site.camera.trimmed_shape
    if rng.random() < rates["tracking"]:
        cond.tracking_px = float(rng.uniform(5, 12))
        cond.tracking_angle = float(rng.uniform(0, np.pi))
        cond.flags.append("tracking")
    elif rng.random() < rates["defocus"]:
        cond.defocus_px = float(rng.uniform(4, 8))
        cond.flags.append("focus")
    if rng.random() < rates["satellite"]:
        cond.satellite = (
            float(rng.uniform(0, nx)),
            float(rng.uniform(0, ny)),
            float(rng.uniform(0, np.pi)),
            float(rng.uniform(200, 1500)),
        )
        cond.flags.append("satellite_trail")
    if rng.random() < rates["hot_column"]:
        cond.new_hot_column = int(rng.integers(0, nx))
        cond.flags.append("hot_pixels")
    return cond


def quality_class(cond: Conditions) -> str:
    """Truth quality class of a science frame, by the pipeline's cuts (science/quality.py)."""
    ruined = bool({"tracking", "focus"} & set(cond.flags))
    spoiled = bool({"satellite_trail", "hot_pixels"} & set(cond.flags))
    return quality.classify(cond.transparency, cond.seeing_arcsec, ruined, spoiled)


def _wcs(site: Site, ra: float, dec: float, rotation_deg: float = 0.0):
    from astropy.wcs import WCS

    ny, nx = site.camera.trimmed_shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    scale = site.camera.pixel_scale / 3600.0
    th = np.radians(rotation_deg)
    w.wcs.cd = scale * np.array([[-np.cos(th), np.sin(th)], [np.sin(th), np.cos(th)]])
    return w


def true_wcs(site: Site, ra: float, dec: float, rotation_deg: float):
    """A frame's true WCS, from the truth table's ``true_crval1/2`` and ``true_rotation_deg``.

    The header's WCS is the nominal pointing; the frame was rendered with this one.
    """
    return _wcs(site, ra, dec, rotation_deg)


def _science_sources(sky: Sky, site, exp: Exposure, cond, true_wcs, cfg):
    mjd = _mjd(exp.when)
    zp = frame_zero_point(site, exp.band, exp.airmass, cond.transparency)
    ny, nx = site.camera.trimmed_shape
    sources, truth = [], []

    def place(table, kind, mag):
        x, y = true_wcs.all_world2pix(table.ra.to_numpy(), table.dec.to_numpy(), 0)
        ok = (x > -20) & (x < nx + 20) & (y > -20) & (y < ny + 20) & np.isfinite(mag)
        flux = 10 ** (-0.4 * (mag - zp)) * exp.exptime
        truth.append(
            pd.DataFrame(
                {
                    "object_id": table.object_id.to_numpy()[ok],
                    "kind": kind,
                    "x": x[ok],
                    "y": y[ok],
                    "mag": mag[ok],
                    "flux_e": flux[ok],
                }
            )
        )
        return ok, x, y, flux

    stars = sky.star_mags(mjd, exp.band, exp.field)
    ok, x, y, flux = place(stars, "star", stars.mag.to_numpy())
    sources.append(Source(x[ok], y[ok], flux[ok]))
    gal = sky.galaxies[sky.galaxies.field == exp.field]
    ok, x, y, flux = place(gal, "galaxy", gal[exp.band].to_numpy())
    sources.append(
        Source(
            x[ok],
            y[ok],
            flux[ok],
            radius_px=gal.radius_arcsec.to_numpy()[ok] / site.camera.pixel_scale,
            axis_ratio=gal.axis_ratio.to_numpy()[ok],
            pa_deg=gal.pa_deg.to_numpy()[ok],
        )
    )
    tr = sky.transient_mags(mjd, exp.band, exp.field)
    ok, x, y, flux = place(tr, "transient", tr.mag.to_numpy())
    sources.append(Source(x[ok], y[ok], flux[ok]))
    movers = _movers(sky, site, exp, true_wcs, place, zp)
    return sources, movers, pd.concat(truth, ignore_index=True), zp


def _movers(sky: Sky, site, exp: Exposure, true_wcs, place, zp: float) -> list[Source]:
    """The asteroids on a frame, trailed: their light spread along their path in the exposure.

    Truth is where each is at mid-exposure.
    """
    mid = _mjd(exp.when) + exp.exptime / 2 / 86400
    ast = sky.asteroid_mags(mid, exp.band, exp.field)
    ok, *_ = place(ast, "asteroid", ast.mag.to_numpy())
    if not ok.any():
        return []
    ast = ast[ok]
    trail_px = ast.rate_arcsec_per_hour.to_numpy() * exp.exptime / 3600 / site.camera.pixel_scale
    steps = int(np.clip(np.ceil(trail_px.max() * 2), 1, 200))
    movers = []
    for k in range(steps):
        t = _mjd(exp.when) + exp.exptime * (k + 0.5) / steps / 86400
        ra, dec = asteroid_positions(ast, t)
        x, y = true_wcs.all_world2pix(ra, dec, 0)
        flux = 10 ** (-0.4 * (ast.mag.to_numpy() - zp)) * exp.exptime
        movers.append(Source(x, y, flux / steps))
    return movers


def _filename(site: Site, exp: Exposure, night: str, seq: int) -> str:
    stamp = night.replace("-", "")
    if site.identify_by == "prefix":  # MaxIm DL style names
        label = {"science": "Light", "bias": "Bias", "dark": "Dark", "flat": "FlatField"}
        what = exp.field if exp.kind == "science" else label[exp.kind]
        suffix = f"_{exp.band}" if exp.band else ""
        return f"{what}_{label[exp.kind]}_{stamp}_{seq:03d}{suffix}.fit"
    return f"{site.name}_{stamp}_{seq:04d}_{exp.kind}.fits"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def simulate_network(
    registry: SiteRegistry,
    incoming: str | os.PathLike,
    truth: str | os.PathLike,
    cfg: SimulationConfig | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Simulate every site and night of ``cfg`` and write frames and truth.

    Parameters
    ----------
    registry : SiteRegistry
        The sites (their cameras decide frame sizes).
    incoming : path-like
        The drop folder: frames land in ``incoming/<site>/``.
    truth : path-like
        Where the truth tables and reference catalogues go.
    cfg : SimulationConfig, optional
        What to simulate.
    progress, on_total : callable, optional
        Called with the number of frames done since the last call / the total planned.

    Returns
    -------
    pandas.DataFrame
        The per-frame truth table (also written to ``truth/frames.parquet``).
    """
    cfg = cfg or SimulationConfig()
    incoming, truth = Path(incoming), Path(truth)
    sky = make_sky(cfg.seed, stars_per_field=cfg.stars_per_field, mjd_span=night_span(cfg.nights))
    sites = [registry[s] for s in (cfg.sites or registry.names)]
    plans = [
        (site, night, plan_night(site, night, sky, cfg)) for site in sites for night in cfg.nights
    ]
    if on_total is not None:
        on_total(sum(len(p) for _, _, p in plans))
    frame_rows, source_tables = [], []
    for site, night, plan in plans:
        defects = camera_defects(site, cfg.seed)
        window = night_window(site, night)
        for seq, exp in enumerate(plan):
            rng = rng_for(cfg.seed, "frame", site.name, night, seq)
            row = {
                "site": site.name,
                "night": night,
                "kind": exp.kind,
                "date_obs": exp.when.isoformat(),
                "mjd": _mjd(exp.when),
                "exptime": exp.exptime,
                "filter": exp.band,
                "field": exp.field,
                "airmass": exp.airmass,
            }
            if exp.kind == "science":
                data, science_row, src_truth, extra = _science_frame(
                    site, night, exp, seq, cfg, sky, defects, window.moon_illumination, rng
                )
                row |= science_row
            else:
                data, extra = _calibration_frame(site, exp, defects, rng)
                src_truth = None
            name = _filename(site, exp, night, seq)
            truncated = bool(
                rng_for(cfg.seed, "upload", site.name, night, seq).random() < cfg.truncated_uploads
            )
            if truncated:
                data = data[: len(data) // 2]
            _write_atomic(incoming / site.name / name, data)
            fid = frame_id(data)
            row |= {"frame_id": fid, "filename": f"{site.name}/{name}", "truncated": truncated}
            row |= extra
            frame_rows.append(row)
            if src_truth is not None:
                source_tables.append(src_truth.assign(frame_id=fid))
            if progress is not None:
                progress(1)
    frames = pd.DataFrame(frame_rows)
    _write_truth(truth, frames, source_tables, sky, cfg.seed)
    return frames


def _science_frame(site, night, exp, seq, cfg, sky, defects, moon_illumination, rng):
    """One science exposure: its FITS bytes, truth row, source truth and render extras."""
    cond = _conditions(site, night, exp, seq, cfg, moon_illumination, rng)
    err = rng.normal(0, 3.0, 2) / 3600  # a few arcseconds of pointing error
    rot = float(rng.normal(0, 0.05))
    true_ra = exp.ra + err[0] / np.cos(np.radians(exp.dec))
    true_dec = exp.dec + err[1]
    true_wcs = _wcs(site, true_ra, true_dec, rot)
    sources, movers, src_truth, zp = _science_sources(sky, site, exp, cond, true_wcs, cfg)
    raw, extra = render_raw(
        site, defects, "science", exp.exptime, exp.band, sources, cond, rng,
        movers=movers, mover_rng=rng_for(cfg.seed, "asteroids", site.name, night, seq),
    )  # fmt: skip
    header_wcs = dict(_wcs(site, exp.ra, exp.dec).to_header())
    data = write_fits(
        raw, site, "science", exp.when, exp.exptime, exp.band, exp.field, (exp.ra, exp.dec),
        header_wcs,
    )  # fmt: skip
    row = {
        "seeing_arcsec": cond.seeing_arcsec,
        "transparency": cond.transparency,
        "sky_mag": cond.sky_mag,
        "zero_point": zp,
        "quality": quality_class(cond),
        "flags": ",".join(cond.flags),
        "true_crval1": true_ra,
        "true_crval2": true_dec,
        "true_rotation_deg": rot,
        "moon_illumination": moon_illumination,
    }
    return data, row, src_truth, extra


def _calibration_frame(site, exp, defects, rng):
    """One bias, dark or flat: its FITS bytes and render extras."""
    level = 0.45 * site.camera.saturation * site.camera.gain
    raw, extra = render_raw(
        site,
        defects,
        exp.kind,
        exp.exptime,
        exp.band,
        [],
        Conditions(),
        rng,
        flat_level_e=level * rng.uniform(0.8, 1.1),
    )
    data = write_fits(raw, site, exp.kind, exp.when, exp.exptime, exp.band, None, None, None)
    return data, extra


def _write_truth(truth: Path, frames, source_tables, sky: Sky, seed: int) -> None:
    """The truth tables and the reference catalogues."""
    truth.mkdir(parents=True, exist_ok=True)
    frames.to_parquet(truth / "frames.parquet", index=False)
    if source_tables:
        pd.concat(source_tables, ignore_index=True).to_parquet(
            truth / "sources.parquet", index=False
        )
    sky.stars.to_parquet(truth / "stars.parquet", index=False)
    sky.galaxies.to_parquet(truth / "galaxies.parquet", index=False)
    sky.transients.to_parquet(truth / "transients.parquet", index=False)
    sky.asteroids.to_parquet(truth / "asteroids.parquet", index=False)
    write_reference_catalogs(sky, truth / "refcat", seed)


def write_reference_catalogs(sky: Sky, out: Path, seed: int) -> None:
    """Write one reference catalogue per field: ra, dec, g, r with Gaia-like errors."""
    out.mkdir(parents=True, exist_ok=True)
    for f in sky.fields:
        rng = rng_for(seed, "refcat", f.name)
        stars = sky.stars[sky.stars.field == f.name]
        err = 0.003 + 0.02 * 10 ** (0.4 * (stars.r.to_numpy() - 20))
        table = pd.DataFrame(
            {
                "source_id": stars.object_id.to_numpy(),
                "ra": stars.ra.to_numpy(),
                "dec": stars.dec.to_numpy(),
                "g": stars.g.to_numpy() + rng.normal(0, err),
                "g_err": err,
                "r": stars.r.to_numpy() + rng.normal(0, err),
                "r_err": err,
                # Only the known classes: the dippers are there to be discovered.
                "variable": np.isin(stars.var_type.to_numpy(), ["rrlyrae", "eclipsing"]),
            }
        )
        table.to_parquet(out / f"{f.name}.parquet", index=False)
