"""Normalised image thumbnails: what the learned models see of a frame or a cutout."""

import numpy as np

__all__ = ["REGION", "THUMB", "frame_thumbnail", "normalise"]

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
