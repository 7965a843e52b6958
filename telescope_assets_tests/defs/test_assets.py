"""Layer 2: the frame assets invoked directly with a partition context."""

import dagster as dg
import numpy as np
import pytest
from astropy.io import fits

from telescope_assets import tasks
from telescope_assets.defs.frames.assets import (
    CalibrationConfig,
    calibrated_frames,
    calibration_masters,
    raw_frames,
)
from telescope_assets.ingest import ingest
from telescope_assets.resources import DaskResource
from telescope_assets_tests.conftest import NIGHT

SITE = "sutherland"


def _ctx(site=SITE, night=NIGHT):
    return dg.build_asset_context(
        partition_key=dg.MultiPartitionKey({"site": site, "night": night})
    )


def _checks(result: dg.MaterializeResult) -> dict[str, bool]:
    return {c.check_name: c.passed for c in result.check_results}


@pytest.fixture
def ingested(resources, registry):
    ingest(
        resources["incoming"].get(), resources["lake_resource"].get(), registry, max_files=10_000
    )
    return resources


def _run_all(res, config=None, site=SITE, night=NIGHT):
    with _ctx(site, night) as c1, _ctx(site, night) as c2, _ctx(site, night) as c3:
        raw = raw_frames(c1, lake_resource=res["lake_resource"])
        masters = calibration_masters(
            c2, lake_resource=res["lake_resource"], registry_resource=res["registry_resource"]
        )
        cal = calibrated_frames(
            c3,
            config=config or CalibrationConfig(),
            lake_resource=res["lake_resource"],
            registry_resource=res["registry_resource"],
            dask=res["dask"],
        )
    return raw, masters, cal


def test_partition_is_calibrated_with_provenance(ingested, truth_frames):
    raw, masters, cal = _run_all(ingested)
    expected = truth_frames[truth_frames.site == SITE]
    assert raw.metadata["n_frames"] == len(expected)
    assert raw.metadata["n_science"] == (expected.kind == "science").sum()
    assert _checks(masters) == {"masters_sane": True}
    assert cal.metadata["n_calibrated_now"] == (expected.kind == "science").sum()
    assert _checks(cal) == {"every_frame_accounted": True, "no_nan_outside_mask": True}
    lake = ingested["lake_resource"].get()
    table = lake.read_parquet(lake.manifest("calibrated_frames", SITE, NIGHT))
    assert set(table.status) == {"calibrated"}
    with lake.read_fits(table.path.iloc[0]) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "SCI", "ERR", "MASK"]
        h = hdul[0].header
        assert h["L1IDBIAS"].startswith(f"{SITE}-{NIGHT}-bias-")
        assert h["L1IDFLAT"].startswith(f"{SITE}-{NIGHT}-flat_")
        assert h["RAWID"] == table.frame_id.iloc[0]
        assert h["PIPEVER"]
        assert h["CALVER"] == tasks.CALIBRATION_VERSION
        assert hdul["SCI"].data.shape == (256, 256)  # overscan trimmed away
        assert hdul["SCI"].header["CTYPE1"] == "RA---TAN"


def test_rematerialization_processes_only_what_is_new(ingested):
    _run_all(ingested)
    _, masters, again = _run_all(ingested)
    assert again.metadata["n_calibrated_now"] == 0
    assert again.metadata["n_up_to_date"] == 3
    assert masters.metadata["n_made_now"] == 0
    _, _, forced = _run_all(ingested, CalibrationConfig(force=True))
    assert forced.metadata["n_calibrated_now"] == 3


def test_masters_fall_back_to_the_nearest_night(ingested, registry):
    _run_all(ingested)
    lake = ingested["lake_resource"].get()
    empty = tasks.raw_manifest(lake, SITE, "2026-03-25")
    manifest = tasks.build_masters(lake, registry[SITE], "2026-03-25", empty)
    for name in ("bias", "dark", "flat_g", "flat_r"):
        assert manifest[name]["fallback"] is True
        assert manifest[name]["night"] == NIGHT
    # A frame calibrated with fallback masters says so in its header.
    row = tasks.raw_manifest(lake, SITE, NIGHT).query("frame_type == 'science'").iloc[0].to_dict()
    row["night"] = "2026-03-25"
    lake.write_bytes(
        lake.raw(SITE, "2026-03-25", row["frame_id"]),
        lake.read_bytes(lake.raw(SITE, NIGHT, row["frame_id"])),
    )
    out = tasks.calibrate_one(row, lake, registry[SITE], manifest, detect_cosmics=False)
    assert out["status"] == "calibrated"
    with lake.read_fits(out["path"]) as hdul:
        assert hdul[0].header["L1FBBIAS"] is True


def test_no_masters_anywhere_leaves_frames_waiting_and_the_check_fails(ingested, registry):
    lake = ingested["lake_resource"].get()
    for kind in ("bias", "dark"):
        for rel in lake.list(f"raw/{SITE}/{NIGHT}", ".json"):
            if lake.read_json(rel)["frame_type"] == kind:
                lake.delete(rel)
    _, masters, cal = _run_all(ingested)
    assert _checks(masters) == {"masters_sane": False}
    assert cal.metadata["n_waiting_for_masters"] == 3
    assert _checks(cal)["every_frame_accounted"] is False


def test_results_do_not_depend_on_the_number_of_workers(ingested, tmp_path):
    _run_all(ingested)
    lake = ingested["lake_resource"].get()
    table = lake.read_parquet(lake.manifest("calibrated_frames", SITE, NIGHT))
    several = {**ingested, "dask": DaskResource(n_workers=2, processes=True)}
    _run_all(several, CalibrationConfig(force=True))
    table_several = lake.read_parquet(lake.manifest("calibrated_frames", SITE, NIGHT))
    for path in table.path:
        with lake.read_fits(path) as hdul:
            sci, mask = hdul["SCI"].data.copy(), hdul["MASK"].data.copy()
        assert path in set(table_several.path)
        with lake.read_fits(path) as hdul:
            np.testing.assert_array_equal(hdul["SCI"].data, sci)
            np.testing.assert_array_equal(hdul["MASK"].data, mask)
    assert table.sky_median_e.tolist() == table_several.sky_median_e.tolist()


def test_a_frame_that_fails_calibration_is_quarantined_and_the_rest_proceed(ingested, registry):
    lake = ingested["lake_resource"].get()
    science = tasks.raw_manifest(lake, SITE, NIGHT).query("frame_type == 'science'")
    victim = science.frame_id.iloc[0]
    # Replace its bytes with a frame of another camera's shape (disk corruption).
    lake.write_bytes(lake.raw(SITE, NIGHT, victim), _tiny_fits())
    _, _, cal = _run_all(ingested)
    assert cal.metadata["n_quarantined"] == 1
    assert cal.metadata["n_calibrated_now"] == len(science) - 1
    assert _checks(cal)["every_frame_accounted"] is True
    reason = lake.read_json(lake.quarantine(SITE, NIGHT, victim, "json"))
    assert reason["stage"] == "calibration"
    assert reason["reason"] == "calibration_failed"
    assert lake.exists(lake.raw(SITE, NIGHT, victim))  # nothing is lost


def _tiny_fits() -> bytes:
    import io

    buf = io.BytesIO()
    fits.PrimaryHDU(np.ones((10, 10), dtype=np.float32)).writeto(buf)
    return buf.getvalue()


def test_an_empty_catalog_fails_its_check_unless_clouds_explain_it():
    """0 sources is not a success: 'no_stars' is the failure, not its explanation."""
    import pandas as pd

    from telescope_assets.defs.catalogs.assets import _catalog_checks

    def check(flags: str, n_sources: int) -> bool:
        row = {"frame_id": "f1", "filter": "r", "n_sources": n_sources, "wcs_ok": False,
               "astrometric_rms_px": float("nan"), "transparency": float("nan"),
               "quality_flags": flags}  # fmt: skip
        results = {r.check_name: r for r in _catalog_checks(pd.DataFrame([row]))}
        return results["catalogs_not_empty"].passed

    assert not check("no_stars,no_reference_catalog", 0)
    assert not check("wcs_failed", 3)
    assert check("clouds", 4)
    assert check("", 250)


def test_every_processing_option_is_in_the_provenance_keys():
    """Turning cosmic rays off, or changing a site's detection threshold, redoes frames."""
    from dataclasses import replace

    from telescope_assets.registry import load_registry
    from telescope_assets.tasks.catalogs import catalog_provenance

    masters = {k: {"master_id": k + "-1"} for k in ("bias", "dark", "flat_r")}
    with_cr = tasks.calibration_provenance("f1", masters, "r", detect_cosmics=True)
    without = tasks.calibration_provenance("f1", masters, "r", detect_cosmics=False)
    assert with_cr["PROVKEY"] != without["PROVKEY"]
    assert with_cr["L1IDBIAS"] == without["L1IDBIAS"]
    site = load_registry()["tololo"]
    deeper = replace(site, detection_nsigma=2.0)
    assert catalog_provenance("k", site) != catalog_provenance("k", deeper)
    assert catalog_provenance("k", site) == catalog_provenance("k", replace(site))
