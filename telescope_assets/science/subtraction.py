"""Reference stacks and image subtraction: align, match the PSF, subtract, detect.

The method is Alard & Lupton's (1998, ApJ 503, 325): the convolution kernel is a sum of
Gaussians times polynomials (:data:`AL_BASIS`) plus a differential background, fitted by
weighted linear least squares on stamps around bright isolated stars. (A free pixel
kernel, Bramich's delta basis, came first; the smooth basis has 50 parameters instead of
up to 441, and a noisier reference cannot roughen it.) The image with the sharper PSF
is the one convolved, so the kernel never has to deconvolve; the kernel's sum is the
photometric scale between the two. The
difference is expressed in the science image's electrons, with its variance propagated
(``var_sci + K² ⊗ var_ref``, or the mirror when the science is convolved).

Detection in the difference uses a matched filter (a Gaussian of the science FWHM): each
pixel's flux estimate and its variance from the propagated error image, so the S/N map is
honest where the error image is. Positive sources only: a fading source is not an alert.

No maintained subtraction library installs here without a compiler toolchain of its own
(HOTPANTS is C, SFFT needs CuPy for speed); this module is small, and tested on
simulated truth (``telescope_assets_tests/science/test_subtraction.py``).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from telescope_assets.science.calibration import MASK_BITS
from telescope_assets.science.detection import smooth

__all__ = [
    "STAMP",
    "Subtraction",
    "align",
    "align_reproject",
    "cutouts",
    "detect_difference",
    "fit_kernel",
    "grow",
    "kernel_basis",
    "local_maxima",
    "on_trails",
    "pixel_map",
    "saturated_halos",
    "stack",
    "stamp_design",
    "subtract",
]

#: Side of the science / reference / difference cutouts (the ZTF/braai convention).
STAMP = 63
#: MASK bits of the difference: from the inputs (1 bad, 2 saturated, 4 cosmic ray,
#: 8 non-finite), plus 16 where the reference does not cover the science frame (or its
#: subtraction cannot be trusted there).
NO_REFERENCE = 16
#: The inputs' saturated bit.
SATURATED = MASK_BITS["saturated"]
#: A saturated star is masked this many FWHM (of the blurrier image) beyond the kernel's
#: reach around its saturated pixels: the wings next to a saturated core are non-linear in
#: a real CCD, and a core filled with sky in one image leaves, after convolution, a deficit
#: of a few per cent of a million electrons — hundreds of sigma — where the kernel weight
#: lands. Without it every saturated star gave 3–15 false 5σ detections (measured on
#: simulated frames of eight camera families, docs/transients.md).
SATURATION_GROW_FWHM = 1.5
#: ... and this many times the star's own saturated radius (:func:`saturated_halos`).
SATURATION_HALO = 3.0
#: Alignment error (pixels) the difference's variance allows for (see :func:`subtract`).
REGISTRATION_PX = 0.05
#: Largest kernel half-size (pixels): a (2·25 + 1)² kernel on stamps of 2.5 FWHM.
MAX_KERNEL_HALF = 25
#: A fitted kernel is trusted from this many stamps on, and only when its sum (the
#: photometric scale: the caller has put both images on one zero point) is within
#: MAX_SCALE_ERROR of 1; else the Gaussian that matches the two FWHMs is used. Measured
#: 2026-12-07: a 0.3″/px frame with 4 kernel stars fitted a kernel of sum 0.52 that moved
#: every source by 1.4 px and halved its S/N (8 of 14 fakes lost on that frame).
MIN_FIT_STAMPS = 5
MAX_SCALE_ERROR = 0.2


#: Spline order of the image's resampling (:func:`align`). Bilinear interpolation (1)
#: smooths a pixel by an amount that depends on its fractional offset, which changes
#: across a frame that is rotated or distorted against the other, so no single kernel
#: matches it: on 400² frames with 300 stars, a reference of three dithered frames left
#: star cores up to 6–7σ in the difference and 1–5 false detections per frame; cubic
#: splines, 3.2–3.9σ and 0–1 (measured 2026-12-07, three PSF families).
IMAGE_ORDER = 3


#: Spacing (pixels) of the grid on which :func:`pixel_map` evaluates the WCS exactly; a
#: bicubic spline fills in between. Distortions of a camera's WCS are smooth on this
#: scale: the map is within 1e-4 px of the exact one (tested), at a 1000th of the cost.
MAP_STEP = 32


def pixel_map(wcs_from, wcs_to, shape, step: int = MAP_STEP) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel of the ``wcs_to`` grid (``shape``) falls on the ``wcs_from`` grid.

    Returns ``(y, x)``: 0-based pixel coordinates of the source image, one per target
    pixel. The WCS is evaluated exactly on a grid every ``step`` pixels (and on the last
    row and column) and interpolated by bicubic splines: a full-frame ``all_world2pix``
    (SIP included) costs seconds on a 2048² frame; this costs a tenth of one.
    """
    from scipy.interpolate import RectBivariateSpline

    ny, nx = shape
    gy = np.unique(np.r_[np.arange(0, ny, step), ny - 1]).astype(float)
    gx = np.unique(np.r_[np.arange(0, nx, step), nx - 1]).astype(float)
    xx, yy = np.meshgrid(gx, gy)
    ra, dec = wcs_to.all_pix2world(xx.ravel(), yy.ravel(), 0)
    sx, sy = wcs_from.all_world2pix(ra, dec, 0)
    k = min(3, len(gy) - 1, len(gx) - 1)
    out = []
    for values in (sy, sx):
        spline = RectBivariateSpline(gy, gx, values.reshape(xx.shape), kx=k, ky=k)
        out.append(spline(np.arange(ny, dtype=float), np.arange(nx, dtype=float)))
    return out[0], out[1]


def _resample(image, ys, xs, order: int) -> np.ndarray:
    """Sample ``image`` at (ys, xs); NaN outside it.

    As ``reproject`` does: a pixel's value holds over the whole pixel, so coordinates in
    the outer half of an edge pixel are inside (the array is padded by one edge pixel),
    and anything beyond -0.5 or n - 0.5 is outside.
    """
    from scipy import ndimage

    padded = np.pad(image, 1, mode="edge")
    values = ndimage.map_coordinates(
        padded, [ys + 1, xs + 1], order=order, mode="constant", cval=np.nan
    )
    ny, nx = image.shape
    outside = (ys < -0.5) | (ys > ny - 0.5) | (xs < -0.5) | (xs > nx - 0.5)
    values[outside] = np.nan
    return values


def align(image, err, mask, wcs_from, wcs_to, shape):
    """Resample an image, its error and mask onto another WCS grid.

    Returns ``(image, err, mask)`` on the target grid; pixels the input does not cover
    get ``NO_REFERENCE`` in the mask and zero data. The image is interpolated by cubic
    spline (:data:`IMAGE_ORDER`), its masked pixels first set to its sky so that a cosmic
    ray or a bad column does not spread; the variance is resampled bilinearly, which
    slightly overstates it (correlated noise is not tracked); the mask by nearest
    neighbour. One :func:`pixel_map` serves all three.
    """
    from concurrent.futures import ThreadPoolExecutor

    ys, xs = pixel_map(wcs_from, wcs_to, shape)
    bad = (mask != 0) | ~np.isfinite(image)
    planes = [
        (np.where(bad, _sky(image, mask), image), IMAGE_ORDER),
        (np.nan_to_num(err**2, nan=0.0), 1),
        (mask.astype(float), 0),
    ]
    # Three resamplings on threads (ndimage lets go of the GIL): a dask worker has one
    # thread, the machine more cores.
    with ThreadPoolExecutor(min(3, len(os.sched_getaffinity(0)))) as pool:
        data, var, bad = pool.map(lambda plane: _resample(plane[0], ys, xs, plane[1]), planes)
    return _aligned(data, var, bad, ~np.isfinite(data))


def align_reproject(image, err, mask, wcs_from, wcs_to, shape):
    """What :func:`align` computes, with ``reproject`` (the exact WCS at every pixel).

    Kept to test :func:`align` against.
    """
    from reproject import reproject_interp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bad = (mask != 0) | ~np.isfinite(image)
        data, footprint = reproject_interp(
            (np.where(bad, _sky(image, mask), image), wcs_from),
            wcs_to,
            shape_out=shape,
            order="bicubic",
        )
        var, _ = reproject_interp(
            (np.nan_to_num(err**2, nan=0.0), wcs_from), wcs_to, shape_out=shape, order="bilinear"
        )
        bad, _ = reproject_interp(
            (mask.astype(float), wcs_from), wcs_to, shape_out=shape, order="nearest-neighbor"
        )
    return _aligned(data, var, bad, ~(footprint > 0) | ~np.isfinite(data))


def _aligned(data, var, bad, outside):
    """Image, error and mask from the resampled image, variance and mask.

    Zero data and ``NO_REFERENCE`` where the input does not cover the target grid.
    """
    out_mask = np.where(np.isfinite(bad), bad, 0).astype(np.uint8)
    out_mask[outside] |= NO_REFERENCE
    return (
        np.where(outside, 0.0, data),
        np.sqrt(np.where(outside, 0.0, np.clip(var, 0, None))),
        out_mask,
    )


def stack(images, errs, masks, scales):
    """Weighted mean of aligned frames on one photometric system, one weight per frame.

    ``scales`` multiply each frame into the common system (e.g. ``10**(0.4*(zp0 - zp))``).
    A frame's weight is the inverse of its sky variance (the median of its scaled
    variance over its good pixels), the same at every pixel it covers: weights from each
    pixel's own variance would count the sources' photons, so a bright star's core would
    come from other frames than a faint galaxy's, the stack's PSF would change with
    brightness, and a kernel fitted on bright stars would not match the galaxies. The
    error is propagated. A pixel masked in every frame keeps the OR of the masks;
    otherwise it is clean.
    """
    num = np.zeros(images[0].shape)
    wsum = np.zeros(images[0].shape)
    var = np.zeros(images[0].shape)
    any_mask = np.zeros(images[0].shape, np.uint8)
    for image, err, mask, scale in zip(images, errs, masks, scales, strict=True):
        good = (mask == 0) & (err > 0) & np.isfinite(err)
        frame_weight = 1.0 / float(np.median((scale * err[good]) ** 2)) if good.any() else 0.0
        w = np.where(good, frame_weight, 0.0)
        num += w * scale * np.where(good, image, 0.0)
        var += w**2 * np.where(good, (scale * err) ** 2, 0.0)
        wsum += w
        any_mask |= mask.astype(np.uint8)
    covered = wsum > 0
    out = np.where(covered, num / np.where(covered, wsum, 1.0), 0.0)
    err = np.where(covered, np.sqrt(var) / np.where(covered, wsum, 1.0), 0.0)
    mask = np.where(covered, 0, np.where(any_mask == 0, NO_REFERENCE, any_mask)).astype(np.uint8)
    return out, err, mask


#: Pixels the sky level is measured on (every n-th good pixel beyond this): its median
#: is then known to 0.3 % of the pixel noise, at a sixteenth of the cost on 2048².
SKY_SAMPLE = 250_000


def _sky(image, mask) -> float:
    from astropy.stats import sigma_clipped_stats

    values = image[(mask == 0) & np.isfinite(image)]
    values = values[:: max(1, values.size // SKY_SAMPLE)]
    return float(sigma_clipped_stats(values, sigma=3.0, maxiters=5)[1]) if values.size else 0.0


#: Alard & Lupton's kernel basis: Gaussians of these widths (px) times polynomials in
#: (x, y) up to these degrees — smooth kernels, which a point source keeps its shape under.
AL_BASIS = ((0.7, 6), (1.5, 4), (3.0, 2))


def kernel_basis(kernel_half: int) -> np.ndarray:
    """A delta function and the Alard–Lupton basis on a (2k+1)² grid.

    Returns (n_pixels, n_basis) with unit-norm columns.
    """
    k = kernel_half
    dy, dx = np.mgrid[-k : k + 1, -k : k + 1].astype(float)
    # A delta function first: images of equal PSF need the identity exactly.
    columns = [((dx == 0) & (dy == 0)).ravel().astype(float)]
    for sigma, degree in AL_BASIS:
        g = np.exp(-0.5 * (dx**2 + dy**2) / sigma**2)
        for a in range(degree + 1):
            for b in range(degree + 1 - a):
                f = (g * dx**a * dy**b).ravel()
                columns.append(f / np.linalg.norm(f))
    return np.column_stack(columns)


def fit_kernel(target, source, target_var, stars_xy, kernel_half: int, stamp_half: int = 10):
    """Fit ``target ≈ K ⊗ source + b`` on stamps around stars (Alard–Lupton basis).

    ``K`` is a combination of :func:`kernel_basis` (50 functions); pixels whose
    ``target_var`` is infinite do not count. Returns ``(kernel, background,
    chi2_per_dof, n_stamps)``. Stamps whose fit is poor (variable stars, cosmic rays,
    blends) are rejected and the fit repeated once.
    """
    k = kernel_half
    ny, nx = target.shape
    basis = kernel_basis(k)
    kernels = basis.T.reshape(-1, 2 * k + 1, 2 * k + 1)
    blocks, rhs, weights, owner = [], [], [], []
    h = stamp_half
    for i, (x, y) in enumerate(stars_xy):
        xi, yi = round(x), round(y)
        if not (h + k <= yi < ny - h - k and h + k <= xi < nx - h - k):
            continue
        sl_y, sl_x = slice(yi - h, yi + h + 1), slice(xi - h, xi + h + 1)
        t = target[sl_y, sl_x].ravel()
        v = target_var[sl_y, sl_x].ravel()
        blocks.append(np.column_stack([stamp_design(source, yi, xi, h, kernels), np.ones_like(t)]))
        rhs.append(t)
        weights.append(1.0 / np.clip(v, 1e-6, None))  # 0 where the variance is inf
        owner.append(np.full(t.size, i))
    if len(blocks) < 3:
        raise ValueError(f"only {len(blocks)} usable kernel stamps (need 3)")
    a, b, w, who = (np.concatenate(p) for p in (blocks, rhs, weights, owner))
    keep = np.ones(len(b), bool)
    for _ in range(2):
        sw = np.sqrt(w[keep])
        coef, *_ = np.linalg.lstsq(a[keep] * sw[:, None], b[keep] * sw, rcond=None)
        resid2 = (b - a @ coef) ** 2 * w
        per_stamp = pd.Series(resid2).groupby(who).mean()
        cut = max(3.0 * float(np.median(per_stamp)), 1.5)
        good_stamps = per_stamp.index[per_stamp <= cut]
        new_keep = np.isin(who, good_stamps)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    kernel = (basis @ coef[:-1]).reshape(2 * k + 1, 2 * k + 1)
    dof = max(int(keep.sum()) - len(coef), 1)
    chi2 = float(resid2[keep].sum() / dof)
    return kernel, float(coef[-1]), chi2, len(np.unique(who[keep]))


def stamp_design(source: np.ndarray, yi: int, xi: int, h: int, kernels: np.ndarray) -> np.ndarray:
    """The fit's design matrix on one stamp: ``source`` convolved by each basis kernel.

    Column ``j`` holds ``(source ⊗ kernels[j])`` on the ``(2h + 1)²`` pixels around
    ``(yi, xi)``. One batched FFT convolution of the stamp's neighbourhood, instead of a
    matrix of every shifted copy of the stamp ((2k + 1)² columns) times the basis: the
    same numbers (to 1e-12, tested), but a defocused 30 px frame's 151² stamps with a
    51² kernel no longer build a 475 MB matrix per stamp (50 s per frame before).
    """
    from scipy.signal import fftconvolve

    k = kernels.shape[-1] // 2
    region = source[yi - h - k : yi + h + k + 1, xi - h - k : xi + h + k + 1]
    conv = fftconvolve(region[None], kernels, mode="valid", axes=(1, 2))
    return conv.reshape(len(kernels), -1).T


@dataclass
class Subtraction:
    """A difference image in science electrons and what made it."""

    diff: np.ndarray
    err: np.ndarray
    mask: np.ndarray
    convolved: np.ndarray  # the PSF-matched template (reference, or science when swapped)
    kernel: np.ndarray
    scale: float  # reference → science photometric scale
    convolved_image: str  # "reference" or "science"
    chi2: float
    n_stamps: int
    kernel_kind: str = "fitted"  # or "gaussian": too few stamps, or an implausible scale


def _matched_difference(s, r, s_var, r_var, kernel, bkg, swap: bool):
    """``(difference, variance, reference → science scale, PSF-matched template)``.

    The sharper image is convolved: the reference (``swap`` false), or the science, in
    which case everything is divided by the kernel's sum to stay in science electrons.
    """
    if not swap:
        conv = _convolve(r, kernel) + bkg
        var = s_var + _convolve(r_var, kernel**2)
        return s - conv, var, float(kernel.sum()), conv
    ksum = float(kernel.sum())
    conv = (_convolve(s, kernel) + bkg) / ksum
    var = (_convolve(s_var, kernel**2) + r_var) / ksum**2
    return conv - r / ksum, var, 1.0 / ksum, r / ksum


def _kernel(target, source, fit_var, stars_xy, k, h, sigma_k, expected_scale, swap):
    """The fitted kernel, or the Gaussian one when the fit cannot be trusted (subtract)."""
    try:
        kernel, bkg, chi2, n = fit_kernel(target, source, fit_var, stars_xy, k, h)
    except ValueError:  # fewer than 3 usable stamps
        if expected_scale is None:
            raise
        kernel, bkg, chi2, n = np.ones((1, 1)), 0.0, float("nan"), 0
    if expected_scale is None:
        return kernel, bkg, chi2, n, "fitted"
    # The kernel's sum is the source → target flux ratio.
    ratio = 1.0 / expected_scale if swap else expected_scale
    if n >= MIN_FIT_STAMPS and abs(kernel.sum() / ratio - 1.0) <= MAX_SCALE_ERROR:
        return kernel, bkg, chi2, n, "fitted"
    return gaussian_kernel(sigma_k, k) * ratio, 0.0, chi2, n, "gaussian"


def local_maxima(values: np.ndarray, ys: np.ndarray, xs: np.ndarray, size: int) -> np.ndarray:
    """Whether each pixel ``(ys, xs)`` is the maximum of its ``size``² box of ``values``.

    ``values[ys, xs] == ndimage.maximum_filter(values, size)[ys, xs]`` (edges reflected
    as there; tested), looked up at these pixels only: a difference image has a few
    thousand pixels above threshold among millions, and the full filter cost 0.08 s.
    """
    ys, xs = np.asarray(ys, int), np.asarray(xs, int)
    if not len(ys):
        return np.zeros(0, bool)
    half = size // 2
    ny, nx = values.shape
    if half > min(ny, nx):
        raise ValueError(f"a {size}² box is larger than the image {values.shape}")
    offsets = np.arange(size) - half
    # scipy's "reflect" mode (d c b a | a b c d), on the box's indices: no padded copy.
    rows = _reflect(ys[:, None] + offsets, ny)
    cols = _reflect(xs[:, None] + offsets, nx)
    boxes = values[rows[:, :, None], cols[:, None, :]]
    return values[ys, xs] == boxes.reshape(len(ys), -1).max(axis=1)


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Indices beyond ``[0, n)`` mirrored about the edge (-1 → 0, n → n - 1)."""
    return np.where(index < 0, -index - 1, np.where(index >= n, 2 * n - index - 1, index))


def gaussian_kernel(sigma: float, half: int) -> np.ndarray:
    """A unit-sum circular Gaussian on ``(2 half + 1)²`` pixels (a delta for σ < 0.1 px)."""
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    if sigma < 0.1:
        return ((xx == 0) & (yy == 0)).astype(np.float64)
    kernel = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def grow(bad: np.ndarray, half: int) -> np.ndarray:
    """``bad`` dilated by a (2·half + 1)² box: a maximum filter, one axis at a time.

    The same pixels as ``ndimage.binary_dilation`` with a box (tested), ten times faster.
    """
    from scipy import ndimage

    return ndimage.maximum_filter(np.asarray(bad, bool), size=2 * half + 1)


def saturated_halos(saturated: np.ndarray, margin: float) -> np.ndarray:
    """Disks around saturated stars, growing with each star's saturated radius.

    Each disk reaches ``margin`` plus ``1 + SATURATION_HALO`` times the star's saturated
    radius (√(area/π)) from the centre of its saturated pixels.

    A star's wings scale with its flux, and so does its saturated core: the brighter the
    star, the farther out a seeing change leaves residuals that the kernel cannot absorb.
    """
    from scipy import ndimage

    out = saturated.copy()
    labels, _ = ndimage.label(saturated)
    ny, nx = saturated.shape
    # Each star's area and centre from its own bounding box (a few pixels), not from
    # passes over the whole frame per statistic (0.24 s on 2048²).
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        ys, xs = np.nonzero(labels[box] == label)
        a = len(ys)
        cy, cx = box[0].start + ys.mean(), box[1].start + xs.mean()
        r_sat = np.sqrt(a / np.pi)
        radius = r_sat + margin + SATURATION_HALO * r_sat
        y0, y1 = max(int(cy - radius), 0), min(int(cy + radius) + 2, ny)
        x0, x1 = max(int(cx - radius), 0), min(int(cx + radius) + 2, nx)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        out[y0:y1, x0:x1] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return out


def _untrusted(kernel, conv_bad, other_bad, mask, halo_margin: float) -> np.ndarray:
    """Pixels of the difference that cannot be trusted.

    A bad pixel of the convolved image spoils the pixels its kernel weight reaches
    (> 2 %); a bad pixel of the other image spoils only itself; a saturated star (in
    either ``mask``) spoils a disk around it (:func:`saturated_halos`).
    """
    weight = np.abs(kernel) / np.abs(kernel).sum()
    reach = _convolve(conv_bad.astype(float), weight)
    saturated = (mask & SATURATED) != 0
    return other_bad | conv_bad | (reach > 0.02) | saturated_halos(saturated, halo_margin)


def _convolve(image, kernel):
    """``image ⊗ kernel`` (same shape) by FFT, on every core (a dask worker has one thread).

    In single precision, as the images are stored: half the time of a double-precision
    FFT (0.06 s instead of 0.12 s on 2048²), with errors of a few hundredths of an
    electron among stars of 10⁶ e⁻: a thousandth of the sky's noise (tested).
    """
    from scipy.fft import set_workers
    from scipy.signal import fftconvolve

    with set_workers(len(os.sched_getaffinity(0))):
        out = fftconvolve(
            np.asarray(image, np.float32), np.asarray(kernel, np.float32), mode="same"
        )
    return out.astype(np.float64)


def subtract(
    sci,
    sci_err,
    sci_mask,
    ref,
    ref_err,
    ref_mask,
    sci_fwhm: float,
    ref_fwhm: float,
    stars_xy,
    expected_scale: float | None = None,
) -> Subtraction:
    """PSF-matched, scaled difference ``science − K ⊗ reference`` on the science grid.

    ``ref`` must already be aligned to the science grid (:func:`align`). ``stars_xy``
    are bright isolated stars (science pixels) for the kernel fit. ``expected_scale``:
    the reference → science flux ratio the caller knows (1 when it has put both on one
    zero point); a fit from fewer than :data:`MIN_FIT_STAMPS` stamps, or whose scale is
    more than :data:`MAX_SCALE_ERROR` from it, is replaced by the Gaussian that matches
    the two FWHMs at that scale (``kernel_kind`` says which).
    """
    # Each image's own bad pixels are filled with its (subtracted) sky level.
    sci_bad = (sci_mask != 0) | ~np.isfinite(sci)
    ref_bad = (ref_mask != 0) | ~np.isfinite(ref)
    s = np.where(sci_bad, 0.0, sci - _sky(sci, sci_mask))
    r = np.where(ref_bad, 0.0, ref - _sky(ref, ref_mask))
    s_var = np.where(sci_bad, 0.0, np.nan_to_num(sci_err) ** 2)
    r_var = np.where(ref_bad, 0.0, np.nan_to_num(ref_err) ** 2)
    sigma_k = np.sqrt(abs(sci_fwhm**2 - ref_fwhm**2)) / 2.355
    # The kernel reaches 3 FWHM of the blurrier image (and 3σ of the Gaussian that would
    # match the two): where seeing scales a Moffat, the science's wings are not the
    # reference's convolved with a compact kernel (measured: a 10 px cap left 6–10 false
    # detections per 512² frame around bright stars of β = 2 and 0.3″/px cameras, 0–1
    # with this). Capped at MAX_KERNEL_HALF.
    fwhm = max(sci_fwhm, ref_fwhm)
    k = int(np.clip(max(np.ceil(3 * sigma_k + 2), np.ceil(3 * fwhm)), 4, MAX_KERNEL_HALF))
    swap = ref_fwhm > sci_fwhm  # convolve the sharper image
    conv_bad, other_bad = (sci_bad, ref_bad) if swap else (ref_bad, sci_bad)
    # The fit ignores target pixels that are bad or that a bad source pixel reaches.
    unusable = other_bad | grow(conv_bad, k)
    fit_var = np.where(unusable, np.inf, s_var + r_var)
    # Stamps reach 2.5 FWHM: a wide PSF's wings are what a too-small stamp leaves unfitted.
    h = int(max(10, np.ceil(2.5 * fwhm)))
    target, source = (r, s) if swap else (s, r)
    kernel, bkg, chi2, n, kind = _kernel(
        target, source, fit_var, stars_xy, k, h, sigma_k, expected_scale, swap
    )
    diff, var, scale, template = _matched_difference(s, r, s_var, r_var, kernel, bkg, swap)
    mask = (sci_mask | ref_mask).astype(np.uint8)
    spread = _untrusted(kernel, conv_bad, other_bad, mask, k + SATURATION_GROW_FWHM * fwhm)
    mask[spread & (mask == 0)] |= NO_REFERENCE
    # Registration noise (Zackay, Ofek & Gal-Yam 2016, eq. 30): an alignment error of
    # REGISTRATION_PX leaves a residual of the template's gradient times that error, which
    # photon noise does not describe. It matters where the gradient is steep: the cores of
    # bright stars, above all on undersampled cameras.
    gy, gx = np.gradient(template)
    var = var + REGISTRATION_PX**2 * (gx**2 + gy**2)
    err = np.sqrt(np.clip(var, 0, None))
    # The kernel's background term is fitted near stars; the sky far from them sets the
    # difference's zero (a sigma-clipped median of the good pixels).
    diff = diff - _sky(diff, spread.astype(np.uint8))
    diff = np.where(spread, 0.0, diff)
    return Subtraction(
        diff=diff,
        err=np.where(spread, np.inf, err),
        mask=mask,
        convolved=template,
        kernel=kernel,
        scale=scale,
        convolved_image="science" if swap else "reference",
        chi2=chi2,
        n_stamps=n,
        kernel_kind=kind,
    )


def detect_difference(
    sub: Subtraction, fwhm_px: float, threshold: float = 5.0, edge: int = 8
) -> pd.DataFrame:
    """Positive point sources at ≥ ``threshold`` σ in the difference image.

    Returns one row per detection: ``x``, ``y`` (0-based science pixels), ``flux`` and
    ``flux_err`` (matched-filter estimate, electrons), ``snr``, ``flux_ap``,
    ``fluxerr_ap`` (aperture of radius 2 FWHM), ``n_masked`` pixels within 2 FWHM.
    """
    sigma = fwhm_px / 2.355
    half = int(np.ceil(3 * sigma))
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    g = np.exp(-0.5 * (xx**2 + yy**2) / sigma**2)
    g /= g.sum()
    norm = float((g**2).sum())
    finite = np.isfinite(sub.err)
    var = np.where(finite, sub.err**2, 0.0)
    # The matched filter is a Gaussian: separable, two 1-D passes instead of an FFT.
    flux = smooth(sub.diff, g) / norm
    flux_var = smooth(var, g**2) / norm  # smooth() normalises g² to unit sum
    blocked = grow(~finite, 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.where(blocked | (flux_var <= 0), 0.0, flux / np.sqrt(flux_var))
    snr[:edge], snr[-edge:], snr[:, :edge], snr[:, -edge:] = 0, 0, 0, 0
    # Convolution and resampling correlate the noise, which the per-pixel error does not
    # carry (convolving the science raises the filtered noise; bilinear resampling of the
    # reference lowers the pixel noise below its propagated variance): renormalise the
    # S/N map to its measured robust scatter, which is what a 5σ threshold must mean.
    valid = snr != 0
    if valid.sum() > 100:
        values = snr[valid]
        scatter = 1.4826 * float(np.median(np.abs(values - np.median(values))))
        excess = float(np.clip(scatter, 0.5, 3.0))
        snr /= excess
        flux_var *= excess**2
    size = max(3, round(fwhm_px * 1.5) | 1)
    peaks = np.zeros(snr.shape, bool)
    ys, xs = np.nonzero(snr >= threshold)
    keep = local_maxima(snr, ys, xs, size)
    peaks[ys[keep], xs[keep]] = True
    # (Only onto pixels where the S/N is defined: not into a mask's margin.)
    usable_flux = np.where(snr != 0, flux, -np.inf)
    ys, xs = _flux_peaks(usable_flux, *np.nonzero(peaks), reach=max(1, round(fwhm_px / 2)))
    rows = pd.DataFrame(
        {
            "x": xs + _vertex(flux, ys, xs, 0, 1),
            "y": ys + _vertex(flux, ys, xs, 1, 0),
            "flux": flux[ys, xs],
            "flux_err": np.sqrt(flux_var[ys, xs]),
            "snr": snr[ys, xs],
        }
    )
    if not len(rows):
        return rows.assign(flux_ap=[], fluxerr_ap=[], n_masked=[])
    from photutils.aperture import CircularAperture, aperture_photometry

    radius = 2.0 * fwhm_px
    apertures = CircularAperture(rows[["x", "y"]].to_numpy(), r=radius)
    err = np.where(finite, sub.err, 0.0)
    phot = aperture_photometry(sub.diff, apertures, error=err, mask=~finite)
    rows["flux_ap"] = np.asarray(phot["aperture_sum"], float)
    rows["fluxerr_ap"] = np.asarray(phot["aperture_sum_err"], float)
    masked = aperture_photometry((sub.mask != 0).astype(float), apertures)
    rows["n_masked"] = np.asarray(masked["aperture_sum"], float).round().astype(int)
    return rows.sort_values("snr", ascending=False, ignore_index=True)


def on_trails(
    x, y, min_points: int = 12, width: float = 2.0, max_trails: int = 3, max_seeds: int = 150
) -> np.ndarray:
    """Which detections lie on a straight trail (a satellite, an aircraft, a meteor).

    A trail breaks into a string of detections along a line. Lines through pairs of the
    ``max_seeds`` first detections (pass them brightest first) are tried; the line
    holding the most detections within ``width`` pixels is a trail when it holds at
    least ``min_points``, its detections are set aside, and the search repeats (up to
    ``max_trails`` lines). Among a few hundred detections on a frame, chance alignments
    reach about six; a trail gives dozens.

    Returns
    -------
    numpy.ndarray of bool
        True for detections on a trail.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    flagged = np.zeros(len(x), bool)
    for _ in range(max_trails):
        free = np.flatnonzero(~flagged)
        if free.size < min_points:
            break
        seeds = free[:max_seeds]
        i, j = np.triu_indices(seeds.size, k=1)
        a, b = seeds[i], seeds[j]
        dx, dy = x[b] - x[a], y[b] - y[a]
        length = np.hypot(dx, dy)
        keep = length > 10 * width
        a, dx, dy, length = a[keep], dx[keep], dy[keep], length[keep]
        if a.size == 0:
            break
        px, py = x[free][None, :] - x[a][:, None], y[free][None, :] - y[a][:, None]
        dist = np.abs(dx[:, None] * py - dy[:, None] * px) / length[:, None]
        counts = (dist < width).sum(axis=1)
        best = int(np.argmax(counts))
        if counts[best] < min_points:
            break
        flagged[free[dist[best] < width]] = True
    return flagged


def _flux_peaks(flux, ys, xs, reach: int):
    """Each S/N peak moved to the brightest matched-filter flux within ``reach`` pixels.

    The S/N map's peak is pulled off the source where the variance changes steeply (the
    registration term beside a star); the flux map's is not.
    """
    ny, nx = flux.shape
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1].reshape(2, -1)
    yy = np.clip(ys[:, None] + dy, 0, ny - 1)
    xx = np.clip(xs[:, None] + dx, 0, nx - 1)
    best = np.argmax(flux[yy, xx], axis=1) if len(ys) else np.zeros(0, int)
    rows = np.arange(len(ys))
    moved = np.unique(np.column_stack([yy[rows, best], xx[rows, best]]), axis=0)
    return moved[:, 0], moved[:, 1]


def _vertex(image, ys, xs, dy, dx) -> np.ndarray:
    """Sub-pixel offset of a peak along one axis: the vertex of a parabola through ln(flux)."""
    ny, nx = image.shape
    lo = image[np.clip(ys - dy, 0, ny - 1), np.clip(xs - dx, 0, nx - 1)]
    hi = image[np.clip(ys + dy, 0, ny - 1), np.clip(xs + dx, 0, nx - 1)]
    mid = image[ys, xs]
    with np.errstate(divide="ignore", invalid="ignore"):
        a, b, c = (np.log(np.clip(v, 1e-12, None)) for v in (lo, mid, hi))
        off = 0.5 * (a - c) / (a - 2 * b + c)
    return np.where(np.isfinite(off), np.clip(off, -0.5, 0.5), 0.0)


def cutouts(images, x: float, y: float, side: int = STAMP) -> np.ndarray:
    """``side``×``side`` cutouts of several images centred on (x, y), zero-padded at edges."""
    half = side // 2
    xi, yi = round(x), round(y)
    out = np.zeros((len(images), side, side), np.float32)
    for i, image in enumerate(images):
        ny, nx = image.shape
        y0, y1 = max(yi - half, 0), min(yi + half + 1, ny)
        x0, x1 = max(xi - half, 0), min(xi + half + 1, nx)
        patch = np.nan_to_num(image[y0:y1, x0:x1], nan=0.0, posinf=0.0, neginf=0.0)
        out[i, y0 - (yi - half) : y1 - (yi - half), x0 - (xi - half) : x1 - (xi - half)] = patch
    return out
