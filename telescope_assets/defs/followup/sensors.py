"""The ``new_alerts`` sensor: every new ``alerts`` materialization → a follow-up run."""

import dagster as dg

from telescope_assets.defs.followup.assets import followup_job
from telescope_assets.defs.partitions import site_nights
from telescope_assets.ops.watch import watch, watch_seconds
from telescope_assets.tasks.followup import alerts_to_follow

__all__ = ["new_alerts"]

#: Materializations read per tick; the rest wait for the next one (the cursor says where).
BATCH = 100


@dg.sensor(
    job=followup_job,
    minimum_interval_seconds=1,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Requests a follow-up run for every new materialization of `alerts`, read "
    "from the event log after a storage-id cursor (nothing between ticks is dropped).",
)
def new_alerts(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Read ``alerts`` materializations after the cursor, oldest first, in bounded batches.

    With none yet, it watches the event log for a few seconds (``ops/watch.py``).
    """
    after = int(context.cursor) if context.cursor else None

    def fetch():
        return context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("alerts"), after_storage_id=after),
            limit=BATCH,
            ascending=True,
        ).records

    records = watch(fetch, watch_seconds())
    if not records:
        return dg.SensorResult(skip_reason="no new alerts", cursor=context.cursor)
    wanted = alerts_to_follow(
        (r.storage_id, r.partition_key, r.asset_materialization.metadata.get("n_alerts"))
        for r in records
    )
    requests = [_followup_request(storage_id, partition) for storage_id, partition in wanted]
    return dg.SensorResult(run_requests=requests, cursor=str(records[-1].storage_id))


def _followup_request(storage_id: int, partition: str) -> dg.RunRequest:
    """The follow-up run of one ``alerts`` materialization."""
    keys = site_nights.get_partition_key_from_str(partition).keys_by_dimension
    return dg.RunRequest(
        run_key=f"followup:{storage_id}",
        partition_key=partition,
        tags={
            "telescope/alerts_storage_id": str(storage_id),
            # Tagged as the frames runs are (the UI filters by these).
            "telescope/site": keys["site"],
            "telescope/partition": f"{keys['site']}|{keys['night']}",
        },
    )
