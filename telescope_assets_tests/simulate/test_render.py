"""Rendering: galaxies seen through the frame's PSF; asteroids add their own photons and
leave every other pixel as it was."""

import numpy as np
import pytest

from telescope_assets.registry import load_registry
from telescope_assets.simulate.optics import family
from telescope_assets.simulate.render import (
    Conditions,
    Source,
    camera_defects,
    render_raw,
    render_sources,
)


def test_an_asteroid_changes_the_pixels_around_it_and_no_others():
    site = load_registry()["tololo"]
    defects = camera_defects(site, 1)
    stars = [Source(np.array([100.0, 300.0]), np.array([120.0, 400.0]), np.array([5e4, 2e4]))]
    asteroid = [Source(np.array([500.0]), np.array([500.0]), np.array([3e4]))]

    def frame(movers):
        raw, _ = render_raw(
            site, defects, "science", 60.0, "r", stars, Conditions(), np.random.default_rng(4),
            movers=movers, mover_rng=np.random.default_rng(9),
        )  # fmt: skip
        return raw.astype(float)

    without, with_it = frame([]), frame(asteroid)
    changed = np.argwhere(with_it != without)
    assert len(changed)
    # Only within the asteroid's light (a few FWHM), never elsewhere.
    assert np.hypot(changed[:, 0] - 500, changed[:, 1] - 500).max() < 25
    box = (with_it - without)[490:511, 490:511]
    assert box.sum() * site.camera.gain > 0.9 * 3e4


@pytest.mark.parametrize(
    "conditions",
    [
        Conditions(),
        Conditions(psf=family("very_broad_moffat").psf),
        Conditions(tracking_px=6.0, tracking_angle=0.5),
    ],
    ids=["standard", "beta2", "trailed"],
)
def test_a_galaxy_is_its_own_light_seen_through_the_stars_psf(conditions):
    """Whatever blurs a star (seeing, broad wings, a tracking error) blurs a galaxy the
    same way: its image is its intrinsic light convolved with a star's image, so a kernel
    that matches two frames' stars matches their galaxies (docs/transients.md)."""
    from scipy.signal import fftconvolve

    shape, fwhm = (121, 121), 3.2
    galaxy = Source(
        np.r_[60.4], np.r_[59.7], np.r_[1e5],
        radius_px=np.r_[2.5], axis_ratio=np.r_[0.6], pa_deg=np.r_[30.0],
    )  # fmt: skip
    image = render_sources(shape, [galaxy], fwhm, conditions)
    own = render_sources(shape, [galaxy], 1e-3, Conditions())  # no blur at all
    star = render_sources(shape, [Source(np.r_[60.0], np.r_[60.0], np.r_[1.0])], fwhm, conditions)
    expected = fftconvolve(own, star / star.sum(), mode="same")
    assert image.sum() == pytest.approx(1e5, rel=1e-3)
    assert np.abs(image - expected).max() < 2e-3 * image.max()
    # Not the Gaussian of the summed widths drawn before 2026-12-07 (wrong for a Moffat).
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    sig = np.hypot(2.5, fwhm / 2.355)
    c, s = np.cos(np.radians(30.0)), np.sin(np.radians(30.0))
    u, v = (xx - 60.4) * c + (yy - 59.7) * s, (-(xx - 60.4) * s + (yy - 59.7) * c) / 0.6
    gaussian = np.exp(-0.5 * (u**2 + v**2) / sig**2)
    gaussian *= 1e5 / gaussian.sum()
    if conditions.psf.beta is not None and conditions.psf.beta < 3:
        assert np.abs(image - gaussian).max() > 0.05 * image.max()
