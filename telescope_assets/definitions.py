"""The code location: every asset, check, sensor and job of telescope_assets.

Resources come from the environment (see the README's Environments section); with no
variables set everything is local: the lake and incoming folders under ``data/``.
"""

import os

import dagster as dg

from telescope_assets.defs.catalogs.assets import frame_quality, source_catalogs
from telescope_assets.defs.frames.assets import calibrated_frames, calibration_masters, raw_frames
from telescope_assets.defs.ingest.sensors import new_frames, reconciler
from telescope_assets.defs.jobs import followup_job, frames_job, nightly_job
from telescope_assets.defs.lightcurves.assets import (
    anomalies,
    light_curves,
    nightly_report,
    variability,
)
from telescope_assets.defs.lightcurves.sensors import nightly_reports
from telescope_assets.defs.models.assets import (
    anomaly_model,
    frame_quality_model,
    frame_quality_training_set,
    models_job,
    real_bogus_model,
    real_bogus_training_set,
    weekly_retraining,
)
from telescope_assets.defs.models.sites import (
    site_learning,
    site_models_job,
    site_real_bogus_model,
)
from telescope_assets.defs.transients.assets import (
    alerts,
    followup_requests,
    reference_images,
    transient_candidates,
)
from telescope_assets.defs.transients.sensors import new_alerts
from telescope_assets.ml.registry import DEFAULT_TRACKING_URI
from telescope_assets.resources import (
    DaskResource,
    IncomingResource,
    LakeResource,
    MlflowResource,
    RegistryResource,
)


def resources_from_env() -> dict:
    """Resources configured by environment variables, with local defaults."""
    endpoint = os.environ.get("TELESCOPE_S3_ENDPOINT_URL") or None
    return {
        "lake": LakeResource(
            root=os.environ.get("TELESCOPE_LAKE_URL", "data/lake"), s3_endpoint_url=endpoint
        ),
        "incoming": IncomingResource(
            url=os.environ.get("TELESCOPE_INCOMING_URL", "data/incoming"),
            s3_endpoint_url=endpoint,
            settle_seconds=float(os.environ.get("TELESCOPE_INCOMING_SETTLE_SECONDS", "2")),
        ),
        "registry": RegistryResource(path=os.environ.get("TELESCOPE_ASSETS_REGISTRY") or None),
        "mlflow": MlflowResource(
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI),
            artifact_root=os.environ.get("TELESCOPE_MLFLOW_ARTIFACTS", "models/artifacts"),
        ),
        "dask": DaskResource(
            scheduler_address=os.environ.get("TELESCOPE_DASK_SCHEDULER") or None,
            n_workers=int(os.environ.get("TELESCOPE_DASK_WORKERS", "2")),
        ),
    }


defs = dg.Definitions(
    assets=[
        raw_frames,
        calibration_masters,
        calibrated_frames,
        source_catalogs,
        frame_quality,
        reference_images,
        transient_candidates,
        alerts,
        followup_requests,
        frame_quality_training_set,
        real_bogus_training_set,
        frame_quality_model,
        real_bogus_model,
        anomaly_model,
        site_real_bogus_model,
        light_curves,
        variability,
        anomalies,
        nightly_report,
    ],
    jobs=[frames_job, followup_job, nightly_job, models_job, site_models_job],
    sensors=[new_frames, new_alerts, nightly_reports, reconciler, site_learning],
    schedules=[weekly_retraining],
    resources=resources_from_env(),
    # Runs launched from the UI or a backfill (the implicit asset job) run their steps in
    # one process, as the jobs do: per-frame work is spread by dask, and a process per
    # step would import the code location again for every step.
    executor=dg.in_process_executor,
)
