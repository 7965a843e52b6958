"""The typing populations: balanced, deterministic, and each drawn as its class says."""

import numpy as np
import pytest

from telescope_assets.science.typing import FEATURE_NAMES
from telescope_assets.simulate.typing import TYPE_CLASSES, observe, typing_examples


@pytest.fixture(scope="module")
def examples():
    return typing_examples(1200, seed=7)


def _col(a, name):
    return a["x"][:, FEATURE_NAMES.index(name)]


def test_balanced_deterministic_and_finite(examples):
    assert np.bincount(examples["y"]).tolist() == [200] * len(TYPE_CLASSES)
    again = typing_examples(60, seed=7)["x"]
    np.testing.assert_array_equal(typing_examples(60, seed=7)["x"], again)
    assert not np.array_equal(typing_examples(60, seed=8)["x"], typing_examples(60, seed=7)["x"])
    assert np.isfinite(examples["x"]).all()


def test_each_population_has_its_context(examples):
    y = examples["y"]
    cls = {name: y == k for k, name in enumerate(TYPE_CLASSES)}
    offset = _col(examples, "host_offset_norm")
    # nuclear transients sit at their galaxy's centre, supernovae mostly off it
    assert np.median(offset[cls["nuclear"]]) < 0.25
    assert np.median(offset[cls["supernova_like"]]) > 0.5
    # 95 % of supernovae have a detected host; stars under variables and flares only
    assert 0.9 < _col(examples, "has_host")[cls["supernova_like"]].mean() < 1.0
    has_star = _col(examples, "has_star") > 0
    assert has_star[cls["variable_star"] | cls["flare"]].all()
    assert not has_star[cls["supernova_like"] | cls["unknown"] | cls["moving_object"]].any()
    # motion is known exactly for tracklets, and only for them
    assert (_col(examples, "in_tracklet")[cls["moving_object"]] == 1).all()
    assert (_col(examples, "in_tracklet")[~cls["moving_object"]] == 0).all()
    # flares are seen on one night; seen twice, they fade faster than 95 % of supernovae
    np.testing.assert_allclose(_col(examples, "n_nights")[cls["flare"]], (1 - 2) / 3)
    fast = _col(examples, "night_fade_mag_per_hour")
    twice = _col(examples, "log_n_detections") > np.log10(2.5)
    assert twice[cls["flare"]].sum() > 30
    assert np.median(fast[cls["flare"] & twice]) > np.quantile(fast[cls["supernova_like"]], 0.95)


def test_observe_keeps_detections_at_snr_5_with_their_noise():
    rng = np.random.default_rng(0)
    t = np.arange(4000.0)
    bright_t, bright = observe(rng, t, np.full(4000, 16.0))
    faint_t, _ = observe(rng, t, np.full(4000, 22.0))
    assert len(bright_t) == 4000
    assert abs(np.median(bright) - 16.0) < 0.01
    assert len(faint_t) < 40  # 1.3 mag or more below every limit: noise peaks only
