"""Render one raw frame: optics, atmosphere, detector and the acquisition software.

Work happens in electrons on the trimmed (imaging) grid; the detector then adds bias
structure, read noise and overscan, converts to ADU with the gain and quantises to the
camera's data type, and the site's software dialect writes the header.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from telescope_assets.registry import Site, parse_section
from telescope_assets.simulate.optics import PSF, STANDARD_PSF
from telescope_assets.simulate.sky import rng_for

__all__ = ["CameraDefects", "Conditions", "Source", "camera_defects", "render_raw", "write_fits"]

CR_RATE = 0.25  # cosmic-ray hits per second per megapixel (a high-altitude site)


@dataclass(frozen=True)
class CameraDefects:
    """Fixed properties of one camera: flat response, hot pixels, bias pattern."""

    flat: dict[str, np.ndarray]
    dark_rate: np.ndarray  # e-/s/pixel, hot pixels and columns included
    bias_pattern: np.ndarray  # e-, fixed 2-D structure
    hot_columns: tuple[int, ...]


def camera_defects(site: Site, seed: int) -> CameraDefects:
    """Build the fixed defects of a site's camera (deterministic per site and seed)."""
    cam = site.camera
    ny, nx = cam.trimmed_shape
    rng = rng_for(seed, "camera", site.name, ny, nx)
    yy, xx = np.mgrid[0:ny, 0:nx]
    r2 = ((xx - nx / 2) ** 2 + (yy - ny / 2) ** 2) / (0.5 * max(nx, ny)) ** 2
    pixel_response = 1 + 0.01 * rng.standard_normal((ny, nx))
    flats = {}
    dust = []
    for _ in range(4):
        cx, cy = rng.uniform(0.1, 0.9) * nx, rng.uniform(0.1, 0.9) * ny
        radius, depth = rng.uniform(8, 25), rng.uniform(0.02, 0.06)
        dust.append((cx, cy, radius, depth))
    for i, band in enumerate(site.filters):
        vignetting = 1 - (0.08 + 0.02 * i) * r2
        response = vignetting * pixel_response
        for cx, cy, radius, depth in dust:
            rr = np.hypot(xx - cx, yy - cy)
            response = response * (1 - depth * np.exp(-0.5 * ((rr - radius) / 2.5) ** 2))
        flats[band] = response / response.mean()
    dead = rng.choice(ny * nx, size=max(3, ny * nx // 200000), replace=False)
    for band in flats:
        flats[band].flat[dead] = 0.05
    dark = np.full((ny, nx), cam.dark_current)
    hot = rng.choice(ny * nx, size=ny * nx // 2000, replace=False)
    dark.flat[hot] += rng.uniform(1.0, 60.0, hot.size)
    hot_columns = tuple(int(c) for c in rng.choice(nx, size=2, replace=False))
    for col in hot_columns:
        dark[:, col] += rng.uniform(2.0, 6.0)
    bias_pattern = 3.0 * cam.gain * (xx / nx - 0.5) + 2.0 * cam.gain * np.sin(yy / ny * np.pi)
    return CameraDefects(
        flat=flats, dark_rate=dark, bias_pattern=bias_pattern, hot_columns=hot_columns
    )


@dataclass
class Conditions:
    """The atmosphere and telescope state during one exposure."""

    seeing_arcsec: float = 1.5
    transparency: float = 1.0
    cloud_gradient: float = 0.0  # fractional transparency change across the frame
    sky_mag: float = 21.0  # mag / arcsec^2
    airmass: float = 1.0
    tracking_px: float = 0.0  # trail length in pixels
    tracking_angle: float = 0.0
    defocus_px: float = 0.0  # donut radius in pixels
    satellite: tuple[float, float, float, float] | None = None  # x0, y0, angle, e-/pixel
    new_hot_column: int | None = None
    psf: PSF = STANDARD_PSF  # the shape of a star; seeing_arcsec sets its FWHM
    flags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    """Point or extended sources to render on the trimmed grid (0-based pixels)."""

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray  # electrons in the exposure, above the atmosphere x transparency
    radius_px: np.ndarray | None = None  # None: point sources; else Gaussian sigma (px)
    axis_ratio: np.ndarray | None = None
    pa_deg: np.ndarray | None = None


def _star_stamps(dx, dy, fwhm, cond: Conditions):
    """A star's unnormalised image: the PSF, defocused to a donut or trailed if so."""
    psf = cond.psf
    if cond.defocus_px > 0:
        rr = np.sqrt(dx**2 + dy**2)
        width = max(fwhm / 2.355, 0.8)
        return np.exp(-0.5 * ((rr - cond.defocus_px) / width) ** 2) + 0.05 * psf.profile(
            dx, dy, fwhm
        )
    if cond.tracking_px > 0:
        # A trail: the PSF smeared along a line of length tracking_px.
        total = 0
        c, s = np.cos(cond.tracking_angle), np.sin(cond.tracking_angle)
        steps = np.linspace(-0.5, 0.5, 9) * cond.tracking_px
        for t in steps:
            total = total + psf.profile(dx - t * c, dy - t * s, fwhm)
        return total
    return psf.profile(dx, dy, fwhm)


def _pixel_integrated(dx, dy, fwhm, cond: Conditions):
    """:func:`_star_stamps` averaged over each pixel when the PSF is undersampled."""
    n = cond.psf.subsamples(fwhm)
    if n == 1:
        return _star_stamps(dx, dy, fwhm, cond)
    offsets = (np.arange(n) + 0.5) / n - 0.5
    total = 0
    for ox in offsets:
        for oy in offsets:
            total = total + _star_stamps(dx + ox, dy + oy, fwhm, cond)
    return total / n**2


def _add_stamps(image, x, y, flux, profile, half):
    """Add normalised profiles centred at (x, y) with total ``flux`` into ``image``."""
    ny, nx = image.shape
    offs = np.arange(-half, half + 1)
    for start in range(0, len(x), 256):
        sl = slice(start, start + 256)
        xi = np.round(x[sl]).astype(int)
        yi = np.round(y[sl]).astype(int)
        px = xi[:, None, None] + offs[None, None, :]
        py = yi[:, None, None] + offs[None, :, None]
        dx = px - x[sl, None, None]
        dy = py - y[sl, None, None]
        stamp = profile(dx, dy, sl)
        stamp = stamp / stamp.sum(axis=(1, 2), keepdims=True) * flux[sl, None, None]
        px, py = np.broadcast_to(px, stamp.shape), np.broadcast_to(py, stamp.shape)
        inside = (px >= 0) & (px < nx) & (py >= 0) & (py < ny)
        np.add.at(image, (py[inside], px[inside]), stamp[inside])


def render_sources(shape, sources: list[Source], fwhm_px: float, cond: Conditions):
    """Noise-free electrons from all sources on a ``shape`` grid.

    Point sources are the frame's star image (:func:`_star_stamps`); extended sources are
    their own light convolved with that same image (:func:`_add_extended`), as the
    atmosphere and telescope do: a kernel that matches two frames' stars then matches their
    galaxies too.
    """
    image = np.zeros(shape)
    half = max(
        cond.psf.half_width(fwhm_px),
        int(np.ceil(6 + cond.tracking_px / 2 + cond.defocus_px * 1.5)),
    )

    def point(dx, dy, sl):
        return _pixel_integrated(dx, dy, fwhm_px, cond)

    for src in sources:
        if len(src.x) == 0:
            continue
        if src.radius_px is None:
            _add_stamps(image, src.x, src.y, src.flux, point, half)
        else:
            offs = np.arange(-half, half + 1, dtype=float)
            psf = point(offs[None, None, :], offs[None, :, None], None)[0]
            _add_extended(image, src, psf / psf.sum())
    return image


def _add_extended(image, src: Source, psf: np.ndarray) -> None:
    """Add galaxies: each one's elliptical Gaussian light convolved with ``psf``.

    Each galaxy is drawn on its own stamp (4σ of its light plus the PSF's reach), so the
    cost grows with the galaxies, not with the frame.
    """
    from scipy.signal import fftconvolve

    ny, nx = image.shape
    half_psf = psf.shape[0] // 2
    for i in range(len(src.x)):
        sig, q, pa = max(src.radius_px[i], 0.3), src.axis_ratio[i], np.radians(src.pa_deg[i])
        half = int(np.ceil(4 * sig / min(q, 1.0))) + half_psf
        xi, yi = round(src.x[i]), round(src.y[i])
        dy, dx = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
        dx, dy = dx + xi - src.x[i], dy + yi - src.y[i]
        u = dx * np.cos(pa) + dy * np.sin(pa)
        v = (-dx * np.sin(pa) + dy * np.cos(pa)) / q
        own = np.exp(-0.5 * (u**2 + v**2) / sig**2)
        stamp = fftconvolve(own / own.sum(), psf, mode="same") * src.flux[i]
        y0, x0 = yi - half, xi - half
        ys, xs = (
            slice(max(y0, 0), min(y0 + 2 * half + 1, ny)),
            slice(max(x0, 0), min(x0 + 2 * half + 1, nx)),
        )
        if ys.start < ys.stop and xs.start < xs.stop:
            image[ys, xs] += stamp[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]


def render_raw(
    site: Site,
    defects: CameraDefects,
    kind: str,
    exptime: float,
    band: str | None,
    sources: list[Source],
    cond: Conditions,
    rng: np.random.Generator,
    flat_level_e: float = 0.0,
    movers: list[Source] = (),
    mover_rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, dict]:
    """Simulate one raw frame in ADU as the camera writes it.

    Parameters
    ----------
    site : Site
        Camera geometry, gain, noise and zero points come from the registry entry.
    defects : CameraDefects
        The camera's fixed flat response, dark current and bias pattern.
    kind : str
        ``science``, ``bias``, ``dark`` or ``flat``.
    exptime : float
        Seconds.
    band : str or None
        Filter for science and flat frames.
    sources : list of Source
        What to put on the sky (science frames).
    cond : Conditions
        Seeing, clouds, sky brightness and defects.
    rng : numpy.random.Generator
        Noise source.
    flat_level_e : float
        Electrons per pixel of a flat exposure.
    movers : list of Source
        Asteroids (science frames). Their photons are drawn from ``mover_rng`` and added
        to the frame's own, which Poisson statistics allow: every pixel they do not touch
        is the same as in the frame without them.
    mover_rng : numpy.random.Generator, optional
        The movers' noise source.

    Returns
    -------
    raw : numpy.ndarray
        The frame in ADU, camera-shaped, in the camera's dtype.
    extra : dict
        Truth about this realisation (cosmic ray count, saturated pixels, sky level).
    """
    cam = site.camera
    shape = cam.trimmed_shape
    electrons = np.zeros(shape)
    extra: dict = {"n_cosmic_rays": 0, "sky_e_per_pixel": 0.0}
    if kind == "flat":
        electrons += flat_level_e * defects.flat[band]
    elif kind == "science":
        light, sky = _sky_light(site, exptime, band, sources, cond)
        extra["sky_e_per_pixel"] = float(sky)
        electrons += (light + sky) * defects.flat[band]
    if kind != "bias":
        electrons += defects.dark_rate * exptime
        if cond.new_hot_column is not None:
            electrons[:, cond.new_hot_column] += 20.0 * exptime
    electrons = rng.poisson(np.clip(electrons, 0, None)).astype(np.float64)
    if kind == "science" and movers:
        fwhm_px = cond.seeing_arcsec / cam.pixel_scale
        light = render_sources(shape, movers, fwhm_px, cond) * defects.flat[band]
        electrons += mover_rng.poisson(np.clip(light, 0, None))
    if kind != "bias":
        extra["n_cosmic_rays"] = _add_cosmic_rays(electrons, exptime, rng)
    full_well = cam.saturation * cam.gain
    electrons = _bleed(electrons, full_well)
    electrons += defects.bias_pattern + rng.normal(0, cam.read_noise, shape)
    raw, extra["n_saturated"] = _read_out(cam, electrons, rng)
    return raw, extra


def _sky_light(site: Site, exptime: float, band: str, sources, cond: Conditions):
    """Electrons per pixel from the sources and from the sky, before the flat field.

    The sources' light carries the cloud gradient and the satellite trail, if any.
    """
    cam = site.camera
    ny, nx = shape = cam.trimmed_shape
    zp = site.nominal_zero_point[band]
    sky = 10 ** (-0.4 * (cond.sky_mag - zp)) * cam.pixel_scale**2 * exptime
    fwhm_px = cond.seeing_arcsec / cam.pixel_scale
    light = render_sources(shape, sources, fwhm_px, cond)
    if cond.cloud_gradient:
        yy, xx = np.mgrid[0:ny, 0:nx]
        light *= 1 + cond.cloud_gradient * ((xx + yy) / (nx + ny) - 0.5)
    if cond.satellite is not None:
        x0, y0, angle, level = cond.satellite
        yy, xx = np.mgrid[0:ny, 0:nx]
        dist = np.abs(-(xx - x0) * np.sin(angle) + (yy - y0) * np.cos(angle))
        light += level * np.exp(-0.5 * (dist / max(fwhm_px / 2.355, 0.7)) ** 2)
    return light, sky


def _add_cosmic_rays(electrons: np.ndarray, exptime: float, rng) -> int:
    """Short straight cosmic-ray tracks at :data:`CR_RATE`; returns how many."""
    ny, nx = electrons.shape
    n_cr = rng.poisson(CR_RATE * exptime * ny * nx / 1e6)
    for _ in range(n_cr):
        x, y = rng.integers(1, nx - 1), rng.integers(1, ny - 1)
        energy = rng.uniform(800, 8000)
        length = rng.integers(1, 5)
        ang = rng.uniform(0, np.pi)
        for k in range(length):
            xi = int(np.clip(x + k * np.cos(ang), 0, nx - 1))
            yi = int(np.clip(y + k * np.sin(ang), 0, ny - 1))
            electrons[yi, xi] += energy / length
    return int(n_cr)


def _read_out(cam, electrons: np.ndarray, rng) -> tuple[np.ndarray, int]:
    """The frame in ADU as the camera writes it, and how many pixels saturated.

    Adds the bias level, a drift per row, the overscan's noise and the ADC's ceiling.
    """
    row_drift = rng.normal(0, 1.5, cam.shape[0])  # ADU, seen equally in the overscan
    raw = np.full(cam.shape, float(cam.bias_level))
    raw += row_drift[:, None]
    if cam.biassec is not None:
        rows, cols = parse_section(cam.biassec)
        raw[rows, cols] += rng.normal(0, cam.read_noise / cam.gain, raw[rows, cols].shape)
    trim = parse_section(cam.trimsec) if cam.trimsec else (slice(None), slice(None))
    raw[trim] += electrons / cam.gain
    n_saturated = int((raw[trim] >= cam.saturation).sum())
    raw = np.clip(np.round(raw), 0, 65535)
    raw = np.minimum(raw, cam.saturation + 50)  # the ADC/full well ceiling
    dtype = np.uint16 if cam.dtype == "uint16" else np.float32
    return raw.astype(dtype), n_saturated


def _bleed(electrons: np.ndarray, full_well: float) -> np.ndarray:
    """Spill charge above full well up and down the column, as a CCD does."""
    over = np.argwhere(electrons > full_well)
    if over.size == 0:
        return electrons
    ny = electrons.shape[0]
    for y, x in over:
        excess = electrons[y, x] - full_well
        if excess <= 0:
            continue
        electrons[y, x] = full_well
        step = 1
        while excess > 0 and step < ny:
            for yy in (y - step, y + step):
                if 0 <= yy < ny and excess > 0:
                    room = full_well - electrons[yy, x]
                    if room > 0:
                        take = min(room, excess / 2 if step == 1 else excess)
                        electrons[yy, x] += take
                        excess -= take
            step += 1
    return electrons


def write_fits(
    raw: np.ndarray,
    site: Site,
    kind: str,
    when: dt.datetime,
    exptime: float,
    band: str | None,
    obj: str | None,
    pointing: tuple[float, float] | None,
    wcs_header: dict | None,
) -> bytes:
    """Write a raw frame in the site's software dialect and return the file's bytes."""
    import io

    from astropy.coordinates import Angle
    from astropy.io import fits

    hdu = fits.PrimaryHDU(raw)
    h = hdu.header
    hm = site.header_map
    h[hm["imagetyp"]] = site.imagetyp_value(kind)
    h[hm["exptime"]] = (float(exptime), "[s] exposure time")
    h[hm["date_obs"]] = (when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3], "UTC start of exposure")
    if band is not None:
        h[hm["filter"]] = band
    if obj is not None:
        h[hm["object"]] = obj
    if pointing is not None:
        ra, dec = pointing
        if hm["ra"] == "OBJCTRA":  # ASCOM / MaxIm DL: sexagesimal strings
            h[hm["ra"]] = Angle(ra, "deg").to_string(unit="hourangle", sep=" ", precision=2)
            h[hm["dec"]] = Angle(dec, "deg").to_string(sep=" ", precision=1, alwayssign=True)
        else:
            h[hm["ra"]] = (float(ra), "[deg] commanded pointing")
            h[hm["dec"]] = (float(dec), "[deg] commanded pointing")
    for i, keyword in enumerate(site.site_keywords):
        h[keyword] = site.site_aliases[min(i, len(site.site_aliases) - 1)]
    if hm["imagetyp"] == "IMAGETYP" and site.identify_by == "prefix":
        h["SWCREATE"] = "MaxIm DL Version 6.40"
        h["XBINNING"] = 1
        h["YBINNING"] = 1
        h["CCD-TEMP"] = -20.0
    h["GAIN"] = (site.camera.gain, "[e-/ADU]")
    h["RDNOISE"] = (site.camera.read_noise, "[e-]")
    h["INSTRUME"] = site.camera.name
    if site.camera.biassec:
        h["BIASSEC"] = site.camera.biassec
        h["TRIMSEC"] = site.camera.trimsec
    if wcs_header:
        for key, value in wcs_header.items():
            h[key] = value
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


def frame_zero_point(site: Site, band: str, airmass: float, transparency: float) -> float:
    """True zero point (mag giving 1 e-/s) of a frame: nominal, extinction, clouds."""
    return (
        site.nominal_zero_point[band]
        - site.extinction[band] * (airmass - 1.0)
        + 2.5 * np.log10(max(transparency, 1e-6))
    )
