"""Labelled examples for the network's models, drawn from the simulator's physics.

Labels come free in simulation (as they did for GOTO's and ZTF's classifiers): every
example is rendered from known conditions, so its class is the truth.

* :func:`quality_examples` — frame thumbnails (two channels, see
  :func:`frame_thumbnail`) with the measured seeing and transparency, a quality class
  (good / medium / bad, the simulator's rule) and six defect flags.
* :func:`real_bogus_examples` — 63×63 science / reference / difference triplets of five
  classes: real transient, cosmic ray, bad pixel or column, satellite trail, bad
  subtraction or noise.

Everything is deterministic for a seed.
"""

from __future__ import annotations

import numpy as np

from telescope_assets.ml.labels import FLAG_NAMES, QUALITY_CLASSES, RB_CLASSES
from telescope_assets.science import quality
from telescope_assets.science.thumbnails import (
    ANOMALY_SIDE,
    REGION,
    THUMB,
    anomaly_representation,
    frame_thumbnail,
    normalise,
)
from telescope_assets.simulate.network import OPTICS_FWHM_PX, quality_class
from telescope_assets.simulate.optics import family
from telescope_assets.simulate.render import Conditions, Source, render_sources

__all__ = [
    "FLAG_NAMES",
    "QUALITY_CLASSES",
    "RB_CLASSES",
    "quality_examples",
    "real_bogus_examples",
]

STAMP = 63

# How the catalog pipeline's measurements relate to truth (telescope_assets_tests/
# test_catalogs.py): Gaussian-core FWHM fits read 4.2-5 % above the delivered FWHM, with
# a scatter of about 0.5 %; the zero point, hence transparency, is good to ~1 %.
SEEING_BIAS, SEEING_SCATTER, TRANSPARENCY_SCATTER = 1.04, 0.006, 0.01
ELLIPTICITY_SCATTER = 0.04


def _ellipticity(cond: Conditions, pixel_scale: float) -> float:
    """Ellipticity of the PSF's second moments: a trailed Gaussian, and the optics' own."""
    sigma2 = (cond.seeing_arcsec / pixel_scale / 2.355) ** 2
    major = sigma2 + cond.tracking_px**2 / 12
    # An astigmatic camera's stars are elongated before any trailing (0 for most optics).
    return float(1 - np.sqrt(sigma2 / major) * (1 - cond.psf.ellipticity))


def _quality_conditions(rng, pixel_scale: float, psf=None) -> Conditions:
    """Conditions drawn so that the three classes and every defect are well represented."""
    cond = Conditions() if psf is None else Conditions(psf=psf)
    kind = rng.choice(["good", "medium", "bad"], p=[0.35, 0.35, 0.30])
    atm = rng.uniform(0.9, 2.0) if kind == "good" else rng.uniform(0.9, 3.8)
    optics = OPTICS_FWHM_PX if psf is None else psf.optics_fwhm_px
    cond.seeing_arcsec = float(np.hypot(atm, optics * pixel_scale))
    cond.transparency = float(rng.uniform(0.86, 1.0) if kind == "good" else rng.uniform(0.15, 1.0))
    if kind != "good":
        defect = rng.choice(
            ["none", "tracking", "focus", "satellite", "hot_column"],
            p=[0.4, 0.15, 0.15, 0.15, 0.15],
        )
        if defect == "tracking":
            cond.tracking_px = float(rng.uniform(5, 12))
            cond.tracking_angle = float(rng.uniform(0, np.pi))
            cond.flags.append("tracking")
        elif defect == "focus":
            cond.defocus_px = float(rng.uniform(4, 8))
            cond.flags.append("focus")
        elif defect == "satellite":
            cond.satellite = (
                float(rng.uniform(64, 192)),
                float(rng.uniform(64, 192)),
                float(rng.uniform(0, np.pi)),
                float(rng.uniform(200, 1500)),
            )
            cond.flags.append("satellite_trail")
        elif defect == "hot_column":
            cond.new_hot_column = int(rng.integers(40, 216))
            cond.flags.append("hot_pixels")
    if cond.transparency < quality.BAD_TRANSPARENCY:
        cond.flags.append("clouds")
    if cond.seeing_arcsec > quality.BAD_SEEING_ARCSEC:
        cond.flags.append("poor_seeing")
    return cond


def _render_frame(rng, cond: Conditions, pixel_scale: float, exptime=60.0) -> np.ndarray:
    """A calibrated 256² frame in electrons: stars, sky, defects, noise."""
    n = rng.integers(40, 160)
    mag = 12 + 9.5 * rng.random(n) ** 0.35  # more faint stars than bright
    flux = 10 ** (-0.4 * (mag - 23.5)) * exptime * cond.transparency
    x, y = rng.uniform(-10, REGION + 10, n), rng.uniform(-10, REGION + 10, n)
    light = render_sources(
        (REGION, REGION), [Source(x, y, flux)], cond.seeing_arcsec / pixel_scale, cond
    )
    yy, xx = np.mgrid[0:REGION, 0:REGION]
    if cond.satellite is not None:
        x0, y0, angle, level = cond.satellite
        dist = np.abs(-(xx - x0) * np.sin(angle) + (yy - y0) * np.cos(angle))
        light += level * np.exp(-0.5 * (dist / 1.2) ** 2)
    if "clouds" in cond.flags:
        light *= 1 + 0.3 * ((xx + yy) / (2 * REGION) - 0.5)
    sky = 10 ** (-0.4 * (rng.uniform(19.5, 21.5) - 23.5)) * pixel_scale**2 * exptime
    electrons = light + sky
    if cond.new_hot_column is not None:
        electrons[:, cond.new_hot_column] += 20.0 * exptime
    image = rng.poisson(np.clip(electrons, 0, None)).astype(float) + rng.normal(
        0, 6.0, electrons.shape
    )
    return image - sky


def quality_examples(n: int, seed: int, families: tuple[str, ...] | None = None) -> dict:
    """Frame-quality examples.

    Without ``families``, the simulator's standard optics at 0.9–1.3″/px (what the
    production model trains on). With them, each example's PSF (and pixel scale, where
    the family has one) comes from one of the named camera families
    (:data:`telescope_assets.simulate.optics.FAMILIES`), drawn uniformly: training on
    some and evaluating on others measures what a model does on optics it never saw.

    Returns
    -------
    dict
        ``x`` (n, 2, 64, 64) thumbnails, ``scalars`` (n, 3) measured seeing (arcsec),
        transparency and ellipticity, ``anomaly_x`` (n, 2, 32, 32) the autoencoder's
        input (:func:`anomaly_representation`), ``y`` (n,) class index into
        :data:`QUALITY_CLASSES`, ``flags`` (n, 6) 0/1 for :data:`FLAG_NAMES`,
        ``anomalous`` (n,) morphological defects.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    xs = np.empty((n, 2, THUMB, THUMB), np.float32)
    anomaly_x = np.empty((n, 2, ANOMALY_SIDE, ANOMALY_SIDE), np.float32)
    scalars = np.empty((n, 3), np.float32)
    y = np.empty(n, np.int64)
    flags = np.zeros((n, len(FLAG_NAMES)), np.float32)
    optics = [family(f) for f in families] if families else None
    for i in range(n):
        psf, scale = None, float(rng.uniform(0.9, 1.3))
        if optics is not None:
            chosen = optics[int(rng.integers(len(optics)))]
            psf, scale = chosen.psf, float(chosen.camera.get("pixel_scale", scale))
        cond = _quality_conditions(rng, scale, psf)
        frame = _render_frame(rng, cond, scale)
        xs[i] = frame_thumbnail(frame)
        anomaly_x[i] = anomaly_representation(frame)
        scalars[i] = (
            cond.seeing_arcsec * SEEING_BIAS * (1 + rng.normal(0, SEEING_SCATTER)),
            cond.transparency + rng.normal(0, TRANSPARENCY_SCATTER),
            _ellipticity(cond, scale) + abs(rng.normal(0, ELLIPTICITY_SCATTER)),
        )
        y[i] = QUALITY_CLASSES.index(quality_class(cond))
        for j, name in enumerate(FLAG_NAMES):
            flags[i, j] = float(name in cond.flags)
    morphological = flags[
        :, [FLAG_NAMES.index(f) for f in ("tracking", "focus", "hot_pixels", "satellite_trail")]
    ]
    return {
        "x": xs,
        "anomaly_x": anomaly_x,
        "scalars": scalars,
        "y": y,
        "flags": flags,
        "anomalous": morphological.max(axis=1).astype(np.int64),
    }


def _stamp_pair(rng, fwhm_sci, fwhm_ref, cond: Conditions):
    """Science and reference 63×63 stamps of the same star field (noise-free)."""
    n = rng.integers(0, 6)
    x, y = rng.uniform(0, STAMP, n), rng.uniform(0, STAMP, n)
    # Keep field stars off the centre so the centre is the candidate.
    far = np.hypot(x - 31, y - 31) > 8
    x, y = x[far], y[far]
    flux = 10 ** rng.uniform(2.5, 4.5, len(x))
    sci = render_sources((STAMP, STAMP), [Source(x, y, flux)], fwhm_sci, cond)
    ref = render_sources((STAMP, STAMP), [Source(x, y, flux)], fwhm_ref, cond)
    return sci, ref


#: Share of real examples on a host galaxy, and the hosts' light (e⁻ in the exposure)
#: and size (Gaussian σ, px): the demo sky's galaxies (r 15.5–18.5, 2–4.5″) and fainter.
HOSTED_SHARE, HOST_FLUX_LOG10, HOST_RADIUS_PX = 0.35, (3.8, 5.8), (1.5, 4.5)


def _host_galaxy(rng, cx, cy, fwhms, cond):
    """A galaxy around the new source, as science, reference and the matched reference.

    The source lies within the galaxy's light (offset by its profile). The PSF-matched
    reference misses the galaxy by what a good kernel leaves (0.05 px, 0.5 % in flux,
    2 % in width): the noise-level residual a clean subtraction leaves on a host.
    """
    fwhm_sci, fwhm_ref = fwhms
    radius = rng.uniform(*HOST_RADIUS_PX)
    offset = rng.normal(0.0, radius, 2)
    shape = {
        "radius_px": np.r_[radius],
        "axis_ratio": np.r_[rng.uniform(0.4, 1.0)],
        "pa_deg": np.r_[rng.uniform(0, 180)],
    }
    flux = 10 ** rng.uniform(*HOST_FLUX_LOG10)
    gx, gy = cx - offset[0], cy - offset[1]
    gal = Source(np.r_[gx], np.r_[gy], np.r_[flux], **shape)
    shift = rng.normal(0.0, 0.05, 2)
    matched = Source(
        np.r_[gx + shift[0]], np.r_[gy + shift[1]], np.r_[flux * rng.normal(1.0, 0.005)], **shape
    )
    grid = (STAMP, STAMP)
    return (
        render_sources(grid, [gal], fwhm_sci, cond),
        render_sources(grid, [gal], fwhm_ref, cond),
        render_sources(grid, [matched], fwhm_sci * rng.normal(1.0, 0.02), cond),
    )


def _real_source(rng, sci, ref, cx, cy, snr, fwhms, noise_sci, cond):
    """A new point source of this S/N; :data:`HOSTED_SHARE` of the time on a galaxy.

    Returns the science, the reference, the PSF-matched reference's model of the
    science, and the new source's image.
    """
    fwhm_sci = fwhms[0]
    model = sci.copy()
    if rng.random() < HOSTED_SHARE:
        gal_sci, gal_ref, gal_model = _host_galaxy(rng, cx, cy, fwhms, cond)
        sci, ref, model = sci + gal_sci, ref + gal_ref, model + gal_model
        # The host's own photons are noise too: the S/N is the one the sky gives there.
        noise_sci = np.sqrt(noise_sci**2 + gal_sci[round(cy), round(cx)])
    # Flux that reaches this S/N in an optimal aperture of the science PSF.
    flux = snr * noise_sci * np.sqrt(4 * np.pi * (fwhm_sci / 2.355) ** 2)
    extra = render_sources(
        (STAMP, STAMP), [Source(np.r_[cx], np.r_[cy], np.r_[flux])], fwhm_sci, cond
    )
    return sci, ref, model, extra


def _artefact(rng, cls, cx, cy, fwhm_sci, noise_sci) -> np.ndarray:
    """The image of a cosmic ray, a bad pixel or column, or a satellite trail."""
    yy, xx = np.mgrid[0:STAMP, 0:STAMP]
    extra = np.zeros((STAMP, STAMP))
    if cls == "cosmic_ray":
        for k in range(rng.integers(1, 4)):
            extra[int(cy) + k * rng.integers(-1, 2), int(cx) + k * rng.integers(0, 2)] += (
                rng.uniform(15, 150) * noise_sci
            )
    elif cls == "bad_pixel":
        if rng.random() < 0.5:
            extra[:, int(cx)] += rng.uniform(3, 30) * noise_sci
        else:
            extra[int(cy) - 1 : int(cy) + 1, int(cx) - 1 : int(cx) + 1] += (
                rng.uniform(10, 100) * noise_sci
            )
    else:  # satellite_trail
        ang = rng.uniform(0, np.pi)
        dist = np.abs(-(xx - cx) * np.sin(ang) + (yy - cy) * np.cos(ang))
        extra = rng.uniform(3, 40) * noise_sci * np.exp(-0.5 * (dist / (fwhm_sci / 2.355)) ** 2)
    return extra


def _bad_subtraction(rng, sci, ref, model, extra, cx, cy, fwhms, noise_sci, cond):
    """A galaxy or a star badly subtracted, or a noise peak on an empty difference."""
    fwhm_sci, fwhm_ref = fwhms
    if rng.random() < 0.3:
        # A galaxy in both images whose PSF matching is imperfect: the kernel is fitted
        # on stars, and a galaxy's residual is the classic bogus of image subtraction.
        flux = 10 ** rng.uniform(4.0, 5.5)
        shape = {
            "radius_px": np.r_[rng.uniform(1.5, 5.0)],
            "axis_ratio": np.r_[rng.uniform(0.4, 1.0)],
            "pa_deg": np.r_[rng.uniform(0, 180)],
        }
        gal = Source(np.r_[cx], np.r_[cy], np.r_[flux], **shape)
        sci = sci + render_sources((STAMP, STAMP), [gal], fwhm_sci, cond)
        ref = ref + render_sources((STAMP, STAMP), [gal], fwhm_ref, cond)
        shift = rng.normal(0, 0.3, 2)
        moved = Source(
            np.r_[cx + shift[0]],
            np.r_[cy + shift[1]],
            np.r_[flux * rng.uniform(0.97, 1.03)],
            **shape,
        )
        model = model + render_sources(
            (STAMP, STAMP), [moved], fwhm_sci * rng.uniform(0.8, 1.2), cond
        )
    elif rng.random() < 0.6:
        # A star in both images, subtracted with a misalignment or a wrong PSF.
        flux = 10 ** rng.uniform(3.5, 5.5)
        star = render_sources(
            (STAMP, STAMP), [Source(np.r_[cx], np.r_[cy], np.r_[flux])], fwhm_sci, cond
        )
        shift = rng.normal(0, 0.8, 2)
        moved = Source(
            np.r_[cx + shift[0]], np.r_[cy + shift[1]], np.r_[flux * rng.uniform(0.9, 1.1)]
        )
        sci = sci + star
        ref = ref + render_sources(
            (STAMP, STAMP), [Source(np.r_[cx], np.r_[cy], np.r_[flux])], fwhm_ref, cond
        )
        model = model + render_sources(
            (STAMP, STAMP), [moved], fwhm_sci * rng.uniform(0.75, 1.25), cond
        )
    else:
        # Pure noise: a >= 5 sigma fluctuation at the centre of an empty difference.
        extra[int(cy), int(cx)] += rng.uniform(5, 7) * noise_sci
    return sci, ref, model, extra


def _observed_triplet(rng, sci, ref, model, extra, sky_sci, sky_ref, noise_sci) -> np.ndarray:
    """Science, deep reference and difference as observed (noise added), normalised."""
    from scipy import ndimage

    sci_img = (
        rng.poisson(sci + extra + sky_sci).astype(float) + rng.normal(0, 6, sci.shape) - sky_sci
    )
    ref_img = rng.poisson((ref + sky_ref) * 4).astype(float) / 4 - sky_ref  # a deep stack
    ref_noise = rng.normal(0, 0.3 * noise_sci, sci.shape)
    diff = sci_img - model + ref_noise
    if rng.random() < 0.4:
        # The reference had the sharper PSF, so the science was convolved to match it:
        # the difference's noise is smoothed (correlated), not white.
        diff = ndimage.gaussian_filter(sci_img - model, rng.uniform(0.5, 1.4)) + ref_noise
    return np.stack([normalise(sci_img), normalise(ref_img), normalise(diff)])


def real_bogus_examples(n: int, seed: int, families: tuple[str, ...] | None = None) -> dict:
    """Real/bogus triplets.

    Without ``families``, the simulator's standard optics with FWHM 2–4.5 px (what the
    production model trains on). With them, each triplet's PSF shape comes from one of the
    named camera families, drawn uniformly, and its FWHM range is scaled to the family's
    pixel scale (2–4.5 px at 1.1″/px: 1.1–2.5 px at 2″/px, 7–16 px at 0.3″/px).

    Differences come in both kinds a pipeline makes: white noise (the reference was
    convolved) and smoothed noise (the science was).

    Returns
    -------
    dict
        ``x`` (n, 3, 63, 63) normalised science, reference, difference stamps; ``y``
        (n,) class index into :data:`RB_CLASSES`; ``snr`` (n,) of the central source in
        the difference (NaN where there is none).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    xs = np.empty((n, 3, STAMP, STAMP), np.float32)
    y = rng.integers(0, len(RB_CLASSES), n)
    snrs = np.full(n, np.nan, np.float32)
    optics = [family(f) for f in families] if families else None
    cond, sampling = Conditions(), 1.0
    for i in range(n):
        if optics is not None:
            chosen = optics[int(rng.integers(len(optics)))]
            cond = Conditions(psf=chosen.psf)
            sampling = 1.1 / chosen.camera.get("pixel_scale", 1.1)
        fwhm_sci = rng.uniform(2.0, 4.5) * sampling
        fwhm_ref = rng.uniform(2.0 * sampling, fwhm_sci)
        sky_sci, sky_ref = rng.uniform(100, 1500), rng.uniform(400, 6000)
        sci, ref = _stamp_pair(rng, fwhm_sci, fwhm_ref, cond)
        noise_sci = np.sqrt(sky_sci + 36)
        cx, cy = 31 + rng.uniform(-1, 1), 31 + rng.uniform(-1, 1)
        cls = RB_CLASSES[y[i]]
        extra = np.zeros((STAMP, STAMP))
        # What an ideal PSF-matched reference subtracts: the field as the science sees it.
        model = sci.copy()
        if cls == "real":
            snr = rng.uniform(8, 100)
            sci, ref, model, extra = _real_source(
                rng, sci, ref, cx, cy, snr, (fwhm_sci, fwhm_ref), noise_sci, cond
            )
            snrs[i] = snr
        elif cls in ("cosmic_ray", "bad_pixel", "satellite_trail"):
            extra = _artefact(rng, cls, cx, cy, fwhm_sci, noise_sci)
        if cls == "bad_subtraction":
            sci, ref, model, extra = _bad_subtraction(
                rng, sci, ref, model, extra, cx, cy, (fwhm_sci, fwhm_ref), noise_sci, cond
            )
        xs[i] = _observed_triplet(rng, sci, ref, model, extra, sky_sci, sky_ref, noise_sci)
    return {"x": xs, "y": y.astype(np.int64), "snr": snrs}
