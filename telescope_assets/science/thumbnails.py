"""Normalised image thumbnails: what the learned models see of a frame or a cutout."""

import functools
import os

import numpy as np

__all__ = [
    "ANOMALY_SIDE",
    "REGION",
    "THUMB",
    "anomaly_representation",
    "frame_thumbnail",
    "line_sinogram",
    "normalise",
    "normalise_stack",
    "psf_stack",
]

THUMB = 64
#: Frame region the thumbnail is made from (pixels, centred).
REGION = 256


def normalise(image: np.ndarray) -> np.ndarray:
    """Sky-subtract, scale by the robust noise and compress with asinh (float32)."""
    finite = np.isfinite(image)
    values = image[finite] if finite.any() else np.zeros(1)
    sky = np.median(values)
    noise = 1.4826 * np.median(np.abs(values - sky)) + 1e-6
    out = np.arcsinh(np.where(finite, image - sky, 0.0) / (3 * noise))
    return out.astype(np.float32)


def normalise_stack(images: np.ndarray) -> np.ndarray:
    """:func:`normalise` of every image of ``images`` (any leading shape), at once.

    Gives what ``normalise`` gives image by image, exactly, in a fraction of the time:
    the medians of all images with every pixel finite are taken in whole-array calls,
    split over the cores this process may use (numpy's selection releases the GIL); the
    others go through ``normalise`` one by one. Two medians per image are most of the
    cost of scoring a candidate (bench/inference.py).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> stamps = rng.normal(100.0, 5.0, (4, 3, 9, 9))
    >>> stamps[1, 2, 4, 4] = np.nan
    >>> one_by_one = np.stack([[normalise(c) for c in t] for t in stamps])
    >>> bool(np.array_equal(normalise_stack(stamps), one_by_one))
    True
    """
    images = np.asarray(images)
    if images.ndim < 2:
        raise ValueError(f"images must be at least 2-D, got shape {images.shape}")
    flat = images.reshape(-1, images.shape[-2] * images.shape[-1])
    out = np.empty(flat.shape, np.float32)
    finite = np.isfinite(flat).all(axis=1)
    rows = np.flatnonzero(finite)
    cores = len(os.sched_getaffinity(0))
    if cores > 1 and len(rows) >= _THREADED_FROM:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(cores) as pool:
            list(pool.map(lambda r: _normalise_rows(flat, out, r), np.array_split(rows, cores)))
    elif len(rows):
        _normalise_rows(flat, out, rows)
    for i in np.flatnonzero(~finite):
        out[i] = normalise(flat[i]).ravel()
    return out.reshape(images.shape)


#: Images from which :func:`normalise_stack` spreads its work over threads.
_THREADED_FROM = 256


def _normalise_rows(flat: np.ndarray, out: np.ndarray, rows: np.ndarray) -> None:
    """``normalise`` of the all-finite images ``flat[rows]``, written to ``out[rows]``."""
    values = flat[rows]
    sky = np.median(values, axis=1, keepdims=True)
    noise = 1.4826 * np.median(np.abs(values - sky), axis=1, keepdims=True) + 1e-6
    out[rows] = np.arcsinh((values - sky) / (3 * noise))


def frame_thumbnail(sci: np.ndarray) -> np.ndarray:
    """Two-channel 64×64 thumbnail of a calibrated frame (electrons).

    Channel 0 is the central 256×256 region binned 4×4 (trails, columns, clouds);
    channel 1 is the central 64×64 pixels at full resolution (the PSF's shape).
    """
    ny, nx = sci.shape
    if ny < REGION or nx < REGION:
        raise ValueError(f"frame {sci.shape} is smaller than the {REGION}² thumbnail region")
    y0, x0 = (ny - REGION) // 2, (nx - REGION) // 2
    region = np.nan_to_num(sci[y0 : y0 + REGION, x0 : x0 + REGION].astype(np.float64))
    b = REGION // THUMB
    binned = region.reshape(THUMB, b, THUMB, b).mean(axis=(1, 3))
    c = (REGION - THUMB) // 2
    core = region[c : c + THUMB, c : c + THUMB]
    return np.stack([normalise(binned), normalise(core)])


#: Side of the anomaly representation's two channels (PSF stack, line-median sinogram).
ANOMALY_SIDE = 32


def psf_stack(region: np.ndarray, n_stars: int = 15, side: int = ANOMALY_SIDE) -> np.ndarray:
    """Median of the normalised cutouts around the brightest isolated stars.

    The frame's PSF as one ``side``×``side`` image whatever the star positions: round for
    a good frame, a streak when tracking fails, a ring when out of focus. Peak-normalised;
    zeros when no star stands out (a frame with nothing to measure is itself unusual).
    """
    from scipy import ndimage

    image = np.nan_to_num(region.astype(np.float64))
    sky = np.median(image)
    noise = 1.4826 * np.median(np.abs(image - sky)) + 1e-6
    smooth = ndimage.gaussian_filter(image - sky, 2.5)
    peaks = (smooth == ndimage.maximum_filter(smooth, size=15)) & (smooth > 5 * noise / 2.5)
    half = side // 2
    ys, xs = np.nonzero(peaks)
    inside = (
        (ys >= half) & (ys < image.shape[0] - half) & (xs >= half) & (xs < image.shape[1] - half)
    )
    ys, xs = ys[inside], xs[inside]
    if len(ys) == 0:
        return np.zeros((side, side), np.float32)
    order = np.argsort(smooth[ys, xs])[::-1][:n_stars]
    stamps = []
    for y, x in zip(ys[order], xs[order], strict=True):
        cut = image[y - half : y + half, x - half : x + half] - sky
        total = cut.sum()
        if total > 0:
            stamps.append(cut / total)
    if not stamps:
        return np.zeros((side, side), np.float32)
    stack = np.median(stamps, axis=0)
    return (stack / max(stack.max(), 1e-12)).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _line_coordinates(n: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates of ``side`` rotations of an n×n grid about its centre."""
    c = (n - 1) / 2
    t, u = np.mgrid[0:n, 0:n] - c  # t: along the line, u: offset across
    angles = np.deg2rad(np.linspace(0.0, 180.0, side, endpoint=False))[:, None, None]
    ys = c + t * np.cos(angles) - u * np.sin(angles)
    xs = c + t * np.sin(angles) + u * np.cos(angles)
    inside = (ys >= 0) & (ys <= n - 1) & (xs >= 0) & (xs <= n - 1)
    # Points outside the image are filled alternately with a large positive and negative
    # value, which leaves the median of the points inside unchanged.
    fill = np.where(np.arange(n)[None, :, None] % 2 == 0, 1e6, -1e6) * ~inside
    return np.stack([ys.ravel(), xs.ravel()]), (inside, fill)


def line_sinogram(binned: np.ndarray, side: int = ANOMALY_SIDE) -> np.ndarray:
    """Median along straight lines through a normalised image, for ``side`` angles.

    A median ignores the stars a line crosses but not a line that is bright all along:
    a satellite trail or a hot column stands out at its angle and offset. Rows are angles
    in [0, 180)°, columns are offsets across the image (binned to ``side``).
    """
    from scipy import ndimage

    n = binned.shape[0]
    coords, (inside, fill) = _line_coordinates(n, side)
    values = ndimage.map_coordinates(binned, coords, order=1, mode="nearest").reshape(side, n, n)
    values = np.where(inside, values, fill)
    med = np.median(values, axis=1)  # (angle, offset)
    med[inside.sum(axis=1) < n // 4] = 0.0  # lines that barely cross the image
    return med.reshape(side, side, n // side).mean(axis=2).astype(np.float32)


def anomaly_representation(sci: np.ndarray) -> np.ndarray:
    """Two-channel ``ANOMALY_SIDE``² input of the anomaly autoencoder.

    Channel 0: :func:`psf_stack` of the central 256² region; channel 1:
    :func:`line_sinogram` of the region binned 4×4 and normalised. Neither depends on
    where the stars fall, so the autoencoder learns what a normal PSF and a clean sky look
    like rather than star fields (which it cannot reconstruct).
    """
    ny, nx = sci.shape
    if ny < REGION or nx < REGION:
        raise ValueError(f"frame {sci.shape} is smaller than the {REGION}² thumbnail region")
    y0, x0 = (ny - REGION) // 2, (nx - REGION) // 2
    region = sci[y0 : y0 + REGION, x0 : x0 + REGION].astype(np.float64)
    b = REGION // THUMB
    finite = np.isfinite(region)
    filled = region if finite.all() else np.where(finite, region, np.median(region[finite]))
    binned = normalise(filled.reshape(THUMB, b, THUMB, b).mean(axis=(1, 3)))
    return np.stack([psf_stack(region), line_sinogram(binned)])
