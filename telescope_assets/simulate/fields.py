"""A science frame and its reference seen by one camera family: subtraction's test bed.

Not the network simulator (no sites, nights, headers or calibration): two calibrated,
sky-subtracted images of the same stars, the science blurrier (or sharper) than the
reference, bright stars saturating, fakes of known S/N in the science. What
``tests/science/test_subtraction.py`` pins and ``bench/subtraction_families.py`` measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from telescope_assets.science.calibration import MASK_BITS
from telescope_assets.simulate.optics import family
from telescope_assets.simulate.render import Conditions, Source, render_sources

__all__ = ["FieldPair", "field_pair"]


@dataclass
class FieldPair:
    """Science and reference as ``(image, err, mask)``, their FWHMs, and what is in them."""

    science: tuple[np.ndarray, np.ndarray, np.ndarray]
    reference: tuple[np.ndarray, np.ndarray, np.ndarray]
    sci_fwhm: float
    ref_fwhm: float
    kernel_stars: list[tuple[float, float]]
    stars: Source
    fakes: Source


def field_pair(
    family_name: str,
    seed: int,
    shape: tuple[int, int] = (512, 512),
    seeing_ratio: float = 1.35,
    n_stars: int = 500,
    n_fakes: int = 20,
    fake_snr: float = 15.0,
    sky: float = 800.0,
    read_noise: float = 8.0,
    saturation: float = 60000.0,
    n_ref: int = 3,
) -> FieldPair:
    """Two images of one star field through camera family ``family_name``.

    Star fluxes follow N(>F) ∝ F^-0.75 from 1e3 e- (a few saturate); the reference has the
    family's median seeing × 0.9 and the noise of an ``n_ref``-frame stack, the science
    ``seeing_ratio`` times its FWHM and ``n_fakes`` point sources of background-limited
    difference S/N ``fake_snr`` (reference noise included). ``kernel_stars`` are the
    brightest stars clear of saturation, as the pipeline picks them.
    """
    optics = family(family_name)
    scale = optics.camera.get("pixel_scale", 1.1)
    seeing = optics.median_seeing_arcsec or 1.6
    ref_fwhm = float(np.hypot(0.9 * seeing / scale, optics.psf.optics_fwhm_px))
    sci_fwhm = seeing_ratio * ref_fwhm
    rng = np.random.default_rng(seed)
    ny, nx = shape
    flux = np.minimum(1e3 * rng.uniform(0, 1, n_stars) ** (-1 / 0.75), 1e7)
    stars = Source(rng.uniform(-5, nx + 5, n_stars), rng.uniform(-5, ny + 5, n_stars), flux)
    sigma = sci_fwhm / 2.355
    noise = np.sqrt(sky + read_noise**2) * np.sqrt(4 * np.pi) * sigma * np.sqrt(1 + 1 / n_ref)
    fakes = Source(
        rng.uniform(40, nx - 40, n_fakes),
        rng.uniform(40, ny - 40, n_fakes),
        np.full(n_fakes, fake_snr * noise),
    )

    def observe(fwhm, sources, depth):
        light = render_sources(shape, sources, fwhm, Conditions(psf=optics.psf))
        image = rng.poisson(light + sky).astype(float) + rng.normal(0, read_noise, shape)
        mask = np.where(image >= saturation, MASK_BITS["saturated"], 0).astype(np.uint8)
        err = np.sqrt(light + sky + read_noise**2) / np.sqrt(depth)
        return np.minimum(image, saturation) - sky, err, mask

    science = observe(sci_fwhm, [stars, fakes], 1)
    reference = observe(ref_fwhm, [stars], n_ref)
    return FieldPair(
        science,
        reference,
        sci_fwhm,
        ref_fwhm,
        _kernel_stars(stars, science[2] | reference[2], shape),
        stars,
        fakes,
    )


def _kernel_stars(stars: Source, mask: np.ndarray, shape, n: int = 60) -> list:
    """The ``n`` brightest stars 20 px from the edges with no flagged pixel within 3 px."""
    from scipy import ndimage

    near_bad = ndimage.maximum_filter(mask != 0, size=7)
    inside = (stars.x > 20) & (stars.x < shape[1] - 20) & (stars.y > 20) & (stars.y < shape[0] - 20)
    out = []
    for i in np.flatnonzero(inside)[np.argsort(-stars.flux[inside])]:
        if not near_bad[round(stars.y[i]), round(stars.x[i])]:
            out.append((float(stars.x[i]), float(stars.y[i])))
        if len(out) == n:
            break
    return out
