"""Training examples drawn from camera families (for evaluation on held-out optics)."""

import numpy as np
import pytest

from telescope_assets.simulate.training import quality_examples


def test_families_change_the_optics_and_nothing_else_by_default():
    plain = quality_examples(12, seed=5)
    again = quality_examples(12, seed=5, families=None)
    np.testing.assert_array_equal(plain["x"], again["x"])  # production data unchanged
    standard = quality_examples(40, seed=5, families=("standard",))
    wide = quality_examples(40, seed=5, families=("undersampled",))
    # 2″ pixels and 0.6 px of optics: seeing at least hypot(0.9″, 1.2″) = 1.5″, measured
    # 4 % high; the standard optics at 0.9–1.3″/px start at hypot(0.9″, 1.8″) = 2.0″.
    assert wide["scalars"][:, 0].min() >= 1.5
    assert plain["scalars"][:, 0].min() >= 2.0
    assert standard["scalars"][:, 0].min() >= 2.0
    assert not np.array_equal(wide["x"][:12], plain["x"])


def test_an_unknown_family_names_the_known_ones():
    with pytest.raises(KeyError, match="known: standard"):
        quality_examples(2, seed=1, families=("fisheye",))


def test_real_bogus_families_scale_the_psf_to_the_cameras_sampling():
    from telescope_assets.simulate.training import real_bogus_examples

    plain = real_bogus_examples(10, seed=4)
    np.testing.assert_array_equal(plain["x"], real_bogus_examples(10, seed=4, families=None)["x"])

    def concentration(data):
        # Light of the real transients' science stamps within 2 px of the centre, as a
        # share of that within 6 px: higher for sharper images.
        real = data["x"][data["y"] == 0, 0]
        real = real - np.median(real, axis=(1, 2), keepdims=True)
        yy, xx = np.mgrid[0:63, 0:63]
        r = np.hypot(xx - 31, yy - 31)
        return float(np.median(real[:, r <= 2].sum(1) / real[:, r <= 6].sum(1)))

    standard = real_bogus_examples(60, seed=4)
    sharp = real_bogus_examples(60, seed=4, families=("undersampled",))
    broad = real_bogus_examples(60, seed=4, families=("oversampled",))
    shares = [concentration(d) for d in (sharp, standard, broad)]
    print(shares)
    assert shares == sorted(shares, reverse=True), shares


def test_a_hosted_real_source_is_as_significant_as_labelled_over_its_hosts_light():
    """On a galaxy, the source is brighter for the same S/N (the host's photons are
    noise), and the matched reference leaves the host at noise level, not as bogus."""
    from telescope_assets.simulate import training
    from telescope_assets.simulate.render import Conditions

    blank = np.zeros((training.STAMP, training.STAMP))
    cond, fwhms, noise = Conditions(), (3.0, 2.5), np.sqrt(400.0 + 36)
    fluxes = {}
    for share in (0.0, 1.0):
        rng = np.random.default_rng(4)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(training, "HOSTED_SHARE", share)
            mp.setattr(training, "HOST_FLUX_LOG10", (5.5, 5.5))
            sci, ref, model, extra = training._real_source(
                rng, blank, blank, 31.0, 31.0, 20.0, fwhms, noise, cond
            )
        fluxes[share] = extra.sum()
        if share:
            host = sci[31, 31]
            assert host > 400.0  # a host brighter than the sky under the source
            assert fluxes[1.0] / fluxes[0.0] == pytest.approx(
                np.sqrt(400.0 + 36 + host) / noise, rel=0.01
            )
            residual = sci - model
            assert np.abs(residual).max() < 0.03 * sci.max()  # a clean subtraction's
            assert ref.sum() == pytest.approx(sci.sum(), rel=0.01)  # the host in both
