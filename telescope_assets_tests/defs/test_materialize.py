"""Layer 3: a partition materialized on an ephemeral instance and on real PostgreSQL."""

import dagster as dg
import pytest

from telescope_assets.defs.catalogs.assets import frame_quality, source_catalogs
from telescope_assets.defs.frames.assets import calibrated_frames, calibration_masters, raw_frames
from telescope_assets.defs.models.assets import anomaly_model, frame_quality_model
from telescope_assets.ingest import ingest
from telescope_assets_tests.conftest import NIGHT, ephemeral_instance

ASSETS = [raw_frames, calibration_masters, calibrated_frames, source_catalogs, frame_quality]


def _materialize(resources, registry, instance, site="tololo"):
    ingest(
        resources["incoming"].get(), resources["lake_resource"].get(), registry, max_files=10_000
    )
    key = dg.MultiPartitionKey({"site": site, "night": NIGHT})
    # The models are upstream (trained elsewhere): present, not materialized here.
    models = [anomaly_model.to_source_asset(), frame_quality_model.to_source_asset()]
    return dg.materialize(
        [*ASSETS, *models], partition_key=key, resources=resources, instance=instance
    )


def test_partition_materializes_on_an_ephemeral_instance(resources, registry, tmp_path):
    instance = ephemeral_instance(tmp_path)
    result = _materialize(resources, registry, instance)
    assert result.success
    mats = result.asset_materializations_for_node("calibrated_frames")
    assert mats[0].partition == dg.MultiPartitionKey({"site": "tololo", "night": NIGHT})
    assert mats[0].metadata["n_calibrated_now"].value == 3
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    blocking = {n for n, e in evaluations.items() if e.severity == dg.AssetCheckSeverity.ERROR}
    assert blocking >= {
        "masters_sane",
        "every_frame_accounted",
        "no_nan_outside_mask",
        "astrometric_rms",
        "catalogs_not_empty",
        "no_failed_frames",
    }
    assert all(evaluations[n].passed for n in blocking)
    cat = result.asset_materializations_for_node("source_catalogs")[0].metadata
    assert cat["n_frames"].value == 3
    assert cat["n_sources"].value > 50
    assert cat["median_astrometric_rms_px"].value < 0.25
    assert "data:image/png;base64," in cat["plot"].value
    quality = result.asset_materializations_for_node("frame_quality")[0].metadata
    assert quality["n_good"].value + quality["n_medium"].value + quality["n_bad"].value == 3
    # The consumer records which model versions it used, in metadata and in its table.
    assert quality["frame_quality_model"].value == "frame_quality/1"
    assert quality["anomaly_model"].value == "anomaly/1"
    lake = resources["lake_resource"].get()
    table = lake.read_parquet(lake.manifest("frame_quality", "tololo", NIGHT))
    assert set(table.cnn_model) == {"frame_quality/1"}
    assert set(table.cnn_class) <= {"good", "medium", "bad"}
    assert table[["p_good", "p_medium", "p_bad"]].astype(float).sum(axis=1).round(5).eq(1).all()


def test_a_frame_that_fails_its_cataloguing_is_reported_and_the_others_go_on(
    resources, registry, tmp_path
):
    """A calibrated frame damaged in the lake after calibration (here: its pixels
    replaced by bytes that are no FITS): that frame's cataloguing raises; the night's
    other frames are catalogued, the failure is a row naming the step, its stage and the error,
    and the check fails. Before, the whole step failed on the one frame."""
    instance = ephemeral_instance(tmp_path)
    first = _materialize(resources, registry, instance)
    assert first.success
    lake = resources["lake_resource"].get()
    calibrated = lake.read_parquet(lake.manifest("calibrated_frames", "tololo", NIGHT))
    victim = calibrated.frame_id.iloc[0]
    lake.write_bytes(calibrated.path.iloc[0], b"not a FITS file" * 100)
    key = dg.MultiPartitionKey({"site": "tololo", "night": NIGHT})
    again = dg.materialize(
        [source_catalogs, calibrated_frames.to_source_asset()],
        partition_key=key,
        resources=resources,
        instance=instance,
        run_config={"ops": {"source_catalogs": {"config": {"force": True}}}},
    )
    assert again.success
    failures = lake.read_parquet(lake.manifest("source_catalogs_failed", "tololo", NIGHT))
    assert failures.frame_id.tolist() == [victim]
    assert failures.step.iloc[0] == "catalog_one.read_frame"  # the stage that failed
    assert failures.reason.iloc[0].startswith("OSError: No SIMPLE card found")
    catalogs = lake.read_parquet(lake.manifest("source_catalogs", "tololo", NIGHT))
    assert sorted(catalogs.frame_id) == sorted(set(calibrated.frame_id) - {victim})
    check = {e.check_name: e for e in again.get_asset_check_evaluations()}["no_failed_frames"]
    assert not check.passed
    assert victim in check.metadata["failures"].value


@pytest.mark.postgres
def test_partition_materializes_on_postgres_through_dagster_postgres(
    resources, registry, postgres_url
):
    import psycopg2

    overrides = {"storage": {"postgres": {"postgres_url": postgres_url}}}
    with dg.instance_for_test(overrides=overrides) as instance:
        assert type(instance.event_log_storage).__module__.startswith("dagster_postgres")
        result = _materialize(resources, registry, instance, site="lapalma")
        assert result.success
        records = instance.fetch_materializations(dg.AssetKey("calibrated_frames"), limit=5).records
        assert len(records) == 1
        assert records[0].partition_key == dg.MultiPartitionKey({"site": "lapalma", "night": NIGHT})
    # The events really are rows in that PostgreSQL database.
    dsn = postgres_url.replace("postgresql+psycopg2://", "postgresql://")
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        )
        assert cur.fetchone()[0] == 5


def test_a_night_of_only_quarantined_files_is_reported_by_its_run(resources, registry, tmp_path):
    """A partition that received nothing but a bad file: its run's check fails, saying why."""
    incoming, lake = resources["incoming"].get(), resources["lake_resource"].get()
    for rel in incoming.list("", recursive=True):
        incoming.delete(rel)
    incoming.write_bytes("tololo/garbage.fits", b"not a FITS file at all" * 200)
    result = ingest(incoming, lake, registry, max_files=10_000)
    ((site, night),) = result.partitions
    models = [anomaly_model.to_source_asset(), frame_quality_model.to_source_asset()]
    run = dg.materialize(
        [*ASSETS, *models],
        partition_key=dg.MultiPartitionKey({"site": site, "night": night}),
        resources=resources,
        instance=ephemeral_instance(tmp_path),
        raise_on_error=False,
    )
    assert run.success  # nothing else to do, nothing fails
    raw = run.asset_materializations_for_node("raw_frames")[0].metadata
    assert raw["n_quarantined"].value == 1
    assert raw["quarantine_reasons"].value == {result.quarantined[0]["reason"]: 1}
    (check,) = [
        e for e in run.get_asset_check_evaluations() if e.check_name == "no_quarantined_frames"
    ]
    assert not check.passed
