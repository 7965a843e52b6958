"""Typing features: what each number says about a hand-made alert object."""

import numpy as np
import pytest

from telescope_assets.science.typing import FEATURE_NAMES, Context, features


def _f(ctx: Context) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, features(ctx).tolist(), strict=True))


def test_host_offset_is_measured_in_galaxy_radii_and_absent_hosts_sit_far_away():
    on = _f(Context(host_sep_arcsec=0.3, host_radius_arcsec=3.0, host_mag=17.5,
                    mjd=np.array([0.0]), mag=np.array([18.0])))  # fmt: skip
    alone = _f(Context(mjd=np.array([0.0]), mag=np.array([18.0])))
    assert on["has_host"] == 1.0
    assert on["host_offset_norm"] == pytest.approx(0.1)
    assert on["host_mag"] == pytest.approx(0.0)  # 17.5 is the scale's centre
    assert alone["has_host"] == 0.0
    assert alone["host_offset_norm"] == 5.0


def test_a_flare_fades_within_the_night_and_a_supernova_over_days():
    flare = _f(Context(star_mag=18.0, mjd=np.array([0.0, 1 / 24, 2 / 24]),
                       mag=np.array([16.0, 17.0, 18.0])))  # fmt: skip
    t, m = np.array([0.0, 3.0, 6.0, 9.0]), np.array([19.0, 18.0, 18.3, 18.6])
    sn = _f(Context(host_sep_arcsec=1.0, host_radius_arcsec=2.0, host_mag=17.0, mjd=t, mag=m))
    assert flare["night_fade_mag_per_hour"] == pytest.approx(1.0)
    assert flare["star_minus_peak_mag"] == pytest.approx(2.0)  # brighter than its star
    assert sn["rise_mag_per_day"] == pytest.approx(1 / 3)
    assert sn["fade_mag_per_day"] == pytest.approx(0.1)
    assert sn["night_fade_mag_per_hour"] == 0.0  # one detection a night
    assert sn["n_nights"] == pytest.approx((4 - 2) / 3)


def test_a_variable_star_reverses_and_order_of_detections_does_not_matter():
    t = np.arange(6.0)
    m = np.array([18.0, 18.5, 18.0, 18.5, 18.0, 18.5])
    a = features(Context(star_mag=16.0, catalogued_variable=True, mjd=t, mag=m))
    b = features(Context(star_mag=16.0, catalogued_variable=True, mjd=t[::-1], mag=m[::-1]))
    np.testing.assert_array_equal(a, b)
    assert _f(Context(mjd=t, mag=m))["reversals"] == 1.0


def test_every_feature_is_finite_from_a_single_detection_to_none():
    for ctx in (Context(), Context(mjd=np.array([5.0]), mag=np.array([19.9])),
                Context(in_tracklet=True, rate_arcsec_per_hour=1e4)):  # fmt: skip
        f = features(ctx)
        assert f.dtype == np.float32
        assert np.isfinite(f).all()
        assert len(f) == len(FEATURE_NAMES)
