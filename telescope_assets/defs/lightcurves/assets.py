"""Light curves fused across sites, variability, anomalies and the nightly report.

All four are partitioned by night (every site together). A night's materialization adds
that night's points to the light-curve store (replacing any earlier run's) and then
refreshes what depends on all nights: offsets, fused curves, variability, rankings.
"""

import dagster as dg

from telescope_assets import plots
from telescope_assets import report as night_report
from telescope_assets.defs.metadata import md_table
from telescope_assets.defs.partitions import nights
from telescope_assets.ops.pools import LIGHT_CURVE_STORE
from telescope_assets.resources import DaskResource, LakeResource, RegistryResource
from telescope_assets.tasks import lightcurves as lc_tasks

__all__ = ["anomalies", "light_curves", "nightly_job", "nightly_report", "variability"]

# A night's partition depends on every site × night partition of that night: Dagster's
# default mapping from a multi-partitioned asset to one of its dimensions.


@dg.asset(
    partitions_def=nights,
    group_name="lightcurves",
    kinds={"parquet", "dask"},
    deps=[
        "source_catalogs",
        "frame_quality",
    ],
    pool=LIGHT_CURVE_STORE,
)
def light_curves(
    context: dg.AssetExecutionContext, lake_resource: LakeResource, dask: DaskResource
) -> dg.MaterializeResult:
    """One light curve per object and filter, across nights and sites, on one system.

    The night's accepted detections (frames of quality good or medium, no saturated or
    edge sources) are cross-matched into objects (reference-catalogue id, else a known
    object within 1.5″, else a new ``TA J…`` object) and written per HEALPix tile. Then
    per site × night × filter zero-point offsets are solved on the common constant stars
    of every night, and each tile's points are fused (30-minute windows,
    inverse-variance, Birge-inflated errors) on the dask cluster. The
    ``light_curve_store`` pool runs one night at a time (the object registry is shared).
    """
    night = context.partition_key
    lake = lake_resource.get()
    info = lc_tasks.ingest_night(lake, night)
    offsets, summary = lc_tasks.refresh_offsets(lake, lc_tasks.unfit_for_offsets(lake))
    tiles = lc_tasks.all_tiles(lake)
    fused_counts = dask.map(lc_tasks.fuse_tile, tiles, lake=lake, offsets=offsets)
    frames = info["frames"]
    tonight = offsets[offsets.night == night] if len(offsets) else offsets
    excluded = frames[~frames.used] if len(frames) else frames
    metadata = {
        "n_points_tonight": info["n_points"],
        "n_objects_tonight": info["n_objects"],
        "n_new_objects": info["n_new_objects"],
        "n_frames_used": int(frames.used.sum()) if len(frames) else 0,
        "n_frames_excluded": len(excluded),
        "excluded_frames": md_table(excluded, 20, ".4g"),
        "tiles_tonight": dg.MetadataValue.json(info["tiles"]),
        "n_tiles": len(tiles),
        "n_fused_points": int(sum(fused_counts)),
        "n_offset_groups": summary["n_groups"],
        "offset_rms_mag": summary["offset_rms"],
        "site_to_site_residual_before_mag": summary["residual_rms_before"],
        "site_to_site_residual_after_mag": summary["residual_rms_after"],
        "offsets_tonight": md_table(tonight, 20, ".4g"),
        "version": lc_tasks.LC_VERSION,
    }
    if len(offsets):
        metadata["offsets_plot"] = dg.MetadataValue.md(
            plots.markdown_image(plots.offsets_plot(offsets), "zero-point offsets")
        )
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    partitions_def=nights,
    group_name="lightcurves",
    kinds={"parquet", "dask"},
    deps=[light_curves],
    pool=LIGHT_CURVE_STORE,
)
def variability(
    context: dg.AssetExecutionContext, lake_resource: LakeResource, dask: DaskResource
) -> dg.MaterializeResult:
    """Per object: χ², robust amplitude, skewness, von Neumann η, a period and a class.

    The period is the best of the Lomb–Scargle peaks, their 1- and 2-day aliases and
    their doubles (box least squares too for eclipse-like curves), with the periodogram's
    false-alarm probability; the class is constant / periodic / eclipsing / irregular,
    or too_few (< 8 epochs); a variable class holds only where the object's χ² also
    stands out from the objects of its brightness (the ensemble). Periods near one
    solar or sidereal day or its harmonics carry ``day_alias``. Recomputed for every
    tile, since a new night changes every light curve's offsets.
    """
    lake = lake_resource.get()
    tiles = lc_tasks.all_tiles(lake)
    table = lc_tasks.write_variability(lake, dask.map(lc_tasks.variability_tile, tiles, lake=lake))
    classes = table.var_class.value_counts().to_dict() if len(table) else {}
    periodic = (
        table[table.var_class.isin(["periodic", "eclipsing"])].sort_values("log_fap")
        if len(table)
        else table
    )
    metadata = {
        "n_objects": len(table),
        "n_day_alias": int((table.day_alias != "").sum()) if len(table) else 0,
        "classes": dg.MetadataValue.json(classes),
        "n_periodic": len(periodic),
        "periodic": md_table(
            periodic[["object_id", "var_class", "period", "fap", "amplitude", "n_epochs"]]
            if len(periodic)
            else periodic,
            20,
            ".4g",
        ),
    }
    if len(periodic):
        top = periodic.iloc[0]
        curve = lc_tasks.read_fused(lake, [int(top.tile)])
        png = plots.phased_light_curve(
            curve[curve.object_id == top.object_id], float(top.period), str(top.object_id)
        )
        metadata["best_period_plot"] = dg.MetadataValue.md(plots.markdown_image(png, "phased"))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    partitions_def=nights,
    group_name="lightcurves",
    kinds={"parquet", "scikitlearn"},
    deps=[
        variability,
        "frame_quality",
        "anomaly_model",
    ],
)
def anomalies(
    context: dg.AssetExecutionContext, lake_resource: LakeResource
) -> dg.MaterializeResult:
    """Objects and frames ranked by how unusual they are.

    Objects: an isolation forest (scikit-learn, 300 trees, fixed seed) on the
    light-curve features of ``variability`` (objects with ≥ 8 epochs). Frames: the
    reconstruction error of the ``anomaly`` autoencoder champion, computed once per
    frame by ``frame_quality``, whose model version is recorded here.
    """
    night = context.partition_key
    lake = lake_resource.get()
    ranked = lc_tasks.rank_anomalies(lc_tasks.read_variability(lake))
    frames = lake.night_table("frame_quality", night)
    if len(frames) and "anomaly_score" in frames:
        frames = frames.sort_values("anomaly_score", ascending=False, na_position="last")
    lake.write_parquet(lake.anomalies(night, "objects"), ranked)
    lake.write_parquet(lake.anomalies(night, "frames"), frames)
    ae_versions = (
        sorted({str(v) for v in frames.anomaly_model.dropna()}) if "anomaly_model" in frames else []
    )
    frame_cols = [
        c
        for c in ("site", "frame_id", "anomaly_score", "anomalous", "quality_class")
        if c in frames
    ]
    obj_cols = [c for c in lc_tasks.ANOMALY_COLUMNS if c in ranked]
    return dg.MaterializeResult(
        metadata={
            "n_objects_ranked": len(ranked),
            "n_frames_ranked": len(frames),
            "isolation_forest": str(ranked.forest.iloc[0]) if len(ranked) else "",
            "anomaly_model": ", ".join(ae_versions) or "none",
            "top_objects": md_table(ranked[obj_cols] if len(ranked) else ranked, 10, ".4g"),
            "top_frames": md_table(frames[frame_cols] if len(frames) else frames, 10, ".4g"),
        }
    )


@dg.asset(
    partitions_def=nights,
    group_name="lightcurves",
    kinds={"html"},
    deps=[
        anomalies,
        "frame_quality",
        "alerts",
        "followup_requests",
    ],
)
def nightly_report(
    context: dg.AssetExecutionContext,
    lake_resource: LakeResource,
    registry_resource: RegistryResource,
) -> dg.MaterializeResult:
    """The morning report of one night, every site: HTML in the lake, Markdown here.

    Frames and quality per site, seeing and transparency through the night, sky
    coverage, alerts with their cutouts and follow-up status, new variables with phased
    light curves, top anomalies, model versions used, quarantined files. Launched by the
    ``nightly_reports`` sensor once every site that observed is processed (a dark site
    is not waited for past the night's deadline).
    """
    night = context.partition_key
    lake = lake_resource.get()
    data = night_report.gather(lake, night, registry_resource.get().names)
    sections = night_report.render(data)
    path = lake.report(night)
    lake.write_bytes(path, night_report.render_html(night, sections).encode())
    n_images = sum(len(s.images) for s in sections)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(lake.full(path)),
            "n_sections": len(sections),
            "n_plots": n_images,
            "n_frames": len(data.quality),
            "n_alerts": len(data.alerts),
            "report": dg.MetadataValue.md(night_report.render_markdown(night, sections)),
            "sites_observed": dg.MetadataValue.json(
                sorted(set(data.quality.site)) if len(data.quality) else []
            ),
        }
    )


#: One night, every site: light curves, variability, anomalies and the report. Launched
#: by the ``nightly_reports`` sensor, by the demo, or as a backfill from the UI.
nightly_job = dg.define_asset_job(
    "nightly_job",
    selection=dg.AssetSelection.groups("lightcurves"),
    executor_def=dg.in_process_executor,
    tags={"dagster/max_runtime": "3600"},
    description="One night across all sites: light curves fused across sites, variability, "
    "anomalies and the nightly report.",
)
