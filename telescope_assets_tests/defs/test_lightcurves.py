"""light_curves → variability → anomalies → nightly_report through Dagster.

The catalogs come from the catalog-level simulator (no pixels), written where
``source_catalogs`` and ``frame_quality`` would write them, so three nights of four
sites take seconds.
"""

import datetime as dt
import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from telescope_assets.defs.lightcurves.assets import (
    anomalies,
    light_curves,
    nightly_report,
    variability,
)
from telescope_assets.lake import Lake
from telescope_assets.registry import load_registry
from telescope_assets.report import SECTIONS
from telescope_assets.resources import DaskResource, LakeResource, RegistryResource
from telescope_assets.science.variability import CLASSES
from telescope_assets.simulate.catalogs import publish_catalogs, simulate_catalogs
from telescope_assets.simulate.network import write_reference_catalogs
from telescope_assets.simulate.sky import make_sky
from telescope_assets.tasks import lightcurves as lc_tasks
from telescope_assets.tasks.nightly import night_deadline
from telescope_assets_tests.conftest import SITES, ephemeral_instance, nights, real_data

NIGHTS = nights(3)
EMPTY_NIGHT = "2026-03-25"
ASSETS = [light_curves, variability, anomalies, nightly_report]


@pytest.fixture(scope="module")
def network(tmp_path_factory):
    root = tmp_path_factory.mktemp("lightcurves")
    sky = make_sky(8, stars_per_field=300)
    lake = Lake(str(root / "lake"))
    write_reference_catalogs(sky, root / "refcat", seed=8)
    for path in (root / "refcat").glob("*.parquet"):
        lake.write_bytes(f"refcat/{path.name}", path.read_bytes())
    det, _ = simulate_catalogs(sky, SITES, NIGHTS, seed=9, offset_sigma=0.03)
    det = det.drop(columns="true_mag")
    # A few uncatalogued sources (the reference catalogue misses some stars).
    det.loc[det.ref_id.str.endswith("7"), "ref_id"] = ""
    # One frame a night is bad: kept out of light curves.
    publish_catalogs(lake, det, bad_suffix="-03")
    registry = load_registry()
    (root / "sites.yaml").write_text(registry.to_yaml())
    resources = {
        "lake_resource": LakeResource(root=str(root / "lake")),
        "registry_resource": RegistryResource(path=str(root / "sites.yaml")),
        "dask": DaskResource(n_workers=1, processes=False),
    }
    return {"lake": lake, "resources": resources, "det": det}


def run(network, night):
    result = dg.materialize(
        ASSETS,
        partition_key=night,
        resources=network["resources"],
        instance=ephemeral_instance(f"{network['lake'].url}/.."),  # beside the lake
    )
    assert result.success
    return {
        a.key.path[-1]: result.asset_materializations_for_node(a.key.path[-1])[0].metadata
        for a in ASSETS
    }


def all_points(lake):
    return pd.concat(
        [lc_tasks.read_points(lake, t) for t in lc_tasks.all_tiles(lake)], ignore_index=True
    )


def test_nights_fuse_across_sites_and_a_backfill_duplicates_nothing(network):
    lake = network["lake"]
    for night in NIGHTS:
        meta = run(network, night)
    points = all_points(lake)
    det = network["det"]
    good = det[~det.frame_id.str.endswith("-03") & (det.snr >= 5)]
    # Every S/N ≥ 5 detection of a good frame is a point, once; bad frames are left out.
    assert len(points) == len(good)
    assert not points.duplicated(["frame_id", "object_id"]).any()
    assert set(points.night) == set(NIGHTS)
    # Offsets of 0.03 mag per site × night were added: solved and removed, measured on
    # stars held out of the solution (below 5 mmag left).
    assert meta["light_curves"]["site_to_site_residual_before_mag"].value > 0.015
    assert meta["light_curves"]["site_to_site_residual_after_mag"].value < 0.005
    objects_before = pd.concat(
        [lake.read_parquet(p) for p in lake.list("lightcurves/objects", ".parquet")]
    )

    # A backfill of the first night recomputes it without adding a point or an object.
    again = run(network, NIGHTS[0])
    assert again["light_curves"]["n_new_objects"].value == 0
    after = all_points(lake)
    assert len(after) == len(points)
    assert not after.duplicated(["frame_id", "object_id"]).any()
    objects_after = pd.concat(
        [lake.read_parquet(p) for p in lake.list("lightcurves/objects", ".parquet")]
    )
    assert len(objects_after) == len(objects_before)
    assert objects_after.object_id.is_unique

    # Every point is in exactly one fused point (fusion itself: science tests).
    fused = lc_tasks.read_fused(lake)
    assert fused.n_points.sum() == len(after)
    var = lc_tasks.read_variability(lake)
    assert set(var.var_class) <= set(CLASSES)
    assert var.object_id.is_unique
    ranked = lake.read_parquet(f"anomalies/{NIGHTS[0]}/objects.parquet")
    assert ranked["rank"].tolist() == list(range(1, len(ranked) + 1))
    assert again["anomalies"]["anomaly_model"].value == "anomaly/1"


def add_alert_and_quarantine(lake, night):
    """One alert (a real ZTF packet as its packet), its follow-up, one quarantined file."""
    site = "tololo"
    packet = real_data("alerts", "ztf", "472263571115115000.avro")
    path = f"alerts/{site}/{night}/a1.avro"
    lake.write_bytes(path, packet.read_bytes())
    lake.write_parquet(
        lake.manifest("alerts", site, night),
        pd.DataFrame(
            [
                {
                    "alert_id": "a1",
                    "object_kind": "transient",
                    "mag": 17.2,
                    "snr": 25.0,
                    "p_real": 0.97,
                    "rb_model": "real_bogus/3",
                    "packet_path": path,
                }
            ]
        ),
    )
    lake.write_parquet(
        lake.manifest("followup_requests", site, night),
        pd.DataFrame([{"request_id": "r1", "alert_id": "a1", "site": "lapalma", "priority": 1}]),
    )
    lake.write_json(
        lake.quarantine(site, night, "f00d", "json"),
        {"filename": "tololo/broken.fits", "reason": "truncated FITS"},
    )
    # An asteroid's tracklet of three detections, and the site's MPC report.
    hours = np.array([0.0, 1.5, 3.0])
    lake.write_manifest(
        "moving_objects",
        site,
        night,
        pd.DataFrame(
            {
                "alert_id": ["m1", "m2", "m3"],
                "site": site,
                "mjd": 61118.0 + hours / 24,
                "ra": 187.5 - 30 * hours / 3600,
                "dec": -20.0,
                "mag": 18.9,
                "designation": "T00AST1",
                "n_detections": 3,
                "rate_arcsec_per_hour": 30.0,
                "pa_deg": 270.0,
            }
        ),
    )
    lake.write_bytes(lake.mpc_report(site, night), b"COD 807\n")


def test_report_has_every_section_for_a_night_and_for_an_empty_night(network):
    lake = network["lake"]
    add_alert_and_quarantine(lake, NIGHTS[1])
    # All three nights in the store (idempotent if an earlier test put them there), so
    # light curves have the epochs for classes and anomaly ranks.
    for night in (NIGHTS[0], NIGHTS[2]):
        run(network, night)
    meta = run(network, NIGHTS[1])
    html = lake.read_bytes(f"reports/{NIGHTS[1]}/report.html").decode()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html
    assert html.count("data:image/png;base64,") >= 4
    assert meta["nightly_report"]["n_plots"].value >= 4
    md = meta["nightly_report"]["report"].value
    assert all(f"## {title}" in md for title in SECTIONS)
    assert "frame_quality/1" in html
    # Every section has something to show on this night: none says it is empty.
    for empty_text in (
        "No science frames tonight.",
        "No field observed tonight.",
        "No alerts tonight.",
        "No moving objects tonight.",
        "No new variables.",
        "Nothing to rank tonight.",
        "No model ran tonight.",
        "No file quarantined.",
    ):
        assert empty_text not in html
    # The alert's three cutouts are drawn from its packet; its follow-up is listed.
    assert "alt='a1'" in html
    assert "lapalma" in html
    assert "requested" in html
    assert "real_bogus/3" in html
    assert "truncated FITS" in html
    assert "T00AST1" in html
    assert f"mpc/tololo/{NIGHTS[1]}.txt" in html

    empty = run(network, EMPTY_NIGHT)
    html = lake.read_bytes(f"reports/{EMPTY_NIGHT}/report.html").decode()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in html
    assert "No alerts tonight." in html
    assert empty["nightly_report"]["n_frames"].value == 0
    assert empty["light_curves"]["n_points_tonight"].value == 0


def test_nightly_reports_sensor_reads_the_event_log(tmp_path):
    from telescope_assets.defs.lightcurves.sensors import nightly_reports, nightly_requests
    from telescope_assets.defs.partitions import site_night_key

    registry = load_registry()
    (tmp_path / "sites.yaml").write_text(registry.to_yaml())
    instance = ephemeral_instance(tmp_path)
    tonight, earlier = "2026-03-20", "2026-03-19"
    # Early afternoon UTC after the night of the 19th: past the deadline of the 19th
    # (local noon on the 20th at the westernmost site) by less than the 12 h grace;
    # before the deadline of the 20th.
    sites = [registry[n] for n in registry.names]
    now = night_deadline(sites, earlier) + dt.timedelta(hours=1)
    assert now < night_deadline(sites, tonight)
    two = registry.names[:2]

    def record(asset, site, night):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=asset, partition=str(site_night_key(site, night)))
        )

    for night in (tonight, earlier):
        for site in two:
            record("raw_frames", site, night)
    requests, reasons = nightly_requests(instance, registry, now + dt.timedelta(hours=10))
    # Frames arrived but nothing is processed yet: no report for either night.
    assert not requests
    assert any("waiting for processing" in r for r in reasons)

    for night in (tonight, earlier):
        for site in two:
            record("alerts", site, night)
    requests, _ = nightly_requests(instance, registry, now)
    # Tonight the two silent sites may still send frames; the night before they are dark.
    assert [r.partition_key for r in requests] == [earlier]
    assert "dark" in requests[0].tags["telescope/report_reason"]
    # New frames at a site after its alerts: wait until they are processed.
    record("raw_frames", two[0], earlier)
    assert not nightly_requests(instance, registry, now)[0]
    # ... but not forever.
    late, _ = nightly_requests(instance, registry, now + dt.timedelta(hours=12))
    assert [r.partition_key for r in late] == [earlier]

    # The sensor itself, at today's date: nothing recorded for recent nights.
    context = dg.build_sensor_context(
        instance=instance,
        resources={"registry_resource": RegistryResource(path=str(tmp_path / "sites.yaml"))},
    )
    result = nightly_reports(context)
    # Nothing recorded for recent nights; the two March nights received frames since the
    # sensor last looked ("late"): the 20th is processed everywhere it was observed, the
    # 19th still waits for its newest frames.
    assert [r.partition_key for r in result.run_requests] == [tonight]
    assert json.loads(result.cursor)["late"] == [earlier]


def test_a_late_frame_reopens_an_old_nights_report(tmp_path):
    from telescope_assets.defs.lightcurves.sensors import nightly_reports
    from telescope_assets.defs.partitions import site_night_key
    from telescope_assets.tasks.nightly import RECENT_NIGHTS

    registry = load_registry()
    (tmp_path / "sites.yaml").write_text(registry.to_yaml())
    instance = ephemeral_instance(tmp_path)
    old = (dt.date.today() - dt.timedelta(days=RECENT_NIGHTS + 7)).isoformat()
    site = registry.names[0]
    resources = {"registry_resource": RegistryResource(path=str(tmp_path / "sites.yaml"))}

    def record(asset):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=asset, partition=str(site_night_key(site, old)))
        )

    def tick(cursor):
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as c:
            return nightly_reports(c)

    record("raw_frames")  # a frame a week and more late, ingested now
    first = tick(None)
    assert not first.run_requests  # not processed yet: the night is remembered...
    assert old in json.loads(first.cursor)["late"]
    record("alerts")  # ...and once its partition is processed, its report is redone
    second = tick(first.cursor)
    assert [r.partition_key for r in second.run_requests] == [old]
    assert old not in json.loads(second.cursor)["late"]
    assert not tick(second.cursor).run_requests  # once
