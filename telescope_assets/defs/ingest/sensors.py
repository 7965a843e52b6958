"""The ``new_frames`` sensor: validate and move new frames, then request partition runs."""

import dagster as dg

from telescope_assets.defs.partitions import night_range, site_night_key
from telescope_assets.ingest import batch_partitions, batches_after, ingest, waiting_files
from telescope_assets.lake import Lake
from telescope_assets.ops.watch import watch, watch_seconds
from telescope_assets.resources import IncomingResource, LakeResource, RegistryResource

__all__ = ["frames_job", "new_frames", "reconciler", "run_requests_for"]

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


def run_requests_for(lake: Lake, batch_ids: list[str]) -> list[dg.RunRequest]:
    """One run per ledger batch and site × night it touched.

    The run key names the batch and the partition, so a daemon that re-evaluates from an
    older cursor after a crash asks for exactly the runs it asked for before, and
    Dagster launches each only once. Runs of one partition never overlap: the instance
    limits the ``dagster/partition`` tag, which Dagster puts on every partitioned run, to
    one run per value (dagster.yaml); ``telescope/partition`` is for filtering in the UI.
    """
    return [
        _partition_request(f"{batch_id}:{site}:{night}", site, night, {"telescope/batch": batch_id})
        for batch_id, site, night in batch_partitions(lake, batch_ids)
    ]


def _partition_request(run_key: str, site: str, night: str, tags: dict) -> dg.RunRequest:
    """A run of ``frames_job`` for one site × night, tagged with what asked for it."""
    return dg.RunRequest(
        run_key=run_key,
        partition_key=site_night_key(site, night),
        tags={**tags, "telescope/site": site, "telescope/partition": f"{site}|{night}"},
    )


@dg.sensor(
    job=frames_job,
    # The daemon visits sensors every 5 s at most; a minimum of 5 s made it skip every
    # other visit whenever a visit came a moment early (up to 10 s to see a frame). In
    # between visits the evaluation itself watches (ops/watch.py).
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Validates files in the drop zone (incoming), moves them into the lake (or "
    "quarantine) and requests a run for every site × night that received frames.",
)
def new_frames(
    context: dg.SensorEvaluationContext,
    incoming: IncomingResource,
    lake_resource: LakeResource,
    registry_resource: RegistryResource,
) -> dg.SensorResult:
    """Ingest a bounded batch, then request runs for every ledger batch after the cursor.

    With nothing to do, it watches the drop zone for a few seconds (``ops/watch.py``)
    and ingests a frame the moment it is there.
    """
    lake = lake_resource.get()
    cursor = context.cursor
    if cursor is None and lake.exists(lake.offline_cursor()):
        cursor = lake.read_json(lake.offline_cursor())["batch_id"]
    drop_zone = incoming.get()
    if not batches_after(lake, cursor):
        watch(lambda: waiting_files(drop_zone, incoming.settle_seconds), watch_seconds())
    result = ingest(
        drop_zone,
        lake,
        registry_resource.get(),
        max_files=incoming.max_files_per_tick,
        settle_seconds=incoming.settle_seconds,
        truncated_grace_seconds=incoming.truncated_grace_seconds,
        night_range=night_range(),
    )
    pending = batches_after(lake, cursor)
    if result.batch_id:
        context.log.info(
            f"batch {result.batch_id}: {len(result.accepted)} accepted, "
            f"{len(result.duplicates)} duplicates, {len(result.quarantined)} quarantined, "
            f"{result.remaining} left for the next tick"
        )
    if not pending:
        return dg.SensorResult(skip_reason="no new frames", cursor=cursor)
    return dg.SensorResult(run_requests=run_requests_for(lake, pending), cursor=pending[-1])


@dg.sensor(
    job=frames_job,
    minimum_interval_seconds=600,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Finds site × night partitions whose raw frames have no complete products "
    "(a run killed between stages, a run never launched) and requests one more run of each.",
)
def reconciler(context: dg.SensorEvaluationContext, lake_resource: LakeResource) -> dg.SensorResult:
    """One run per unfinished partition and state (``tasks/reconcile.py``).

    It also removes the temporary files of writes that never finished (older than an hour).

    The run key names the partition and what was wrong, so one state is requested once:
    a partition whose rerun fails the same way is reported, not retried for ever.
    """
    from telescope_assets.tasks.reconcile import remove_stale_temporaries, unfinished_partitions

    lake = lake_resource.get()
    removed = remove_stale_temporaries(lake, older_than=3600)
    if removed:
        context.log.info(f"removed the temporary files of writes that never finished: {removed}")
    found = unfinished_partitions(lake)
    if found:
        context.log.info("; ".join(f"{item.site} {item.night}: {item.reason}" for item in found))
    requests = [
        _partition_request(
            f"reconcile:{item.site}:{item.night}:{item.state_key}",
            item.site,
            item.night,
            {"telescope/reconcile": item.reason},
        )
        for item in found
    ]
    if not requests:
        return dg.SensorResult(skip_reason="every partition's products are complete")
    return dg.SensorResult(run_requests=requests)
