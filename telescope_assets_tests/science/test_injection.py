"""Fakes drawn with a frame's own PSF: the PSF measured from its stars, fakes of known flux."""

import numpy as np
import pytest

from telescope_assets.science.injection import add_point_sources, empirical_psf, psf_noise_area
from telescope_assets.simulate.optics import PSF
from telescope_assets.simulate.render import Conditions, Source, render_sources

#: A camera unlike the simulator's standard one: broad Moffat wings, elongated, with coma.
ODD = PSF(beta=2.2, ellipticity=0.15, pa_deg=30.0, coma=0.2)
FWHM = 4.5


def _star(shape, x, y, flux):
    return render_sources(
        shape, [Source(np.array([x]), np.array([y]), np.array([flux]))], FWHM, Conditions(psf=ODD)
    )


def test_the_empirical_psf_is_the_frames_own_shape_not_a_gaussian():
    rng = np.random.default_rng(3)
    shape = (400, 400)
    gx, gy = np.meshgrid(np.arange(60, 360, 60.0), np.arange(60, 360, 60.0))
    x = gx.ravel() + rng.uniform(-0.5, 0.5, gx.size)
    y = gy.ravel() + rng.uniform(-0.5, 0.5, gy.size)
    image = render_sources(shape, [Source(x, y, np.full(x.size, 2e5))], FWHM, Conditions(psf=ODD))
    image = rng.poisson(image + 100.0) - 100.0
    # Cosmic-ray hits in the wings of every star are masked: left out, not the star.
    mask = np.zeros(shape, np.uint8)
    for xs, ys in zip(x, y, strict=True):
        mask[round(ys) + 9, round(xs) - 12 : round(xs) - 9] = 1
        image[round(ys) + 9, round(xs) - 12 : round(xs) - 9] = 5e4
    psf = empirical_psf(image, mask, list(zip(x, y, strict=True)), half=18)

    truth = _star((37, 37), 18.0, 18.0, 1.0)
    truth /= truth.sum()
    assert psf.shape == (37, 37)
    assert psf.sum() == pytest.approx(1.0)
    # Within 3 % of the light everywhere (noise of 25 stars); a Gaussian of the same
    # FWHM differs by 25 %, so the wings and the coma tail are the frame's own.
    assert np.abs(psf - truth).sum() < 0.03
    yy, xx = np.mgrid[-18:19, -18:19]
    gauss = np.exp(-(xx**2 + yy**2) / (2 * (FWHM / 2.355) ** 2))
    assert np.abs(gauss / gauss.sum() - truth).sum() > 0.25
    # The centroid is on the middle pixel (the stars were at sub-pixel offsets).
    assert np.sum(psf * xx) == pytest.approx(np.sum(truth * xx), abs=0.05)


def test_too_few_clean_stars_is_a_clear_error():
    image = np.zeros((100, 100))
    mask = np.zeros_like(image, np.uint8)
    mask[40:60, 40:60] = 1
    with pytest.raises(ValueError, match="too few bright isolated unmasked stars"):
        empirical_psf(image, mask, [(50.0, 50.0), (3.0, 3.0), (80.0, 80.0)], half=10)


def test_a_fake_adds_its_flux_and_its_own_photon_noise():
    rng = np.random.default_rng(1)
    psf = _star((31, 31), 15.0, 15.0, 1.0)
    psf /= psf.sum()
    sci = np.zeros((200, 200))
    err = np.full(sci.shape, 10.0)
    flux = 4e4
    new_sci, new_err = add_point_sources(
        sci, err, psf, np.array([100.3]), np.array([80.7]), np.array([flux]), rng
    )
    assert new_sci.sum() == pytest.approx(flux, abs=4 * np.sqrt(flux))
    cy, cx = np.unravel_index(np.argmax(new_sci), sci.shape)
    assert (cy, cx) in {(80, 100), (81, 100), (80, 101), (81, 101)}
    # Variance grows by the fake's electrons, exactly (not its noisy draw).
    assert (new_err**2 - err**2).sum() == pytest.approx(flux, rel=1e-6)
    assert sci.sum() == 0  # the input is not changed
    # The optimal S/N area of a Gaussian PSF is 4 pi sigma^2.
    yy, xx = np.mgrid[-15:16, -15:16]
    gauss = np.exp(-(xx**2 + yy**2) / (2 * 2.0**2))
    assert psf_noise_area(gauss / gauss.sum()) == pytest.approx(4 * np.pi * 2.0**2, rel=0.01)
