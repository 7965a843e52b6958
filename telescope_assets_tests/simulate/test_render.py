"""Rendering: asteroids add their own photons and leave every other pixel as it was."""

import numpy as np

from telescope_assets.registry import load_registry
from telescope_assets.simulate.render import Conditions, Source, camera_defects, render_raw


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
