"""Follow-up by scientific value: objects ranked by priority, none predicted too faint.

(Visibility, exposure times and the incremental planning are tested in
``test_alerts.py``.)
"""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from telescope_assets.registry import load_registry
from telescope_assets.simulate.sky import transient_mag
from telescope_assets.tasks import followup

WHEN = dt.datetime(2026, 3, 19, 22, 0, tzinfo=dt.UTC)  # La Palma's night, Chile's evening
MJD = 40587.0 + WHEN.timestamp() / 86400


def _alert(alert_id: str, mjd: float, mag: float, band: str = "r", **over) -> dict:
    return {
        "alert_id": alert_id, "object_id": over.pop("object_id", "TA1"), "site": "lapalma",
        "mjd": mjd, "mag": mag, "mag_err": 0.03, "filter": band, "ra": 150.0, "dec": -30.0,
    } | over  # fmt: skip


def _history(t0: float, tau_fall: float, nights: int, peak: float = 17.0) -> list[dict]:
    """A simulated supernova's alerts: one g and one r detection a night up to MJD."""
    sn = pd.DataFrame([{"t0": t0, "tau_rise": 3.0, "tau_fall": tau_fall,
                        "peak_r": peak, "peak_g": peak + 0.1}])  # fmt: skip
    rows = []
    for k in range(nights, 0, -1):
        for band, dt_ in (("g", -0.04), ("r", 0.0)):
            t = MJD - k + 1 + dt_ - 0.001
            rows.append(_alert(f"a{k}{band}", t, float(transient_mag(sn, t, band)[0]), band))
    return rows


def test_science_priority_prefers_bright_young_and_rising():
    base = followup.science_priority(18.0, 1.0, 0.05, 0.01)
    assert followup.science_priority(16.0, 1.0, 0.05, 0.01) > base  # brighter
    assert followup.science_priority(18.0, 20.0, 0.05, 0.01) < base  # older
    assert followup.science_priority(18.0, 1.0, -0.2, 0.02) == pytest.approx(2 * base)  # rising
    assert followup.science_priority(18.0, 1.0, -0.01, 0.02) == pytest.approx(base)  # not sure


def test_a_rising_object_outranks_a_fading_one_and_requests_follow_that_order():
    reg = load_registry()
    rising = _history(t0=MJD - 2.0, tau_fall=30.0, nights=3)  # three nights after explosion
    fading = [
        r | {"object_id": "TA2", "alert_id": "b" + r["alert_id"]}
        for r in _history(t0=MJD - 30.0, tau_fall=30.0, nights=3, peak=16.6)
    ]
    history = {"TA1": rising, "TA2": fading}
    records = followup.with_evolution([fading[-1], rising[-1]], history)
    by_id = {r["object_id"]: r for r in records}
    assert by_id["TA1"]["rate_mag_per_day"] < 0 < by_id["TA2"]["rate_mag_per_day"]
    assert by_id["TA1"]["science_priority"] > by_id["TA2"]["science_priority"]
    requests = []
    for record in records:
        reqs, _ = followup.plan_alert(record, reg, {})
        requests += reqs
    table = followup._by_priority(followup.as_table(requests))
    assert len(table) >= 2
    assert table.object_id.iloc[0] == "TA1"
    assert table.science_priority.is_monotonic_decreasing
    # Each request carries what the object is predicted to do.
    row = table.iloc[-1]
    assert row.rate_mag_per_day > 0
    assert row.predicted_fade_mjd > MJD


def test_no_request_for_an_object_predicted_below_the_sites_limit():
    """A supernova 60 days past explosion, at 19.9 mag and fading 0.04 mag a day: the
    sites that can observe it only tomorrow morning would see it fainter than 20.0."""
    reg = load_registry()
    old = _history(t0=MJD - 62.0, tau_fall=25.0, nights=4, peak=17.3)
    record = followup.with_evolution([old[-1]], {"TA1": old})[0]
    assert record["evolution"] is not None
    window_mjd = MJD + 0.3
    predicted = record["evolution"].predict([window_mjd], "r")[0][0]
    print(f"now {old[-1]['mag']:.2f} mag, predicted {predicted:.2f} mag")
    shallow = {name: {"limiting_mag": predicted - 0.3} for name in reg.names}
    deep = {name: {"limiting_mag": predicted + 1.0} for name in reg.names}
    requests, refused = followup.plan_alert(record, reg, shallow)
    assert requests == []
    assert any("below the site's limit" in r["reason"] for r in refused)
    requests, _ = followup.plan_alert(record, reg, deep)
    assert requests
    assert all(np.isfinite(r["predicted_fade_mjd"]) for r in requests)
    # The exposure is planned for the magnitude predicted when the window opens.
    ev = record["evolution"]
    for r in requests:
        start = dt.datetime.fromisoformat(r["window_start"])
        at = 40587.0 + start.timestamp() / 86400
        expected = min(ev.predict([at], band)[0][0] for band in r["filters"])
        assert r["expected_mag"] == pytest.approx(expected, abs=1e-9)
    assert max(r["expected_mag"] for r in requests) > old[-1]["mag"]  # tololo, later


def test_the_type_weighs_in_the_priority():
    untyped = followup.science_priority(18.0, 1.0, 0.05, 0.01)
    sn = followup.science_priority(18.0, 1.0, 0.05, 0.01, "supernova_like")
    nuclear = followup.science_priority(18.0, 1.0, 0.05, 0.01, "nuclear")
    assert sn == pytest.approx(untyped)
    assert nuclear == pytest.approx(0.6 * sn)


def test_objects_typed_pointless_get_no_follow_up(tmp_path):
    """A flare and an asteroid-like object typed at p ≥ 0.9 are refused; a supernova and a
    flare at p 0.6 go on, typed."""
    from telescope_assets.lake import Lake

    lake = Lake(str(tmp_path))
    types = pd.DataFrame(
        {
            "alert_id": ["a1", "a2", "a3", "a4"],
            "object_id": ["O1", "O2", "O3", "O4"],
            "type_class": ["flare", "moving_object", "supernova_like", "flare"],
            "p_flare": [0.95, 0.0, 0.01, 0.6],
            "p_moving_object": [0.0, 0.97, 0.0, 0.1],
            "p_supernova_like": [0.01, 0.01, 0.93, 0.2],
        }
    )
    lake.write_manifest("transient_types", "lapalma", "2026-03-19", types)
    records = [_alert(f"a{i}", MJD, 18.0, object_id=f"O{i}") for i in range(1, 6)]
    kept, refused = followup._typed(lake, "lapalma", "2026-03-19", records)
    assert [r["alert_id"] for r in refused] == ["a1", "a2"]
    assert "typed flare (p = 0.95)" in refused[0]["reason"]
    assert [(r["alert_id"], r["type_class"]) for r in kept] == [
        ("a3", "supernova_like"),
        ("a4", "flare"),
        ("a5", None),
    ]
