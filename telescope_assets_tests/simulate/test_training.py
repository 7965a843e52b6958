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
