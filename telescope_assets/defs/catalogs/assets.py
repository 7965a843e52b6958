"""Source catalogs and classical frame-quality metrics of one site and night."""

import dagster as dg
import numpy as np
import pandas as pd

from telescope_assets import tasks
from telescope_assets.defs.metadata import md_table
from telescope_assets.defs.partitions import site_night, site_nights
from telescope_assets.plots import markdown_image, night_quality_plot
from telescope_assets.resources import DaskResource, LakeResource, MlflowResource, RegistryResource

__all__ = ["ASTROMETRIC_RMS_LIMIT_PX", "CatalogConfig", "frame_quality", "source_catalogs"]

#: A frame whose refined WCS leaves more than this RMS (pixels) fails the check.
ASTROMETRIC_RMS_LIMIT_PX = 0.25
#: Zero-point scatter (mag) within a night, site and filter above which the check warns.
ZP_SCATTER_LIMIT = 0.1
#: A catalogued frame with fewer sources fails ``catalogs_not_empty`` unless it is cloudy.
MIN_SOURCES = 10


class CatalogConfig(dg.Config):
    """Run configuration of ``source_catalogs``."""

    force: bool = False  # re-catalogue every frame, even those up to date


@dg.asset(
    partitions_def=site_nights,
    group_name="catalogs",
    kinds={"parquet", "dask"},
    deps=["calibrated_frames"],
    check_specs=[
        dg.AssetCheckSpec("astrometric_rms", asset="source_catalogs"),
        dg.AssetCheckSpec("zero_point_scatter", asset="source_catalogs"),
        dg.AssetCheckSpec("catalogs_not_empty", asset="source_catalogs"),
        dg.AssetCheckSpec("no_failed_frames", asset="source_catalogs"),
    ],
)
def source_catalogs(
    context: dg.AssetExecutionContext,
    config: CatalogConfig,
    lake_resource: LakeResource,
    registry_resource: RegistryResource,
    dask: DaskResource,
) -> dg.MaterializeResult:
    """Detected sources with positions, aperture fluxes, calibrated magnitudes, shapes and flags."""
    site_name, night = site_night(context)
    lake = lake_resource.get()
    site = registry_resource.get()[site_name]
    calibrated = lake.read_manifest("calibrated_frames", site_name, night)
    calibrated = calibrated[calibrated.status == "calibrated"] if len(calibrated) else calibrated
    previous = lake.rows_by_frame(lake.manifest("source_catalogs", site_name, night))
    todo, kept = tasks.split_up_to_date(
        calibrated.to_dict("records"),
        previous,
        lambda row: tasks.catalogs.catalog_provenance(row["provkey"], site),
        lake,
        "catalog_path",
        force=config.force,
    )
    context.log.info(f"{len(todo)} frames to catalogue, {len(kept)} up to date")
    results = dask.map(tasks.Guarded(tasks.catalog_one), todo, lake=lake, site=site)
    done, failed = tasks.split_failed(results)
    if failed:
        context.log.error(tasks.failure_lines(failed))
    # Failed frames are kept apart (retried by the next run), so that every row of the
    # catalogue table is a catalogued frame.
    failures = pd.DataFrame(failed, columns=tasks.FAILED_COLUMNS)
    lake.write_manifest("source_catalogs_failed", site_name, night, failures)
    table = pd.DataFrame([*kept, *done])
    if len(table):
        table = table.sort_values("mjd", ignore_index=True)
    lake.write_manifest("source_catalogs", site_name, night, table)
    n_rows = int(table.n_sources.sum()) if len(table) else 0
    # Drawn on a worker, where matplotlib stays imported (0.7 s in a run's fresh process).
    plot = dask.run(night_quality_plot, table) if len(table) else None
    checks = [*_catalog_checks(table), _failed_check(failures)]
    summary = [
        "frame_id",
        "filter",
        "n_sources",
        "seeing_arcsec",
        "zero_point",
        "zero_point_err",
        "astrometric_rms_px",
        "quality_flags",
    ]
    return dg.MaterializeResult(
        metadata={
            "n_frames": len(table),
            "n_catalogued_now": len(done),
            "n_failed": len(failures),
            "n_sources": n_rows,
            "median_zero_point": _median(table, "zero_point"),
            "median_seeing_arcsec": _median(table, "seeing_arcsec"),
            "median_astrometric_rms_px": _median(table, "astrometric_rms_px"),
            "frames": md_table(table[summary] if len(table) else table, 40),
            "plot": dg.MetadataValue.md(markdown_image(plot, "night"))
            if plot is not None
            else dg.MetadataValue.md("_(no frames)_"),
        },
        check_results=checks,
    )


def _failed_check(failures: pd.DataFrame) -> dg.AssetCheckResult:
    """Fails when a frame's cataloguing raised: which frame, which step, why."""
    return dg.AssetCheckResult(
        check_name="no_failed_frames",
        passed=failures.empty,
        metadata={
            "n_failed": len(failures),
            "failures": md_table(failures[["frame_id", "step", "reason"]]),
        },
    )


def _median(table: pd.DataFrame, column: str) -> float:
    if not len(table) or column not in table:
        return float("nan")
    return (
        float(np.nanmedian(table[column].astype(float)))
        if table[column].notna().any()
        else float("nan")
    )


def _catalog_checks(table: pd.DataFrame) -> list[dg.AssetCheckResult]:
    if not len(table):
        empty = {"n_frames": 0}
        return [
            dg.AssetCheckResult(check_name=n, passed=True, metadata=empty)
            for n in ("astrometric_rms", "zero_point_scatter", "catalogs_not_empty")
        ]
    with_ref = table[~table.quality_flags.str.contains("no_reference_catalog")]
    bad_astrom = with_ref[
        ~with_ref.wcs_ok | (with_ref.astrometric_rms_px > ASTROMETRIC_RMS_LIMIT_PX)
    ]
    scatter = tasks.catalogs.zero_point_scatter(table)
    # Clouds explain an almost empty frame; nothing else does: "no_stars" *is* the
    # failure (a threshold or a cosmic-ray cleaning wrong for this camera), and a missing
    # reference catalogue or WCS does not remove sources.
    explained = table.quality_flags.str.contains("clouds")
    empty = table[(table.n_sources < MIN_SOURCES) & ~explained]
    return [
        dg.AssetCheckResult(
            check_name="astrometric_rms",
            passed=bad_astrom.empty,
            metadata={
                "limit_px": ASTROMETRIC_RMS_LIMIT_PX,
                "max_rms_px": _max(with_ref, "astrometric_rms_px"),
                "failed_frames": dg.MetadataValue.json(bad_astrom.frame_id.tolist()),
            },
        ),
        dg.AssetCheckResult(
            check_name="zero_point_scatter",
            passed=all(v <= ZP_SCATTER_LIMIT for v in scatter.values()),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "limit_mag": ZP_SCATTER_LIMIT,
                "scatter_by_filter": dg.MetadataValue.json(scatter),
            },
        ),
        dg.AssetCheckResult(
            check_name="catalogs_not_empty",
            passed=empty.empty,
            metadata={
                "min_sources": MIN_SOURCES,
                "unexplained_empty_frames": dg.MetadataValue.json(empty.frame_id.tolist()),
            },
        ),
    ]


def _max(table: pd.DataFrame, column: str) -> float:
    values = table[column].astype(float) if len(table) else pd.Series(dtype=float)
    return float(values.max()) if values.notna().any() else float("nan")


@dg.asset(
    partitions_def=site_nights,
    group_name="catalogs",
    kinds={"parquet", "pytorch", "dask"},
    deps=[source_catalogs, "frame_quality_model", "anomaly_model"],
    check_specs=[dg.AssetCheckSpec("cnn_flags_agree_with_measurements", asset="frame_quality")],
)
def frame_quality(
    context: dg.AssetExecutionContext,
    lake_resource: LakeResource,
    mlflow: MlflowResource,
    dask: DaskResource,
) -> dg.MaterializeResult:
    """Seeing, transparency, depth, defects, CNN class and anomaly score of every frame."""
    site_name, night = site_night(context)
    lake = lake_resource.get()
    table = tasks.quality.classify_frames(lake.read_manifest("source_catalogs", site_name, night))
    # On a dask worker: a standing cluster keeps the models loaded between runs.
    scored = dask.run(tasks.quality.score_frames, table, lake, mlflow.tracking_uri)
    if scored["cnn_version"] is None:
        raise dg.Failure(description=str(mlflow.no_champion("frame_quality")))
    cnn_version, ae_version = scored["cnn_version"], scored["ae_version"]
    # The anomaly score is an addition: without an autoencoder champion (none has met
    # its target yet) frames are still classified, and the metadata says so.
    if ae_version == "none":
        context.log.warning("model 'anomaly' has no champion: frames get no anomaly score")
    out = tasks.quality.quality_table(scored)
    shown = tasks.quality.QUALITY_COLUMNS
    lake.write_manifest("frame_quality", site_name, night, out)
    counts = out.quality_class.value_counts().to_dict() if len(out) else {}
    cnn_counts = out.cnn_class.value_counts().to_dict() if "cnn_class" in out else {}
    agreement, disagreeing = tasks.quality.flag_agreement(out)
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(
                check_name="cnn_flags_agree_with_measurements",
                passed=not disagreeing,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "n_frames_disagreeing": len(disagreeing),
                    "disagreements": dg.MetadataValue.json(disagreeing[:20]),
                    "per_flag": dg.MetadataValue.json(agreement),
                },
            )
        ],
        metadata={
            "flag_agreement": dg.MetadataValue.json(agreement),
            "n_frames": len(out),
            "n_good": counts.get("good", 0),
            "n_medium": counts.get("medium", 0),
            "n_bad": counts.get("bad", 0),
            "cnn_classes": dg.MetadataValue.json(cnn_counts),
            "n_anomalous": int(out.anomalous.fillna(False).astype(bool).sum())
            if "anomalous" in out
            else 0,
            "frame_quality_model": f"frame_quality/{cnn_version}",
            "anomaly_model": f"anomaly/{ae_version}",
            "median_seeing_arcsec": _median(out, "seeing_arcsec"),
            "median_transparency": _median(out, "transparency"),
            "frames": md_table(out[[c for c in shown if c in out]] if len(out) else out, 40),
        },
    )
