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
