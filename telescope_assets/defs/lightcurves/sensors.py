"""The ``nightly_reports`` sensor: a night's report once its observing sites are done."""

import datetime as dt
import json
import zoneinfo
from collections.abc import Iterable

import dagster as dg

from telescope_assets.defs.lightcurves.assets import nightly_job
from telescope_assets.defs.partitions import site_night_key, site_nights
from telescope_assets.registry import Site
from telescope_assets.resources import RegistryResource

__all__ = ["night_deadline", "nightly_reports", "nightly_requests", "report_ready"]

#: How many of the latest nights a tick looks at.
RECENT_NIGHTS = 3
#: ``raw_frames`` materializations read per tick (older nights with late frames).
LATE_BATCH = 1000
#: Most late nights the cursor remembers until their report is redone.
MAX_LATE = 60
#: How long after the deadline a site whose frames are still unprocessed is waited for.
STUCK_GRACE = dt.timedelta(hours=12)


def night_deadline(sites: list[Site], night: str, hour: int = 12) -> dt.datetime:
    """When the last site's night of ``night`` is surely over: local noon the next day.

    A site with no frames by then is taken as dark (clouded out or down) for the night.
    """
    date = dt.date.fromisoformat(night) + dt.timedelta(days=1)
    return max(
        dt.datetime.combine(date, dt.time(hour), zoneinfo.ZoneInfo(s.timezone)).astimezone(dt.UTC)
        for s in sites
    )


def report_ready(
    registered: list[str],
    observed: set[str],
    processed: set[str],
    now: dt.datetime,
    deadline: dt.datetime,
) -> tuple[bool, str]:
    """Whether a night's report can be made, and why (not).

    Parameters
    ----------
    registered : list of str
        Every site of the network.
    observed : set of str
        Sites that sent frames for the night.
    processed : set of str
        Sites whose newest frames have been processed through ``alerts``.
    """
    if not observed:
        return False, "no site has sent frames"
    waiting = sorted(observed - processed)
    silent = sorted(set(registered) - observed)
    if waiting and now < deadline + STUCK_GRACE:
        return False, f"waiting for processing at {', '.join(waiting)}"
    if silent and now < deadline:
        return False, f"waiting until {deadline:%Y-%m-%d %H:%M} UTC for {', '.join(silent)}"
    if waiting:
        return True, f"made without {', '.join(waiting)} (still unprocessed past the deadline)"
    if silent:
        return True, f"{', '.join(silent)} dark tonight"
    return True, "every site observed and processed"


def _latest(instance, asset: str, partition: str):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]),
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
    context: dg.SensorEvaluationContext, registry: RegistryResource
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
    for record in seen:
        key = site_nights.get_partition_key_from_str(record.partition_key)
        late.add(key.keys_by_dimension["night"])
        after = record.storage_id
    requests, reasons = nightly_requests(
        context.instance, registry.get(), dt.datetime.now(dt.UTC), nights=late
    )
    late -= {r.partition_key for r in requests}
    cursor = json.dumps({"raw_after": after, "late": sorted(late)[-MAX_LATE:]})
    if not requests:
        return dg.SensorResult(skip_reason="; ".join(reasons), cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


def nightly_requests(
    instance, registry, now: dt.datetime, nights: Iterable[str] = ()
) -> tuple[list, list[str]]:
    """The sensor's decision at time ``now``: run requests, and a reason per night.

    The latest :data:`RECENT_NIGHTS` nights are checked, and any older ``nights`` given
    (nights that received late frames): those are redone once every site that sent
    frames is processed, with no deadline (the night is long over; a partition that never
    finishes is the ``reconciler``'s to requeue).
    """
    sites = [registry[name] for name in registry.names]
    tonight = (now - dt.timedelta(hours=12)).date()
    recent = [(tonight - dt.timedelta(days=back)).isoformat() for back in range(RECENT_NIGHTS)]
    requests, reasons = [], []
    for night in [*recent, *sorted(set(nights) - set(recent), reverse=True)]:
        observed, processed, newest = set(), set(), 0
        for site in registry.names:
            key = str(site_night_key(site, night))
            raw = _latest(instance, "raw_frames", key)
            if raw is None:
                continue
            observed.add(site)
            done = _latest(instance, "alerts", key)
            if done is not None and done > raw:
                processed.add(site)
                newest = max(newest, done)
        if night in recent:
            ready, why = report_ready(
                registry.names, observed, processed, now, night_deadline(sites, night)
            )
        else:  # a late frame for a night long over: redo it once its partitions are done
            ready = bool(observed) and processed == observed
            why = "late frames processed" if ready else "late frames waiting for processing"
        reasons.append(f"{night}: {why}")
        if ready:
            requests.append(
                dg.RunRequest(
                    run_key=f"nightly:{night}:{newest}",
                    partition_key=night,
                    tags={"telescope/report_reason": why},
                )
            )
    return requests, reasons
