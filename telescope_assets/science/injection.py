"""Fake point sources drawn with a frame's own PSF (for injection–recovery on any optics).

The PSF is measured from the frame, not assumed: the median of unit-sum cutouts of its
bright isolated stars, each shifted so that its centroid falls on the central pixel. A
fake is that PSF moved to a sub-pixel position, scaled to a flux and given its own photon
noise, so it is blurred, sampled and winged exactly as the frame's stars are — whatever
camera took it, which is what a site's own real/bogus examples need.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["add_point_sources", "empirical_psf", "psf_noise_area"]


def empirical_psf(
    image: np.ndarray, mask: np.ndarray, xy: list[tuple[float, float]], half: int
) -> np.ndarray:
    """The frame's PSF on a ``(2 half + 1)²`` grid, unit sum, centred on the middle pixel.

    Each star's cutout is shifted so that its centroid falls on the middle pixel and
    scaled by the light of its core (the central ``half / 4`` px, at least 2); masked
    pixels (a cosmic ray in a wing) are left out of the median of the cutouts, not the
    whole star. A star with a masked pixel in its core is not used.

    Parameters
    ----------
    image : ndarray
        Background-subtracted image.
    mask : ndarray
        Non-zero where a pixel is not to be used.
    xy : list of (x, y)
        Centroids (0-based) of bright, unsaturated, isolated stars.
    half : int
        Half-size of the PSF grid in pixels (4–5 FWHM keeps the wings).

    Raises
    ------
    ValueError
        If fewer than 3 stars have a clean core and a cutout inside the image.
    """
    from scipy import ndimage

    ny, nx = image.shape
    size = 2 * half + 1
    yy, xx = np.mgrid[:size, :size] - half
    core = np.hypot(xx, yy) <= max(2.0, half / 4)
    stamps = []
    for x, y in xy:
        xi, yi = round(x), round(y)
        lo_y, hi_y, lo_x, hi_x = yi - half - 2, yi + half + 3, xi - half - 2, xi + half + 3
        if lo_y < 0 or lo_x < 0 or hi_y > ny or hi_x > nx:
            continue
        bad = mask[lo_y:hi_y, lo_x:hi_x] != 0
        cut = np.where(bad, 0.0, image[lo_y:hi_y, lo_x:hi_x].astype(np.float64))
        shift = (yi - y, xi - x)
        moved = ndimage.shift(cut, shift, order=3, mode="nearest")[2:-2, 2:-2]
        spoiled = ndimage.shift(bad.astype(float), shift, order=1)[2:-2, 2:-2] > 0.01
        if spoiled[core].any():
            continue
        light = moved[core].sum()
        if light > 0:
            stamps.append(np.where(spoiled, np.nan, moved / light))
    if len(stamps) < 3:
        raise ValueError(
            f"{len(stamps)} clean star cutouts of {size} px (3 needed) for the PSF: "
            "the frame has too few bright isolated unmasked stars"
        )
    with warnings.catch_warnings():
        # A pixel masked in every cutout has no value: it is set to 0 below.
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)
        median = np.nanmedian(stamps, axis=0)
    psf = np.clip(np.nan_to_num(median), 0, None)
    return psf / psf.sum()


def psf_noise_area(psf: np.ndarray) -> float:
    """The effective area ``1 / Σ psf²`` (px): optimal S/N = flux / (rms · √area)."""
    return float(1.0 / np.sum(psf**2))


def add_point_sources(
    sci: np.ndarray,
    err: np.ndarray,
    psf: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """``sci`` and ``err`` (electrons) with point sources of ``flux`` e- added at ``(x, y)``.

    Each source is the PSF shifted to its sub-pixel position, with Poisson noise of its
    own electrons; ``err`` grows by the same variance. Sources are clipped at the edges.
    Returns new arrays (the inputs are not changed).
    """
    from scipy import ndimage

    half = psf.shape[0] // 2
    model = np.zeros(sci.shape, np.float64)
    ny, nx = sci.shape
    for xs, ys, f in zip(np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(flux), strict=True):
        xi, yi = round(float(xs)), round(float(ys))
        stamp = np.clip(ndimage.shift(psf, (ys - yi, xs - xi), order=3, mode="constant"), 0, None)
        stamp *= f / max(stamp.sum(), 1e-12)
        y0, x0 = yi - half, xi - half
        sy = slice(max(y0, 0), min(y0 + psf.shape[0], ny))
        sx = slice(max(x0, 0), min(x0 + psf.shape[1], nx))
        model[sy, sx] += stamp[sy.start - y0 : sy.stop - y0, sx.start - x0 : sx.stop - x0]
    noisy = rng.poisson(model).astype(np.float64)
    return sci + noisy, np.sqrt(err.astype(np.float64) ** 2 + model)
