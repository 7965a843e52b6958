"""Typing on the lake: each alert object's context measured, its class from the champion."""

import numpy as np
import pandas as pd
import pytest

from telescope_assets.lake import Lake
from telescope_assets.ml.train import fit
from telescope_assets.registry import load_registry
from telescope_assets.simulate.typing import typing_examples
from telescope_assets.tasks import typing

NIGHTS = ("2026-03-16", "2026-03-17", "2026-03-18")
MJD0 = 61116.05  # the first night, 01:12 UTC
RA, DEC = 187.5, -20.0
FIELD, REF = "F1230m20", "ref-abc"
ARCSEC = 1 / 3600
COS_DEC = np.cos(np.radians(DEC))


@pytest.fixture(scope="module")
def net():
    """A typing network as good as the gate's (trained here in a few seconds)."""
    return fit("transient_type", typing_examples(6000, seed=3), max_epochs=3)[0]


def _alert(aid, obj, night_index, hours, ra, dec, mag, kind="transient") -> dict:
    return {
        "alert_id": aid, "candidate_id": aid, "object_id": obj, "object_kind": kind,
        "frame_id": f"f-{aid}", "site": "tololo", "night": NIGHTS[night_index],
        "mjd": MJD0 + night_index + hours / 24, "ra": ra, "dec": dec, "mag": mag,
        "mag_err": 0.05, "filter": "r", "field": FIELD, "reference_id": REF,
    }  # fmt: skip


def _sky(lake: Lake, site) -> None:
    """Two galaxies in the reference's sharpest frame, a catalogued variable star."""
    px = site.camera.pixel_scale
    fwhm = 2.0 / px  # the frame's stars: 2″
    catalog = pd.DataFrame(
        {
            "ra": [RA, RA + 0.02, RA - 0.03],
            "dec": [DEC, DEC, DEC],
            # two galaxies and the variable star, measured wider than the frame's stars as
            # bright stars are (their wings): the reference catalogue says it is a star
            "fwhm": [6.0 / px, 5.0 / px, 1.45 * fwhm],
            "snr": [200.0, 150.0, 300.0],
            "mag": [16.5, 17.0, 15.0],
            "ref_id": [None, "", "s1"],
        }
    )
    lake.write_parquet("catalogs/tololo/2026-03-01/f-ref.parquet", catalog)
    lake.write_manifest("source_catalogs", "tololo", "2026-03-01", pd.DataFrame(
        {"frame_id": ["f-ref"], "catalog_path": ["catalogs/tololo/2026-03-01/f-ref.parquet"],
         "fwhm_px": [fwhm]}))  # fmt: skip
    refs = {"field": [FIELD], "filter": ["r"], "reference_id": [REF], "frames": ["f-ref,f-x"]}
    lake.write_manifest("reference_images", "tololo", NIGHTS[2], pd.DataFrame(refs))
    refcat = pd.DataFrame({"source_id": ["s1"], "ra": [RA - 0.03], "dec": [DEC], "r": [15.0],
                           "variable": [True]})  # fmt: skip
    lake.write_parquet(site.reference_catalog.format(field=FIELD), refcat)


def _alerts(lake: Lake) -> None:
    rows = (
        [  # a supernova 1.2″ from the first galaxy's centre (radius 3″), rising
            _alert(f"sn{i}", "obj-sn", i, 2.0, RA + 1.2 * ARCSEC / COS_DEC, DEC, m)
            for i, m in enumerate((19.4, 18.6, 18.0))
        ]
        + [  # a slow transient at the second galaxy's centre
            _alert(f"nu{i}", "obj-nu", i, 3.0, RA + 0.02, DEC + 0.1 * ARCSEC, m)
            for i, m in enumerate((18.9, 18.8, 18.75))
        ]
        + [  # the variable star, varying
            _alert(f"v{i}", "obj-v", i, 1.0, RA - 0.03, DEC, m, "known_variable")
            for i, m in enumerate((17.2, 17.8, 17.1))
        ]
        + [  # an asteroid: three detections of a tracklet tonight, at 40″/h
            _alert(
                f"a{k}", f"obj-a{k}", 2, h, RA + 0.1 - 40 * h * ARCSEC / COS_DEC, DEC - 0.1, 19.0
            )
            for k, h in enumerate((1.0, 1.5, 2.0))
        ]
        + [_alert("u0", "obj-u", 2, 4.0, RA + 0.2, DEC + 0.2, 18.0)]
    )  # nothing near it
    table = pd.DataFrame(rows)
    for night in NIGHTS:
        lake.write_manifest("alerts", "tololo", night, table[table.night == night])
    moving = table[table.object_id.str.startswith("obj-a")].assign(
        tracklet_id="TKa0", rate_arcsec_per_hour=40.0, designation="K26A00a"
    )
    lake.write_manifest("moving_objects", "tololo", NIGHTS[2], moving[
        ["alert_id", "object_id", "mjd", "ra", "dec", "mag", "tracklet_id", "designation",
         "rate_arcsec_per_hour"]])  # fmt: skip


@pytest.fixture
def typed_lake(tmp_path):
    lake, site = Lake(str(tmp_path)), load_registry()["tololo"]
    _sky(lake, site)
    _alerts(lake)
    return lake, site


def test_each_object_gets_its_context_and_its_class(typed_lake, net):
    lake, site = typed_lake
    table = typing.type_alerts(lake, site, NIGHTS[2], net, "transient_type/1").set_index(
        "object_id"
    )
    print(table.drop(columns=["ra", "dec"]).to_string())
    assert len(table) == 7  # one row per object: the latest alert stands for it
    sn = table.loc["obj-sn"]
    assert sn.host_sep_arcsec == pytest.approx(1.2, abs=0.05)
    assert sn.host_radius_arcsec == pytest.approx(3.0)
    assert sn.n_points == 3  # its alerts of all three nights
    assert sn.type_class == "supernova_like"
    assert table.loc["obj-nu", "type_class"] == "nuclear"
    assert table.loc["obj-v", "star_mag"] == 15.0
    assert np.isnan(table.loc["obj-v", "host_sep_arcsec"])  # a star is nobody's host
    assert table.loc["obj-v", "type_class"] == "variable_star"
    assert table.loc["obj-u", "type_class"] == "unknown"
    asteroids = table.loc[["obj-a0", "obj-a1", "obj-a2"]]
    assert (asteroids.type_class == "moving_object").all()
    assert (asteroids.type_source == "rule").all()
    assert (asteroids.p_moving_object == 1.0).all()
    assert (asteroids.n_points == 3).all()  # the tracklet is the light curve
    probs = table[[c for c in table if c.startswith("p_")]].to_numpy(float)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (table.type_model == "transient_type/1").all()
    again = lake.read_manifest("transient_types", "tololo", NIGHTS[2])
    assert len(again) == 7


def test_an_earlier_night_is_typed_with_what_was_known_then(typed_lake, net):
    lake, site = typed_lake
    first = typing.type_alerts(lake, site, NIGHTS[0], net, "transient_type/1")
    sn = first.set_index("object_id").loc["obj-sn"]
    assert sn.n_points == 1  # nights 2 and 3 had not come yet


def test_without_a_champion_only_the_rule_types(typed_lake):
    lake, site = typed_lake
    table = typing.type_alerts(lake, site, NIGHTS[2], None, "none").set_index("object_id")
    assert (table.loc[["obj-a0", "obj-a1", "obj-a2"], "type_class"] == "moving_object").all()
    others = table.drop(index=["obj-a0", "obj-a1", "obj-a2"])
    assert (others.type_class == "unknown").all()
    assert others.p_supernova_like.isna().all()


def test_each_typed_alert_gets_an_annotation_packet(typed_lake, net):
    import io

    import fastavro

    lake, site = typed_lake
    table = typing.type_alerts(lake, site, NIGHTS[2], net, "transient_type/1")
    records = {}
    for path in table.annotation_path:
        (record,) = fastavro.reader(io.BytesIO(lake.read_bytes(path)))
        records[record["objectId"]] = record
    assert set(records) == set(table.object_id)
    sn = records["obj-sn"]
    assert sn["schemavsn"] == typing.ANNOTATION_VERSION
    assert sn["candid"] == "sn2"  # the latest alert
    assert sn["type_class"] == "supernova_like"
    assert sum(sn["type_probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert sn["model_versions"]["transient_type"] == "transient_type/1"
    # three nights rising 0.6–0.8 mag a night: the fit says rising, brighter tomorrow
    assert sn["prediction"]["rate_mag_per_day"] < 0
    assert sn["prediction"]["mag_next_night"] < 18.0
    assert sn["tracklet_id"] is None
    asteroid = records["obj-a1"]
    assert asteroid["tracklet_id"] == "TKa0"
    assert asteroid["rate_arcsec_per_hour"] == 40.0
    assert asteroid["prediction"] is None  # a tracklet's light curve is not a transient's
    assert records["obj-u"]["prediction"] is None  # one detection: nothing to fit


def test_the_nightly_report_has_a_section_per_type_with_light_curves(typed_lake, net):
    from telescope_assets import report

    lake, site = typed_lake
    typing.type_alerts(lake, site, NIGHTS[2], net, "transient_type/1")
    lake.write_bytes(lake.mpc_report("tololo", NIGHTS[2]), b"     K26A00a ...\n")
    sections = {s.title: s for s in report.render(report.gather(lake, NIGHTS[2], ["tololo"]))}
    summary = sections["Transients by type"]
    assert dict(zip(summary.table.type, summary.table.objects, strict=True))["moving_object"] == 3
    sn = sections["Transients: supernova_like"]
    assert list(sn.table.object_id) == ["obj-sn"]
    assert [name for name, _ in sn.images] == ["obj-sn"]  # its light curve, three nights
    assert sn.images[0][1].startswith(b"\x89PNG")
    assert "MPC reports: tololo:" in sections["Transients: moving_object"].text
    assert "Transients: flare" not in sections  # no flare tonight: no section
    models = sections["Model versions used"].table.set_index("model").version
    assert models["transient_type"] == "transient_type/1"
