"""Raw frames, calibration masters and calibrated frames of one site and night."""

import dagster as dg
import pandas as pd

from telescope_assets import tasks
from telescope_assets.defs.metadata import md_table
from telescope_assets.defs.partitions import site_night, site_nights
from telescope_assets.resources import DaskResource, LakeResource, RegistryResource

__all__ = ["CalibrationConfig", "calibrated_frames", "calibration_masters", "raw_frames"]


@dg.asset(
    partitions_def=site_nights,
    group_name="frames",
    kinds={"fits", "parquet"},
    check_specs=[dg.AssetCheckSpec("no_quarantined_frames", asset="raw_frames")],
)
def raw_frames(
    context: dg.AssetExecutionContext, lake_resource: LakeResource
) -> dg.MaterializeResult:
    """Every raw frame received from one site in one night, with what its header says."""
    site, night = site_night(context)
    lake = lake_resource.get()
    manifest = tasks.raw_manifest(lake, site, night)
    lake.write_manifest("raw_frames", site, night, manifest)
    quarantined = pd.DataFrame(lake.quarantined(site, night))
    counts = manifest.frame_type.value_counts().to_dict()
    reasons = quarantined.reason.value_counts().to_dict() if len(quarantined) else {}
    return dg.MaterializeResult(
        metadata={
            "n_frames": len(manifest),
            "n_science": counts.get("science", 0),
            "n_bias": counts.get("bias", 0),
            "n_dark": counts.get("dark", 0),
            "n_flat": counts.get("flat", 0),
            "n_quarantined": len(quarantined),
            "quarantine_reasons": dg.MetadataValue.json(reasons),
            "frames": md_table(
                manifest[["frame_id", "frame_type", "filter", "exptime", "date_obs", "object"]]
            ),
            "path": dg.MetadataValue.path(lake.full(lake.manifest("raw_frames", site, night))),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="no_quarantined_frames",
                passed=len(quarantined) == 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={
                    "n_quarantined": len(quarantined),
                    "reasons": dg.MetadataValue.json(reasons),
                },
            )
        ],
    )


@dg.asset(
    partitions_def=site_nights,
    group_name="frames",
    kinds={"fits"},
    deps=[raw_frames],
    check_specs=[dg.AssetCheckSpec("masters_sane", asset="calibration_masters")],
)
def calibration_masters(
    context: dg.AssetExecutionContext,
    lake_resource: LakeResource,
    registry_resource: RegistryResource,
) -> dg.MaterializeResult:
    """Master bias, dark and per-filter flats for one site and night (own or nearest night's)."""
    site_name, night = site_night(context)
    lake = lake_resource.get()
    site = registry_resource.get()[site_name]
    raw = tasks.raw_manifest(lake, site_name, night)
    manifest = tasks.build_masters(lake, site, night, raw)
    table, problems = tasks.calibration.masters_report(manifest, site)
    fallbacks = {n: e["night"] for n, e in manifest.items() if e and e["fallback"]}
    return dg.MaterializeResult(
        metadata={
            "masters": md_table(table),
            "n_made_now": int(sum(bool(e and e["made_now"]) for e in manifest.values())),
            "fallbacks": dg.MetadataValue.json(fallbacks),
            "missing": dg.MetadataValue.json([n for n, e in manifest.items() if e is None]),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="masters_sane",
                passed=not problems,
                metadata={"problems": dg.MetadataValue.json(problems)},
            )
        ],
    )


class CalibrationConfig(dg.Config):
    """Run configuration of ``calibrated_frames``."""

    force: bool = False  # recalibrate every frame, even those already up to date
    detect_cosmics: bool = True


#: Columns of the calibrated frames shown in the UI.
SHOWN_CALIBRATED = ("frame_id", "status", "filter", "sky_median_e", "n_cosmic_ray", "n_saturated")


@dg.asset(
    partitions_def=site_nights,
    group_name="frames",
    kinds={"fits", "dask"},
    deps=[raw_frames, calibration_masters],
    check_specs=[
        dg.AssetCheckSpec("every_frame_accounted", asset="calibrated_frames"),
        dg.AssetCheckSpec("no_nan_outside_mask", asset="calibrated_frames"),
    ],
)
def calibrated_frames(
    context: dg.AssetExecutionContext,
    config: CalibrationConfig,
    lake_resource: LakeResource,
    registry_resource: RegistryResource,
    dask: DaskResource,
) -> dg.MaterializeResult:
    """Bias-, dark- and flat-corrected science frames (SCI, ERR, MASK) of one site and night."""
    site_name, night = site_night(context)
    lake = lake_resource.get()
    site = registry_resource.get()[site_name]
    plan = tasks.calibration.plan_calibration(
        lake, site, night, config.detect_cosmics, force=config.force
    )
    todo, kept, masters = plan.todo, plan.kept, plan.masters
    context.log.info(f"{len(todo)} frames to calibrate, {len(kept)} already up to date")
    done = dask.map(
        tasks.calibrate_one,
        todo,
        lake=lake,
        site=site,
        masters=masters,
        detect_cosmics=config.detect_cosmics,
    )
    table, unaccounted = tasks.calibration.calibrated_table(plan, done)
    lake.write_manifest("calibrated_frames", site_name, night, table)
    status = table.status.value_counts().to_dict()
    nan_counts = table["n_nan_unmasked"] if "n_nan_unmasked" in table else 0 * table.index
    nan_frames = table[pd.Series(nan_counts, index=table.index).fillna(0) > 0]
    return dg.MaterializeResult(
        metadata={
            "n_science_frames": len(plan.science),
            "n_calibrated_now": sum(r["status"] == "calibrated" for r in done),
            "n_up_to_date": len(kept),
            "n_quarantined": status.get("quarantined", 0),
            "n_waiting_for_masters": status.get("waiting_for_masters", 0),
            "masters": dg.MetadataValue.json(
                {k: (v["master_id"] if v else None) for k, v in masters.items()}
            ),
            "frames": md_table(table[[c for c in SHOWN_CALIBRATED if c in table]]),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="every_frame_accounted",
                passed=not unaccounted,
                metadata={
                    "unaccounted": dg.MetadataValue.json(unaccounted),
                    "by_status": dg.MetadataValue.json(status),
                },
            ),
            dg.AssetCheckResult(
                check_name="no_nan_outside_mask",
                passed=nan_frames.empty,
                metadata={
                    "frames_with_unmasked_nan": dg.MetadataValue.json(nan_frames.frame_id.tolist())
                },
            ),
        ],
    )
