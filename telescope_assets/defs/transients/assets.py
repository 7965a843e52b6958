"""References, transient candidates, alerts and cross-site follow-up requests."""

import dagster as dg
import pandas as pd

from telescope_assets import tasks
from telescope_assets.defs.metadata import md_table
from telescope_assets.defs.partitions import site_night, site_nights
from telescope_assets.ops.pools import ALERT_OBJECTS
from telescope_assets.resources import DaskResource, LakeResource, MlflowResource, RegistryResource
from telescope_assets.tasks import alerts as alert_tasks
from telescope_assets.tasks import site_models
from telescope_assets.tasks import transients as transient_tasks

__all__ = ["AlertConfig", "alerts", "reference_images", "transient_candidates"]


#: How long ``reference_images`` waits for earlier nights of its site that are queued or
#: running: ``retries`` × ``seconds`` (5 minutes), then it goes on without their frames.
REFERENCE_WAIT = {"retries": 10, "seconds": 30}

_IN_FLIGHT = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)


def _earlier_runs_in_flight(instance: dg.DagsterInstance, site: str, night: str) -> list[str]:
    """Nights before ``night`` of ``site`` whose runs are queued or running."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=list(_IN_FLIGHT)))
    return transient_tasks.earlier_nights_in_flight(
        [r.tags.get("dagster/partition", "") for r in runs], site, night
    )


#: Columns of the references shown in the UI.
SHOWN_REFERENCES = (
    "field",
    "filter",
    "reference_id",
    "n_frames",
    "frames",
    "seeing_arcsec",
    "status",
)


@dg.asset(
    partitions_def=site_nights,
    group_name="transients",
    kinds={"fits"},
    deps=["calibrated_frames", "source_catalogs", "frame_quality"],
)
def reference_images(
    context: dg.AssetExecutionContext,
    lake_resource: LakeResource,
    registry_resource: RegistryResource,
) -> dg.MaterializeResult:
    """Deep stacks (site, field, filter) of the best frames of earlier nights, for this night.

    One per field and filter observed tonight or usably before (so that it is ready before
    the night's first frame of the field arrives): the sharpest usable frames of earlier nights
    (good or medium quality, WCS and zero point solved, not anomalous), aligned on the
    sharpest frame's refined WCS, scaled to its zero point and stacked with their own
    ``ERR``/``MASK``; the ``FRAMES`` table names them. Content-addressed: rebuilt only when
    better frames exist. The first night of a field has no reference yet. While a run of
    an earlier night of the site is queued or running, the step waits for it (retried,
    ``REFERENCE_WAIT``), then goes on.
    """
    site_name, night = site_night(context)
    lake = lake_resource.get()
    site = registry_resource.get()[site_name]
    waiting = _earlier_runs_in_flight(context.instance, site_name, night)
    if waiting and context.retry_number < REFERENCE_WAIT["retries"]:
        # An earlier night of this site is queued or running (a backfill, a slow copy):
        # its frames may make this night's references, so wait for it, a bounded time.
        context.log.info(f"waiting for earlier nights of {site_name} in flight: {waiting}")
        raise dg.RetryRequested(
            max_retries=REFERENCE_WAIT["retries"], seconds_to_wait=REFERENCE_WAIT["seconds"]
        )
    table = transient_tasks.references_for_night(lake, site, night)
    lake.write_manifest("reference_images", site_name, night, table)
    built = int((table.status == "built").sum()) if len(table) else 0
    return dg.MaterializeResult(
        metadata={
            "earlier_nights_in_flight": ", ".join(waiting) or "none",
            "waited_s": context.retry_number * REFERENCE_WAIT["seconds"],
            "n_references": int((table.reference_id != "").sum()) if len(table) else 0,
            "n_built_now": built,
            "n_without_reference": int((table.reference_id == "").sum()) if len(table) else 0,
            "references": md_table(table[[c for c in SHOWN_REFERENCES if c in table]]),
        }
    )


@dg.asset(
    partitions_def=site_nights,
    group_name="transients",
    kinds={"parquet", "pytorch", "dask"},
    deps=[reference_images, "source_catalogs", "frame_quality", "real_bogus_model"],
    check_specs=[dg.AssetCheckSpec("no_failed_frames", asset="transient_candidates")],
)
def transient_candidates(
    context: dg.AssetExecutionContext,
    lake_resource: LakeResource,
    registry_resource: RegistryResource,
    dask: DaskResource,
    mlflow: MlflowResource,
) -> dg.MaterializeResult:
    """≥ 5σ sources in each frame's difference with its reference, scored by ``real_bogus``.

    Frames of classical quality ``bad`` are not searched (status ``bad_quality``).

    Per frame: align the reference onto the frame, match PSFs (Alard–Lupton kernel), subtract,
    detect; 63×63 science / reference / difference cutouts; the ``real_bogus@champion``
    class probabilities and its version.
    """
    site_name, night = site_night(context)
    lake = lake_resource.get()
    site = registry_resource.get()[site_name]
    # Asked of a worker (no MLflow in this process), once: before any subtraction, say
    # what to do; every candidate is then scored by this version.
    # The site's own champion once it is qualified, else the network's (provisional).
    model = dask.run(site_models.scoring_model, mlflow.tracking_uri, site_name)
    if model is None:
        raise dg.Failure(description=str(mlflow.no_champion("real_bogus")))
    catalogs = lake.read_manifest("source_catalogs", site_name, night)
    quality = lake.read_manifest("frame_quality", site_name, night)
    refs = lake.read_manifest("reference_images", site_name, night)
    # Incremental: a frame whose catalogue and reference are unchanged keeps its
    # difference and, when the champion is the same version, its scores.
    previous = lake.rows_by_frame(lake.manifest("transient_frames", site_name, night))
    todo, kept, skipped = transient_tasks.plan_subtractions(catalogs, quality, refs, previous, lake)
    context.log.info(f"{len(todo)} frames to subtract, {len(kept)} up to date")
    done = dask.map(tasks.Guarded(transient_tasks.difference_pair), todo, lake=lake, site=site)
    if failed := tasks.split_failed(done)[1]:
        context.log.error(tasks.failure_lines(failed))
    frames = pd.DataFrame([*kept, *done, *skipped])
    subtracted = transient_tasks.to_score(kept, done)
    scored = lake.manifest("transient_candidates", site_name, night)  # earlier scores
    # On a dask worker, which keeps the model loaded between runs of a standing cluster.
    table = dask.run(
        alert_tasks.score_frames, subtracted, lake, mlflow.tracking_uri, model["version"],
        scored, model["name"],
    )  # fmt: skip
    if len(table):
        table["provisional"] = model["provisional"]
    lake.write_manifest("transient_candidates", site_name, night, table)
    lake.write_manifest("transient_frames", site_name, night, frames)
    n_real = int((table.rb_class == "real").sum()) if len(table) else 0
    return dg.MaterializeResult(
        metadata={
            "n_frames_subtracted": int((frames.status == "subtracted").sum()) if len(frames) else 0,
            "n_subtracted_now": len(done),
            "n_frames_without_reference": int((frames.status == "no_reference").sum())
            if len(frames)
            else 0,
            "n_frames_bad_quality": int((frames.status == "bad_quality").sum())
            if len(frames)
            else 0,
            "n_frames_failed": int((frames.status == "failed").sum()) if len(frames) else 0,
            "n_candidates": len(table),
            "n_real": n_real,
            "real_bogus_model": f"{model['name']}/{model['version']}",
            "provisional": model["provisional"],
            "frames": md_table(frames.drop(columns=["traceback"], errors="ignore")),
        },
        check_results=[failed_frames_check(frames)],
    )


def failed_frames_check(frames: pd.DataFrame) -> dg.AssetCheckResult:
    """Fails when a frame's subtraction raised: which frame, which step, why."""
    failed = frames[frames.status == "failed"] if len(frames) else frames
    columns = ["frame_id", "step", "reason"]
    return dg.AssetCheckResult(
        check_name="no_failed_frames",
        passed=not len(failed),
        metadata={
            "n_failed": len(failed),
            "failures": md_table(failed[columns] if len(failed) else pd.DataFrame(columns=columns)),
        },
    )


class AlertConfig(dg.Config):
    """Run configuration of ``alerts`` (meaning and defaults: ``AlertThresholds``)."""

    min_real_score: float = alert_tasks.AlertThresholds.min_real_score
    provisional_min_real_score: float = alert_tasks.AlertThresholds.provisional_min_real_score
    min_snr: float = alert_tasks.AlertThresholds.min_snr
    min_star_fraction: float = alert_tasks.AlertThresholds.min_star_fraction


#: Columns of the alerts shown in the UI.
SHOWN_ALERT_COLUMNS = [
    "alert_id",
    "object_id",
    "object_kind",
    "ra",
    "dec",
    "mag",
    "snr",
    "p_real",
    "rb_model",
    "provisional",
    "reference_id",
]


@dg.asset(
    partitions_def=site_nights,
    group_name="transients",
    kinds={"avro", "parquet"},
    deps=[transient_candidates],
    pool=ALERT_OBJECTS,
)
def alerts(
    context: dg.AssetExecutionContext,
    config: AlertConfig,
    lake_resource: LakeResource,
    registry_resource: RegistryResource,
) -> dg.MaterializeResult:
    """Candidates with a real score above the threshold, associated with objects, as Avro.

    Ids are the candidates' (stable across reruns and backfills); a known variable or an
    already-alerted object is recognised by position. One packet per alert (ZTF's shape:
    candidate, previous candidates, gzipped FITS cutouts, scores with model versions) at
    ``alerts/<site>/<night>/<alert_id>.avro``, written once. The ``alert_objects`` pool
    runs one ``alerts`` step at a time, so two sites never create one object twice.
    """
    site_name, night = site_night(context)
    thresholds = alert_tasks.AlertThresholds(**config.model_dump())
    table, n_written = alert_tasks.issue_alerts(
        lake_resource.get(), registry_resource.get()[site_name], night, thresholds
    )
    kinds = table.object_kind.value_counts().to_dict() if len(table) else {}
    show = SHOWN_ALERT_COLUMNS
    return dg.MaterializeResult(
        metadata={
            "n_alerts": len(table),
            "n_packets_written_now": n_written,
            "object_kinds": dg.MetadataValue.json(kinds),
            "min_real_score": config.min_real_score,
            "n_provisional": int(table.provisional.sum()) if len(table) else 0,
            "real_bogus_model": str(table.rb_model.iloc[0]) if len(table) else "",
            "alerts": md_table(table[show] if len(table) else table),
        }
    )
