"""Periods, classes and anomaly ranks against the simulator's truth and real RR Lyrae."""

import numpy as np
import pandas as pd
import pytest

from telescope_assets.science.variability import (
    CLASSES,
    ENSEMBLE_Z,
    VARYING,
    against_ensemble,
    characterise,
    day_alias,
    is_alias,
)
from telescope_assets.simulate.catalogs import simulate_catalogs
from telescope_assets.simulate.sky import make_sky
from telescope_assets.tasks.lightcurves import rank_anomalies
from telescope_assets_tests.conftest import SITES, nights, real_data


@pytest.fixture(scope="module")
def month():
    """Thirty nights of four sites (about 120 epochs per star), sky of the demo's seed."""
    sky = make_sky(8, stars_per_field=400)
    det, _ = simulate_catalogs(sky, SITES, nights(30), seed=3, offset_sigma=0.0)
    rows = []
    for oid, g in det.groupby("ref_id"):
        v = characterise(g.mjd, g.mag, g.mag_err, g["filter"])
        rows.append({"object_id": oid, **v.as_dict()})
    table = pd.DataFrame(rows)
    truth = sky.stars.set_index("object_id").loc[table.object_id]
    return table.assign(var_type=truth.var_type.to_numpy(), true_period=truth.period.to_numpy())


def test_simulated_periodic_variables_get_their_period(month):
    # Two months of the full sky's variables (1400 stars a field), plus the fixture's.
    sky = make_sky(8, stars_per_field=1400)
    stars = sky.stars.set_index("object_id")
    wanted = set(stars.index[stars.var_type.isin(["rrlyrae", "eclipsing"])])
    rows = []
    for seed in (3, 4):
        det, _ = simulate_catalogs(sky, SITES, nights(30), seed=seed, offset_sigma=0.0)
        for oid, g in det[det.ref_id.isin(wanted)].groupby("ref_id"):
            v = characterise(g.mjd, g.mag, g.mag_err, g["filter"])
            rows.append(
                {"var_type": stars.var_type[oid], "true_period": stars.period[oid], **v.as_dict()}
            )
    periodic = pd.concat([pd.DataFrame(rows), month[month.var_type.isin(["rrlyrae", "eclipsing"])]])
    periodic = periodic[periodic.n_epochs >= 30]
    assert len(periodic) >= 60
    within = np.abs(periodic.period / periodic.true_period - 1) < 0.01
    # Target ≥ 95 % within 1 % (measured 69 of 70: one faint shallow eclipsing binary
    # is not detected as periodic; docs/lightcurves.md has fewer epochs).
    assert within.mean() >= 0.95
    assert (periodic.var_class.isin(["periodic", "eclipsing"])).mean() >= 0.95
    eclipsing = periodic[periodic.var_type == "eclipsing"]
    assert (eclipsing.var_class == "eclipsing").mean() >= 0.9


def test_constant_stars_are_constant(month):
    constant = month[month.var_type == "constant"]
    assert len(constant) > 300
    # Measured 0 of the constant stars called variable (the target: at most 1 %).
    assert (constant.var_class == "constant").mean() >= 0.99


def test_dippers_rank_first_among_anomalies(month):
    ranked = rank_anomalies(month)
    dippers = ranked[ranked.var_type == "dipper"]
    assert len(dippers) == 4
    # The simulator's rare class, one star in about 500: all four in the top 1 %
    # (measured ranks 1, 2, 3 and 5 of 578).
    assert dippers["rank"].max() <= 0.01 * len(ranked)
    assert ranked.forest.iloc[0].startswith("IsolationForest")


def test_real_rr_lyrae_periods_or_their_aliases():
    folder = real_data("lightcurves", "rrlyrae")
    catalogue = pd.read_csv(folder / "periods.csv")
    found = []
    for row in catalogue.itertuples():
        lc = pd.read_csv(folder / f"{row.Num}.csv")
        lc = lc[(lc.magerr > 0) & (lc.magerr < 0.2)]
        v = characterise(lc.time, lc.mag, lc.magerr, lc.band)
        found.append((v.period, row.Per, v.var_class))
    found = pd.DataFrame(found, columns=["period", "true", "var_class"])
    within = np.abs(found.period / found.true - 1) < 0.01
    # Measured 60 of 61 (98.4 %) within 1 % of Sesar et al.'s periods (56 before the
    # leading candidates were judged at their own best frequency) ...
    assert within.mean() >= 0.95
    # ... and every miss is a 1-day or ×2 alias of the true period.
    misses = found[~within]
    assert all(is_alias(p, t) for p, t in zip(misses.period, misses.true, strict=True))
    # Pulsators, none called eclipsing (one RRc was, at twice its period, before a
    # doubled period had to fit significantly better).
    assert (found.var_class == "periodic").all()


def test_too_few_epochs_and_aliases():
    v = characterise([1.0, 2.0, 3.0], [15.0, 15.1, 15.0], [0.01] * 3)
    assert v.var_class == "too_few"
    assert is_alias(0.5 * 2, 0.5)
    assert is_alias(1 / (1 / 0.6 + 1), 0.6)
    assert not is_alias(0.6 * 1.003, 0.6)


def _nightly(n_nights: int = 20, per_night: int = 3, seed: int = 0):
    """Epochs of a field seen a few times a night (hours apart) for ``n_nights`` nights."""
    rng = np.random.default_rng(seed)
    t = np.concatenate(
        [night + np.sort(rng.uniform(0, 0.3, per_night)) for night in range(n_nights)]
    )
    return rng, 61000.0 + t


def test_one_wild_point_does_not_make_a_star_variable():
    # A hot pixel or a satellite in the aperture on one frame: 0.7 mag brighter once.
    rng, t = _nightly()
    err = np.full(t.size, 0.01)
    mag = 16 + rng.normal(0, err)
    mag[7] -= 0.7
    v = characterise(t, mag, err)
    assert v.chi2_red > 50
    assert v.chi2_red_robust < 2
    assert v.var_class == "constant"
    # Two nights of a real fading are not one wild point.
    mag[20:26] += 0.3
    assert characterise(t, mag, err).var_class == "irregular"


def test_curves_that_follow_the_seeing_are_not_variable():
    rng, t = _nightly(seed=1)
    seeing = rng.uniform(1.5, 4.0, t.size)
    err = np.full(t.size, 0.02)
    # A galaxy through an aperture of 1.5 × FWHM: brighter in poor seeing (the demo's
    # galaxies: -0.13 to -0.53 mag per arcsec).
    galaxy = 17 - 0.35 * (seeing - 2.5) + rng.normal(0, err)
    g = characterise(t, galaxy, err, seeing=seeing)
    assert g.chi2_red > 50
    assert g.var_class == "seeing_dependent"
    assert g.seeing_slope == pytest.approx(-0.35, abs=0.05)
    # Without the seeing, the same curve is called variable.
    assert characterise(t, galaxy, err).var_class in VARYING
    # A pulsator seen through the same seeing is periodic, and a supernova rising on
    # the galaxy is variable (which kind of variable a rising curve is, these classes
    # do not say): the seeing does not explain them.
    pulsator = 15 + 0.3 * np.sin(2 * np.pi * t / 0.37) + rng.normal(0, err)
    assert characterise(t, pulsator, err, seeing=seeing).var_class == "periodic"
    supernova = -2.5 * np.log10(10 ** (-0.4 * galaxy) + 10 ** (-0.4 * (21 - 0.2 * (t - t[0]))))
    assert characterise(t, supernova, err, seeing=seeing).var_class in VARYING


def test_the_ensemble_calls_off_errors_that_are_too_small():
    # 400 constant stars whose errors were underestimated 4×: χ² alone calls them
    # variable; against the stars of their brightness they are constant. A real
    # variable among them stays.
    rng, t = _nightly(n_nights=10, seed=2)
    rows = []
    for i in range(401):
        err = np.full(t.size, 0.01)
        mag = rng.uniform(14, 19) + rng.normal(0, 4 * err)
        if i == 400:
            mag += 0.2 * np.sin(2 * np.pi * t / 3.3)
        v = characterise(t, mag, err)
        rows.append({"object_id": i, "median_r": np.median(mag), **v.as_dict()})
    table = pd.DataFrame(rows)
    assert (table.var_class.iloc[:400] != "constant").mean() > 0.9
    judged = against_ensemble(table)
    assert (judged.var_class.iloc[:400] != "constant").mean() <= 0.01
    assert judged.ensemble_z.iloc[400] > ENSEMBLE_Z
    assert judged.var_class.iloc[400] != "constant"
    assert set(judged.var_class) <= set(CLASSES)


def test_periods_near_a_day_carry_an_alias_flag():
    assert [day_alias(p) for p in (1.0, 0.9972, 0.5, 0.3335, 0.2499, 2.0, 3.0)] == [
        "1-day",
        "sidereal",
        "1-day",
        "1-day",
        "1-day",
        "1-day",
        "1-day",
    ]
    assert [day_alias(p) for p in (0.37, 0.61, 0.75, 1.5, 5.0, float("nan"))] == [""] * 6
    # A half-day pulsator seen nightly: its period is flagged, as it must be.
    rng, t = _nightly(n_nights=12, per_night=4, seed=3)
    err = np.full(t.size, 0.01)
    v = characterise(t, 15 + 0.3 * np.sin(2 * np.pi * t / 0.5) + rng.normal(0, err), err)
    assert v.day_alias == "1-day"
    assert v.alias_risk
