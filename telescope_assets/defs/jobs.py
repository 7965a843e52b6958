"""Jobs: what the sensors and the demo launch."""

import dagster as dg

__all__ = ["followup_job", "frames_job", "nightly_job"]

#: Everything per site × night that follows from new frames. In-process: one process
#: per run instead of one per step, which matters for a frame's latency to an alert.
frames_job = dg.define_asset_job(
    "frames_job",
    selection=dg.AssetSelection.groups("frames", "catalogs", "transients"),
    executor_def=dg.in_process_executor,
    # Run monitoring (production instance) fails a run that outlives this, in seconds.
    tags={"dagster/max_runtime": "3600"},
    description="Ingested frames of one site × night to calibrated frames, catalogs, quality, "
    "references, transient candidates and alerts.",
)

#: Launched by the ``new_alerts`` sensor for every new ``alerts`` materialization.
followup_job = dg.define_asset_job(
    "followup_job",
    selection=dg.AssetSelection.groups("followup"),
    executor_def=dg.in_process_executor,
    tags={"dagster/max_runtime": "600"},
    description="Follow-up requests at the other sites for the alerts of one site × night.",
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
