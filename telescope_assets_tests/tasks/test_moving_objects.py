"""A night's tracklets across sites, the MPC report, and no follow-up for asteroids."""

import numpy as np
import pandas as pd

from telescope_assets.lake import Lake
from telescope_assets.registry import load_registry
from telescope_assets.tasks import followup, moving_objects

NIGHT = "2026-03-18"
RA, DEC = 187.5, -20.0  # F1230m20, seen from the southern sites in March


def _alerts(site: str, hours, ra, dec, ids) -> pd.DataFrame:
    n = len(hours)
    return pd.DataFrame(
        {
            "alert_id": ids,
            "candidate_id": ids,
            "object_id": [f"obj-{i}" for i in ids],
            "object_kind": "transient",
            "frame_id": [f"{site}-f{i}" for i in range(n)],
            "site": site,
            "night": NIGHT,
            "mjd": 61118.0 + np.asarray(hours) / 24,
            "ra": ra,
            "dec": dec,
            "mag": 18.5,
            "filter": "r",
        }
    )


def _night(lake: Lake) -> None:
    """An asteroid at 40″/h seen twice at each of two sites; a supernova at the first."""
    rate = 40 / 3600 / np.cos(np.radians(DEC))
    tololo_h, sutherland_h = np.array([1.0, 2.5]), np.array([-4.0, -2.0])
    asteroid_t = _alerts("tololo", tololo_h, RA - rate * tololo_h, DEC, ["t-a1", "t-a2"])
    supernova = _alerts("tololo", [1.0, 2.5], RA + 0.05, DEC + 0.05, ["t-sn1", "t-sn2"])
    supernova["object_id"] = "obj-sn"
    variable = _alerts("tololo", [1.0], RA - 0.05, DEC, ["t-var"]).assign(object_kind="variable")
    asteroid_s = _alerts(
        "sutherland", sutherland_h, RA - rate * sutherland_h, DEC, ["s-a1", "s-a2"]
    )
    lake.write_manifest("alerts", "tololo", NIGHT, pd.concat([asteroid_t, supernova, variable]))
    lake.write_manifest("alerts", "sutherland", NIGHT, asteroid_s)


def test_a_tracklet_across_two_sites_gets_one_designation_and_an_mpc_report(tmp_path):
    lake, registry = Lake(str(tmp_path)), load_registry()
    _night(lake)
    found = moving_objects.link_night(lake, registry, "tololo", NIGHT)
    assert found.n_alerts == 6  # the variable star is not a candidate
    assert len(found.tracklets) == 1
    tracklet = found.tracklets.iloc[0]
    assert tracklet.n_detections == 4
    assert tracklet.sites == "sutherland,tololo"
    assert abs(tracklet.rate_arcsec_per_hour - 40) < 0.5
    assert abs(tracklet.pa_deg - 270) < 1  # westward
    # Named by its earliest detection (Sutherland's, hours before Tololo's night).
    assert tracklet.tracklet_id == "TKs-a1"
    mine = lake.read_manifest("moving_objects", "tololo", NIGHT)
    assert sorted(mine.alert_id) == ["t-a1", "t-a2"]
    assert set(mine.designation) == {tracklet.designation}
    report = lake.read_bytes(lake.mpc_report("tololo", NIGHT)).decode().splitlines()
    assert report[0] == "COD 807"
    body = [line for line in report if len(line) == 80]
    assert len(body) == 2
    assert {line[5:12] for line in body} == {tracklet.designation}
    # Sutherland's run of the same night gives the same tracklet, its own observations.
    moving_objects.link_night(lake, registry, "sutherland", NIGHT)
    theirs = lake.read_manifest("moving_objects", "sutherland", NIGHT)
    assert set(theirs.designation) == {tracklet.designation}
    assert lake.read_bytes(lake.mpc_report("sutherland", NIGHT)).decode().startswith("COD 732")


def test_asteroids_get_no_follow_up_and_an_earlier_request_is_withdrawn(tmp_path):
    lake, registry = Lake(str(tmp_path)), load_registry()
    _night(lake)
    # Before the tracklet existed, an early run had asked Siding Spring to look.
    early = {"request_id": "t-a1@sidingspring", "alert_id": "t-a1", "site": "sidingspring"}
    lake.write_manifest("followup_requests", "tololo", NIGHT, pd.DataFrame([early]))
    lake.write_json(lake.queue("sidingspring", "t-a1"), early)
    moving_objects.link_night(lake, registry, "tololo", NIGHT)
    plan = followup.plan_night(lake, registry, "tololo", NIGHT)
    assert not lake.exists(lake.queue("sidingspring", "t-a1"))
    assert set(plan.requests.alert_id) <= {"t-sn1", "t-sn2"}
    assert len(plan.requests)  # the supernova is followed
    reasons = plan.refusals.set_index("alert_id").reason
    assert reasons["t-a2"].startswith("moving object T")
    assert reasons["t-a1"].startswith("withdrawn: moving object T")
    # A rerun plans nothing again and sends nothing for the asteroid.
    again = followup.plan_night(lake, registry, "tololo", NIGHT)
    assert again.n_alerts_planned_now == 0
    assert not lake.exists(lake.queue("sidingspring", "t-a1"))
