"""Layer 4: the real code location loads with the expected objects; layers stay pure."""

import ast
from pathlib import Path

import dagster as dg

import telescope_assets
from telescope_assets.definitions import defs

PACKAGE = Path(telescope_assets.__file__).parent


def test_code_location_has_the_expected_assets_checks_sensors_and_jobs():
    graph = defs.resolve_asset_graph()
    assets = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert assets == {
        "raw_frames",
        "calibration_masters",
        "calibrated_frames",
        "source_catalogs",
        "frame_quality",
        "frame_quality_training_set",
        "real_bogus_training_set",
        "frame_quality_model",
        "real_bogus_model",
        "anomaly_model",
        "site_real_bogus_model",
        "reference_images",
        "transient_candidates",
        "alerts",
        "followup_requests",
        "light_curves",
        "variability",
        "anomalies",
        "nightly_report",
    }
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert checks == {
        ("raw_frames", "no_quarantined_frames"),
        ("calibration_masters", "masters_sane"),
        ("calibrated_frames", "every_frame_accounted"),
        ("calibrated_frames", "no_nan_outside_mask"),
        ("source_catalogs", "astrometric_rms"),
        ("source_catalogs", "zero_point_scatter"),
        ("source_catalogs", "catalogs_not_empty"),
        ("source_catalogs", "no_failed_frames"),
        ("transient_candidates", "no_failed_frames"),
        ("frame_quality", "cnn_flags_agree_with_measurements"),
        ("frame_quality_model", "champion_meets_target"),
        ("real_bogus_model", "champion_meets_target"),
        ("anomaly_model", "champion_meets_target"),
        ("site_real_bogus_model", "site_qualified"),
    }
    assert defs.resolve_sensor_def("new_frames").job_name == "frames_job"
    assert defs.resolve_sensor_def("reconciler").job_name == "frames_job"
    job = defs.resolve_job_def("frames_job")
    assert job.partitions_def is not None
    dims = {d.name for d in job.partitions_def.partitions_defs}
    assert dims == {"site", "night"}
    # Lineage: calibrated frames stand on masters, which stand on raw frames.
    parents = graph.get(dg.AssetKey("calibrated_frames")).parent_keys
    assert parents == {dg.AssetKey("raw_frames"), dg.AssetKey("calibration_masters")}
    assert graph.get(dg.AssetKey("calibration_masters")).parent_keys == {dg.AssetKey("raw_frames")}
    assert graph.get(dg.AssetKey("source_catalogs")).parent_keys == {
        dg.AssetKey("calibrated_frames")
    }
    assert graph.get(dg.AssetKey("frame_quality")).parent_keys == {
        dg.AssetKey("source_catalogs"),
        dg.AssetKey("frame_quality_model"),
        dg.AssetKey("anomaly_model"),
    }
    assert graph.get(dg.AssetKey("anomaly_model")).parent_keys == {
        dg.AssetKey("frame_quality_training_set")
    }
    # Each alert's lineage reaches back to its raw frame, the reference and the model.
    assert graph.get(dg.AssetKey("transient_candidates")).parent_keys == {
        dg.AssetKey("reference_images"),
        dg.AssetKey("source_catalogs"),
        dg.AssetKey("frame_quality"),
        dg.AssetKey("real_bogus_model"),
    }
    assert graph.get(dg.AssetKey("alerts")).parent_keys == {dg.AssetKey("transient_candidates")}
    assert graph.get(dg.AssetKey("followup_requests")).parent_keys == {dg.AssetKey("alerts")}
    assert defs.resolve_sensor_def("new_alerts").job_name == "followup_job"
    # Light curves: one night, every site; the report sees alerts and follow-up too.
    assert graph.get(dg.AssetKey("light_curves")).parent_keys == {
        dg.AssetKey("source_catalogs"),
        dg.AssetKey("frame_quality"),
    }
    assert graph.get(dg.AssetKey("anomalies")).parent_keys == {
        dg.AssetKey("variability"),
        dg.AssetKey("frame_quality"),
        dg.AssetKey("anomaly_model"),
    }
    assert graph.get(dg.AssetKey("nightly_report")).parent_keys == {
        dg.AssetKey("anomalies"),
        dg.AssetKey("frame_quality"),
        dg.AssetKey("alerts"),
        dg.AssetKey("followup_requests"),
    }
    nightly = defs.resolve_job_def("nightly_job")
    assert isinstance(nightly.partitions_def, dg.DailyPartitionsDefinition)
    assert defs.resolve_sensor_def("nightly_reports").job_name == "nightly_job"
    assert defs.resolve_job_def("models_job") is not None
    # Each site's own real/bogus: one partition per site, from every night of the site.
    site_model = dg.AssetKey("site_real_bogus_model")
    assert graph.get(site_model).parent_keys == {
        dg.AssetKey("transient_candidates"),
        dg.AssetKey("real_bogus_model"),
    }
    assert isinstance(graph.get(site_model).partitions_def, dg.StaticPartitionsDefinition)
    assert defs.resolve_sensor_def("site_learning").job_name == "site_models_job"
    schedule = defs.resolve_schedule_def("weekly_retraining")
    assert schedule.cron_schedule == "0 12 * * 1"
    assert schedule.job_name == "models_job"


def test_every_asset_has_a_one_sentence_description_and_group():
    for key in defs.resolve_asset_graph().get_all_asset_keys():
        node = defs.resolve_asset_graph().get(key)
        assert node.description
        assert node.description.endswith(".")
        assert node.group_name in {
            "frames",
            "catalogs",
            "transients",
            "followup",
            "training",
            "models",
            "site_models",
            "lightcurves",
        }


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_science_ml_and_simulate_never_import_dagster():
    checked = 0
    for layer in ("science", "ml", "simulate"):
        for path in (PACKAGE / layer).rglob("*.py"):
            assert "dagster" not in _imports(path), f"{path} imports dagster"
            checked += 1
    # The plain modules that dask workers run are pure too.
    for name in (
        "lake.py",
        "tasks/calibration.py",
        "tasks/catalogs.py",
        "ingest.py",
        "registry/__init__.py",
    ):
        assert "dagster" not in _imports(PACKAGE / name)
        checked += 1
    assert checked >= 10
