"""The autoencoder's representation: PSF stack and line sinogram respond to the defects."""

import numpy as np

from telescope_assets.science.thumbnails import (
    ANOMALY_SIDE,
    anomaly_representation,
    line_sinogram,
    psf_stack,
)
from telescope_assets.simulate.render import Conditions, Source, render_sources


def _field(cond: Conditions, seed: int = 0, fwhm: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = 60
    src = Source(rng.uniform(0, 256, n), rng.uniform(0, 256, n), 10 ** rng.uniform(3.5, 5, n))
    light = render_sources((256, 256), [src], fwhm, cond)
    return light + rng.normal(0, 10, light.shape)


def _second_moments(stamp: np.ndarray) -> tuple[float, float]:
    yy, xx = np.mgrid[0 : stamp.shape[0], 0 : stamp.shape[1]]
    w = np.clip(stamp, 0, None)
    cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()
    cov = np.cov(np.vstack([(xx - cx).ravel(), (yy - cy).ravel()]), aweights=w.ravel())
    major, minor = np.sqrt(np.linalg.eigvalsh(cov)[::-1])
    return float(major), float(minor)


def test_psf_stack_is_round_for_a_good_frame_and_a_streak_when_tracking_fails():
    good = psf_stack(_field(Conditions()))
    assert good.shape == (ANOMALY_SIDE, ANOMALY_SIDE)
    assert np.unravel_index(good.argmax(), good.shape) in {(16, 16), (15, 16), (16, 15), (15, 15)}
    major, minor = _second_moments(good)
    assert major / minor < 1.15
    trailed = psf_stack(_field(Conditions(tracking_px=10.0, tracking_angle=0.0)))
    major_t, minor_t = _second_moments(trailed)
    assert major_t / minor_t > 1.8


def test_psf_stack_of_an_empty_frame_is_zero():
    assert not psf_stack(np.random.default_rng(1).normal(0, 10, (256, 256))).any()


def test_line_sinogram_finds_a_column_and_a_trail_but_not_stars():
    rng = np.random.default_rng(2)
    image = rng.normal(0, 1, (64, 64))
    stars = image.copy()
    for y, x in rng.integers(4, 60, (30, 2)):
        stars[y - 1 : y + 2, x - 1 : x + 2] += 20
    column = image.copy()
    column[:, 40] += 5
    trail = image.copy()
    yy, xx = np.mgrid[0:64, 0:64]
    trail[np.abs(yy - xx) <= 1] += 5  # along the diagonal, 45° from the columns
    # Lines through the middle cross enough sky for the median to ignore the stars.
    quiet = np.abs(line_sinogram(stars)[:, 8:24]).max()
    assert quiet < 1.0
    col = line_sinogram(column)
    angle, offset = np.unravel_index(col.argmax(), col.shape)
    assert (angle, offset) == (0, 20)
    assert col.max() > 2 * quiet
    diag = line_sinogram(trail)
    angle, _ = np.unravel_index(diag.argmax(), diag.shape)
    assert angle in (8, 24)
    assert diag.max() > 2 * quiet


def test_representation_ignores_masked_pixels():
    frame = _field(Conditions())
    holed = frame.copy()
    holed[100:110, 50:60] = np.nan
    rep, rep_holed = anomaly_representation(frame), anomaly_representation(holed)
    assert np.isfinite(rep_holed).all()
    assert np.abs(rep - rep_holed).max() < 0.3


def test_normalise_stack_is_normalise_image_by_image_threaded_or_not():
    """Float32 cutouts as the pipeline stores them, some with masked (NaN) pixels, in
    stacks below and above the size that spreads the work over threads."""
    from telescope_assets.science.thumbnails import _THREADED_FROM, normalise, normalise_stack

    rng = np.random.default_rng(4)
    for n in (5, _THREADED_FROM // 3 + 7):
        stamps = rng.normal(300.0, 20.0, (n, 3, 63, 63)).astype(np.float32)
        stamps[:, :, 31, 31] += rng.uniform(0, 5e4, (n, 3)).astype(np.float32)
        stamps[1, 0, :5] = np.nan
        stamps[-1, 2] = np.nan  # nothing finite at all
        expected = np.stack([[normalise(c) for c in triplet] for triplet in stamps])
        found = normalise_stack(stamps)
        assert found.dtype == np.float32
        np.testing.assert_array_equal(found, expected)
