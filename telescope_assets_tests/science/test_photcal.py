"""Photometric calibration: zero points, colour terms, and what a neighbour adds to a star."""

import numpy as np
import pytest

from telescope_assets.science import photcal
from telescope_assets.simulate.render import Conditions, Source, render_sources


def test_zero_point_and_colour_term_are_recovered_despite_outliers():
    rng = np.random.default_rng(2)
    n = 200
    m_ref = rng.uniform(14, 19, n)
    colour = rng.uniform(0.2, 1.5, n)
    m_inst = m_ref - 23.4 - 0.05 * colour + rng.normal(0, 0.01, n)
    m_inst[:10] -= 0.8  # variables and blends
    zp = photcal.fit_zero_point(m_inst, np.full(n, 0.01), m_ref, np.full(n, 0.005), colour)
    assert zp.ok
    # The zero point at the calibration stars' median colour (the pivot).
    assert zp.colour_pivot == pytest.approx(np.median(colour[10:]), abs=0.05)
    assert zp.zp == pytest.approx(23.4 + 0.05 * zp.colour_pivot, abs=0.005)
    assert zp.colour_term == pytest.approx(0.05, abs=0.01)
    assert zp.n_used <= n - 10
    assert zp.zp_err < 0.003
    few = photcal.fit_zero_point(m_inst[:3], np.full(3, 0.01), m_ref[:3], np.full(3, 0.01))
    assert not few.ok
    assert "3 usable" in few.message


def test_colour_term_noise_does_not_move_the_zero_point_of_a_typical_star():
    """No true colour term, stars of colour 0.65 ± 0.3: whatever slope the noise fits,
    the zero point (at the stars' median colour) stays where the stars are; the one at
    colour 0 moves by the slope times 0.65."""
    rng = np.random.default_rng(5)
    n = 60
    m_ref = rng.uniform(14, 18, n)
    colour = np.clip(rng.normal(0.65, 0.3, n), -0.2, 1.6)
    errors = []
    for _ in range(30):
        m_inst = m_ref - 23.4 + rng.normal(0, 0.02, n)
        zp = photcal.fit_zero_point(m_inst, np.full(n, 0.02), m_ref, np.full(n, 0.005), colour)
        errors.append((zp.zp - 23.4, zp.zp - zp.colour_term * zp.colour_pivot - 23.4))
    at_pivot, at_zero = np.abs(np.array(errors)).T
    print(f"largest zero-point error at the pivot {at_pivot.max():.4f}, at colour 0 "
          f"{at_zero.max():.4f} mag")  # fmt: skip
    assert at_pivot.max() < 0.01
    assert at_zero.max() > 1.5 * at_pivot.max()


@pytest.mark.parametrize(("fwhm", "beta"), [(3.0, 4.765), (3.0, 2.0), (6.0, 3.0)])
def test_offset_aperture_fraction_is_a_neighbours_light_in_the_aperture(fwhm, beta):
    """Against the simulator's own Moffat rendering: the share of a star's light that an
    aperture ``d`` pixels away holds."""
    alpha = fwhm / (2 * np.sqrt(2 ** (1 / beta) - 1))
    radius, centre = 1.5 * fwhm, (60.3, 60.6)
    distances = np.array([0.0, 2.0, 5.0, 9.0, 15.0])
    psf = Conditions().psf.__class__(beta=beta)
    image = render_sources(
        (121, 121), [Source(np.r_[centre[0]], np.r_[centre[1]], np.r_[1.0])], fwhm,
        Conditions(psf=psf),
    )  # fmt: skip
    yy, xx = np.mgrid[:121, :121]
    rendered = [
        image[np.hypot(xx - centre[0] - d, yy - centre[1]) <= radius].sum() for d in distances
    ]
    model = photcal.offset_aperture_fraction(distances, radius, alpha, beta)
    print(np.round(model, 4), np.round(rendered, 4))
    assert model[0] == pytest.approx(photcal.moffat_growth(radius, alpha, beta), rel=1e-3)
    # Pixel sums against the integral: within a few per cent of the light at each distance.
    np.testing.assert_allclose(model, rendered, rtol=0.06, atol=2e-4)
    assert np.all(np.diff(model) < 0)


def test_contamination_counts_only_the_neighbours_not_the_star():
    """Two stars 6 px apart (one ten times the other), a third far away."""
    x, y = np.array([50.0, 56.0, 150.0]), np.array([50.0, 50.0, 80.0])
    flux = np.array([1000.0, 100.0, 500.0])

    def fraction(d):
        return np.where(d < 10, 0.05, 0.0)  # a toy share: 5 % within 10 px

    out = photcal.contamination((x, y, flux), np.array([0, 1, 2]), 30.0, fraction)
    np.testing.assert_allclose(out, [0.05 * 100 / 1000, 0.05 * 1000 / 100, 0.0])
    # A catalogue whose positions differ slightly from the detections' (``at``): the star
    # itself is known by its index, not by a distance of zero.
    cat = (x + 0.3, y - 0.2, flux)
    out = photcal.contamination(cat, np.array([0, 1, 2]), 30.0, fraction, at=(x, y))
    np.testing.assert_allclose(out, [0.005, 0.5, 0.0])
