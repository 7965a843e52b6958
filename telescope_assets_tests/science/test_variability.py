"""Periods, classes and anomaly ranks against the simulator's truth and real RR Lyrae."""

import numpy as np
import pandas as pd
import pytest

from telescope_assets.science.variability import characterise, is_alias
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
    # Measured 0 of the constant stars called variable.
    assert (constant.var_class == "constant").mean() >= 0.98


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
    # Measured 56 of 61 (91.8 %) within 1 % of Sesar et al.'s periods ...
    assert within.mean() >= 0.9
    # ... and every miss is a 1-day or ×2 alias of the true period, flagged as such.
    misses = found[~within]
    assert all(is_alias(p, t) for p, t in zip(misses.period, misses.true, strict=True))
    assert (found.var_class.isin(["periodic", "eclipsing"])).all()


def test_too_few_epochs_and_aliases():
    v = characterise([1.0, 2.0, 3.0], [15.0, 15.1, 15.0], [0.01] * 3)
    assert v.var_class == "too_few"
    assert is_alias(0.5 * 2, 0.5)
    assert is_alias(1 / (1 / 0.6 + 1), 0.6)
    assert not is_alias(0.6 * 1.003, 0.6)
