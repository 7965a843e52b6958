"""The ``nightly_reports`` sensor: a night's report once its observing sites are done.

The decision (deadlines, dark sites, late frames) is ``tasks/nightly.py``; the sensor
reads the event log and turns the decision into run requests.
"""

import datetime as dt
import json
from collections.abc import Iterable

import dagster as dg

from telescope_assets.defs.lightcurves.assets import nightly_job
from telescope_assets.defs.partitions import site_night_key, site_nights
from telescope_assets.resources import RegistryResource
from telescope_assets.tasks.nightly import nights_due

__all__ = ["nightly_reports", "nightly_requests"]

#: ``raw_frames`` materializations read per tick (older nights with late frames).
LATE_BATCH = 1000
#: Most late nights the cursor remembers until their report is redone.
MAX_LATE = 60


def _latest(instance, asset: str, site: str, night: str) -> int | None:
    """Storage id of ``asset``'s newest materialization for ``site`` × ``night``."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(asset), asset_partitions=[str(site_night_key(site, night))]
        ),
        limit=1,
    ).records
    return records[0].storage_id if records else None


@dg.sensor(
    job=nightly_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Launches nightly_job (light curves to the report) for a night once every "
    "site that sent frames is processed through alerts; a site that sent nothing is waited "
    "for until local noon after the night, then reported dark.",
)
def nightly_reports(
    context: dg.SensorEvaluationContext, registry_resource: RegistryResource
) -> dg.SensorResult:
    """Check the latest nights, and older nights that received late frames.

    One run per night and state of its sites. The cursor keeps the last ``raw_frames``
    materialization seen and the late nights whose report is still to be redone, so a
    frame that arrives a week late re-opens its night's light curves and report too.
    """
    state = json.loads(context.cursor) if context.cursor else {}
    after, late = state.get("raw_after"), set(state.get("late", []))
    seen = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("raw_frames"), after_storage_id=after),
        limit=LATE_BATCH,
        ascending=True,
    ).records
    late |= {
        site_nights.get_partition_key_from_str(r.partition_key).keys_by_dimension["night"]
        for r in seen
    }
    after = seen[-1].storage_id if seen else after
    requests, reasons = nightly_requests(
        context.instance, registry_resource.get(), dt.datetime.now(dt.UTC), nights=late
    )
    late -= {r.partition_key for r in requests}
    cursor = json.dumps({"raw_after": after, "late": sorted(late)[-MAX_LATE:]})
    if not requests:
        return dg.SensorResult(skip_reason="; ".join(reasons), cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


def nightly_requests(
    instance, registry, now: dt.datetime, nights: Iterable[str] = ()
) -> tuple[list[dg.RunRequest], list[str]]:
    """The sensor's decision at time ``now``: run requests, and a reason per night.

    The latest nights are checked, and any older ``nights`` given (nights that received
    late frames); see :func:`telescope_assets.tasks.nightly.nights_due`.
    """
    sites = [registry[name] for name in registry.names]
    states = nights_due(
        lambda asset, site, night: _latest(instance, asset, site, night), sites, now, nights
    )
    requests = [
        dg.RunRequest(
            run_key=f"nightly:{state.night}:{state.newest_alerts}",
            partition_key=state.night,
            tags={"telescope/report_reason": state.why},
        )
        for state in states
        if state.ready
    ]
    return requests, [f"{state.night}: {state.why}" for state in states]
