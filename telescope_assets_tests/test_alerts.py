"""Alert packets (compared with real ZTF packets), association and the follow-up planner."""

import datetime as dt
import gzip
import io

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from telescope_assets.lake import Lake
from telescope_assets.registry import load_registry
from telescope_assets.science.ephemeris import airmass
from telescope_assets.tasks import alerts, followup
from telescope_assets_tests.conftest import real_data


def _alert_row(**over):
    row = {
        "alert_id": "f00d-c000",
        "candidate_id": "f00d-c000",
        "object_id": "TA260319abcdef",
        "object_kind": "transient",
        "frame_id": "f00d",
        "site": "tololo",
        "night": "2026-03-19",
        "mjd": 61118.2,
        "filter": "r",
        "field": "F1",
        "x": 100.2,
        "y": 200.7,
        "ra": 150.1,
        "dec": -30.2,
        "mag": 18.3,
        "mag_err": 0.05,
        "flux_ap": 5000.0,
        "fluxerr_ap": 100.0,
        "snr": 50.0,
        "fwhm_px": 3.1,
        "zero_point": 23.4,
        "p_real": 0.98,
        "rb_class": "real",
        "rb_model": "real_bogus/3",
        "reference_id": "ref-0123456789ab",
    }
    return row | over


# ZTF's cutouts have a SIMPLE card astropy finds non-standard; the data read fine.
@pytest.mark.filterwarnings("ignore:Found a SIMPLE card:astropy.io.fits.verify.VerifyWarning")
def test_packet_has_ztf_shape_and_round_trips(tmp_path):
    lake = Lake(str(tmp_path))
    stamps = np.random.default_rng(0).normal(size=(3, 63, 63)).astype(np.float32)
    row = _alert_row()
    previous = [_alert_row(alert_id="beef-c001", mjd=61117.2, mag=18.9)]
    record = alerts.packet(row, stamps, previous, {"p_real": 0.98, "p_cosmic_ray": 0.01})
    path = alerts.packet_path(row)
    assert alerts.write_packet(lake, record, path)
    assert not alerts.write_packet(lake, record, path)  # immutable: written once
    ours = alerts.read_packet(lake.read_bytes(path))
    ztf_dir = real_data("alerts", "ztf")
    ztf_files = sorted(ztf_dir.glob("*.avro"))
    assert ztf_files, f"no ZTF packets in {ztf_dir}"
    for ztf_path in ztf_files:
        ztf = alerts.read_packet(ztf_path.read_bytes())
        # Every top-level field of ZTF's packet is in ours, with the same kind of value.
        assert set(ztf) <= set(ours)
        for key in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
            assert set(ztf[key]) == set(ours[key]) == {"fileName", "stampData"}
            assert ours[key]["fileName"].endswith(".fits.gz")
            assert ztf[key]["fileName"].endswith(".fits.gz")
        shared = {"jd", "ra", "dec", "isdiffpos", "xpos", "ypos", "magap", "sigmagap", "rb", "fwhm"}
        assert shared <= set(ztf["candidate"]) & set(ours["candidate"])
        assert isinstance(ztf["prv_candidates"], list)
        assert isinstance(ours["prv_candidates"], list)
    assert ours["candid"] == "f00d-c000"
    assert ours["objectId"] == "TA260319abcdef"
    assert ours["candidate"]["jd"] == pytest.approx(61118.2 + 2400000.5)
    assert ours["candidate"]["rb"] == pytest.approx(0.98)
    assert ours["model_versions"] == {"real_bogus": "real_bogus/3"}
    assert [p["candid"] for p in ours["prv_candidates"]] == ["beef-c001"]
    # The cutouts are gzipped FITS images, as ZTF's are.
    for key, i in (("cutoutScience", 0), ("cutoutTemplate", 1), ("cutoutDifference", 2)):
        data = fits.getdata(io.BytesIO(gzip.decompress(ours[key]["stampData"])))
        np.testing.assert_allclose(data, stamps[i])
    ztf = alerts.read_packet(ztf_files[0].read_bytes())
    assert fits.getdata(io.BytesIO(gzip.decompress(ztf["cutoutScience"]["stampData"]))).shape == (
        63,
        63,
    )


def test_association_recognises_catalogued_variables_and_earlier_objects():
    refcat = pd.DataFrame(
        {
            "source_id": ["S1", "S2"],
            "ra": [150.0, 150.01],
            "dec": [-30.0, -30.0],
            "variable": [True, False],
        }
    )
    new = pd.DataFrame(
        [
            _alert_row(alert_id="a", ra=150.0 + 0.3 / 3600, dec=-30.0),  # on the variable
            _alert_row(alert_id="b", ra=150.01, dec=-30.0 + 0.5 / 3600),  # on a constant star
            _alert_row(alert_id="c", ra=150.2, dec=-30.1),  # nothing there: new object
        ]
    )
    out, objects = alerts.associate(new, refcat, pd.DataFrame())
    assert out.object_kind.tolist() == ["known_variable", "star", "transient"]
    assert out.object_id.tolist()[:2] == ["S1", "S2"]
    assert out.object_id.iloc[2].startswith("TA260319")
    again = pd.DataFrame(
        [_alert_row(alert_id="d", ra=150.2 + 1 / 3600, dec=-30.1, night="2026-03-20")]
    )
    out2, objects2 = alerts.associate(again, refcat, objects)
    assert out2.object_id.iloc[0] == out.object_id.iloc[2]  # same object, another night
    assert len(objects2) == len(objects) == 3


def test_a_catalogued_star_alerted_again_is_a_variable_by_its_own_history():
    """A dipper is in no catalogue of variables: its second alert makes it one, whatever
    order the nights are processed in (a backfill of the earlier night included)."""
    refcat = pd.DataFrame(
        {"source_id": ["S2"], "ra": [150.01], "dec": [-30.0], "variable": [False]}
    )

    def on_star(alert_id, night, mjd):
        return _alert_row(alert_id=alert_id, ra=150.01, dec=-30.0, night=night, mjd=mjd)

    first = pd.DataFrame([on_star("n1", "2026-03-19", 61118.2)])
    second = pd.DataFrame([on_star("n2", "2026-03-20", 61119.2)])
    out1, objects = alerts.associate(first, refcat, pd.DataFrame())
    out2, objects = alerts.associate(second, refcat, objects)
    assert (out1.object_kind.iloc[0], out2.object_kind.iloc[0]) == ("star", "known_variable")
    rerun1, _ = alerts.associate(first, refcat, objects)  # a rerun of the first night
    assert rerun1.object_kind.iloc[0] == "star"
    # Nights processed in the other order (the first night backfilled later): the same.
    late2, objects = alerts.associate(second, refcat, pd.DataFrame())
    assert late2.object_kind.iloc[0] == "star"  # no history yet when it was processed
    late1, objects = alerts.associate(first, refcat, objects)
    again2, _ = alerts.associate(second, refcat, objects)
    assert (late1.object_kind.iloc[0], again2.object_kind.iloc[0]) == ("star", "known_variable")
    assert objects.first_alert.tolist() == ["n1"]
    # Two alerts of the star in one batch, listed latest first: the earlier one is first.
    batch = pd.concat([second, first], ignore_index=True)
    both, _ = alerts.associate(batch, refcat, pd.DataFrame())
    assert both.object_kind.tolist() == ["known_variable", "star"]


@pytest.mark.parametrize("dec", [-30.0, 60.0])
def test_followup_goes_only_to_sites_that_can_see_the_target(dec):
    reg = load_registry()
    when = dt.datetime(2026, 3, 19, 22, 0, tzinfo=dt.UTC)  # La Palma's night, Chile's evening
    mjd = 40587.0 + when.timestamp() / 86400
    alert = _alert_row(site="lapalma", dec=dec, ra=150.0, mjd=mjd)
    requests, refused = followup.plan_alert(alert, reg, {})
    sites = {r["site"] for r in requests}
    assert "lapalma" not in sites
    assert sites | {r["site"] for r in refused} == set(reg.names) - {"lapalma"}
    for req in requests:
        start = dt.datetime.fromisoformat(req["window_start"])
        end = dt.datetime.fromisoformat(req["window_end"])
        assert start < end
        # Real visibility: the target is above airmass 2 at both ends of the window.
        site = reg[req["site"]]
        assert airmass(site, 150.0, dec, [start, end]).max() < 2.0 + 1e-6
        assert all(30 <= t <= 600 for t in req["exptime"].values())
    if dec == 60.0:
        # +60° never rises above airmass 2 from the southern sites.
        assert sites == set()
        assert {r["reason"] for r in refused} <= {
            "below the horizon all night",
            "airmass ≥ 2.0",
            "night already over",
        }
    else:
        # A southern target at -30°: night in South Africa and Chile; Siding Spring's is over.
        assert sites == {"tololo", "sutherland"}
        assert {r["site"]: r["reason"] for r in refused}["sidingspring"] == "night already over"
        assert sorted(r["priority"] for r in requests) == list(range(1, len(requests) + 1))


def test_exposure_grows_for_fainter_targets():
    site = load_registry()["tololo"]
    times = [followup.exposure_for(site, "r", m, 1.5) for m in (15.0, 18.0, 20.0, 23.0)]
    assert times == sorted(times)
    assert times[0] == 30.0
    assert times[-1] == 600.0


def test_followup_requests_plans_each_alert_once_across_runs(tmp_path):
    """The asset, invoked for one partition as the follow-up job runs it, three times."""
    import dagster as dg

    from telescope_assets.defs.followup.assets import followup_requests
    from telescope_assets.resources import DaskResource, LakeResource, RegistryResource

    lake = Lake(str(tmp_path / "lake"))
    when = dt.datetime(2026, 3, 19, 22, 0, tzinfo=dt.UTC)  # La Palma's night, Chile's evening
    mjd = 40587.0 + when.timestamp() / 86400
    # A target Tololo and Sutherland can see, one nobody in the south can, a known variable.
    rows = [
        _alert_row(alert_id="a1", object_id="o1", site="lapalma", ra=150.0, dec=-30.0, mjd=mjd),
        _alert_row(alert_id="a2", object_id="o2", site="lapalma", ra=150.0, dec=60.0, mjd=mjd),
        _alert_row(alert_id="v1", site="lapalma", object_kind="known_variable"),
    ]
    # Each transient was seen the night before too (a first detection alone is held).
    earlier = [_alert_row(alert_id=f"e{i}", object_id=f"o{i}", mjd=mjd - 1) for i in (1, 2, 3)]
    lake.write_parquet(lake.manifest("alerts", "tololo", "2026-03-18"), pd.DataFrame(earlier))
    manifest = lake.manifest("alerts", "lapalma", "2026-03-19")
    resources = {
        "lake_resource": LakeResource(root=str(tmp_path / "lake")),
        "registry_resource": RegistryResource(),
        "dask": DaskResource(n_workers=1, processes=False),
    }

    def run():
        key = dg.MultiPartitionKey({"site": "lapalma", "night": "2026-03-19"})
        with dg.build_asset_context(partition_key=key) as context:
            return followup_requests(context, **resources).metadata

    lake.write_parquet(manifest, pd.DataFrame(rows[:2]))
    first = run()
    assert first["n_alerts_planned_now"] == 2
    assert first["n_written_now"] == 2  # a1 at Tololo and Sutherland; a2 refused
    requests = lake.read_parquet(lake.manifest("followup_requests", "lapalma", "2026-03-19"))
    assert sorted(requests.request_id) == ["a1@sutherland", "a1@tololo"]
    refused = lake.read_parquet(lake.manifest("followup_refusals", "lapalma", "2026-03-19"))
    assert set(refused.alert_id) == {"a1", "a2"}  # a1 refused by Siding Spring, a2 by all

    # The night goes on: one more alert (a variable star: no follow-up); nothing replanned.
    lake.write_parquet(manifest, pd.DataFrame(rows))
    second = run()
    assert second["n_alerts_planned_now"] == 0
    assert second["n_written_now"] == 0
    again = lake.read_parquet(lake.manifest("followup_requests", "lapalma", "2026-03-19"))
    pd.testing.assert_frame_equal(again, requests)

    # A new transient is planned alone; the earlier requests are kept as they were.
    new = _alert_row(alert_id="a3", object_id="o3", site="lapalma", ra=151.0, dec=-31.0, mjd=mjd)
    # ... and a first detection of a new object, held (an asteroid would be elsewhere next).
    first_seen = _alert_row(
        alert_id="a4", object_id="o4", site="lapalma", ra=151.5, dec=-31.0, mjd=mjd
    )
    lake.write_parquet(manifest, pd.DataFrame([*rows, new, first_seen]))
    third = run()
    assert third["n_alerts_planned_now"] == 2
    after = lake.read_parquet(lake.manifest("followup_requests", "lapalma", "2026-03-19"))
    pd.testing.assert_frame_equal(after.iloc[: len(requests)], requests)
    assert set(after.alert_id) == {"a1", "a3"}
    assert lake.exists(lake.queue("tololo", "a3"))
    refused = lake.read_parquet(lake.manifest("followup_refusals", "lapalma", "2026-03-19"))
    assert refused.set_index("alert_id").reason["a4"].startswith("held: no second detection")
