"""The ``nightly_reports`` sensor: a night's report once its observing sites are done."""

import datetime as dt
import zoneinfo

import dagster as dg

from telescope_assets.defs.jobs import nightly_job
from telescope_assets.defs.partitions import site_night_key
from telescope_assets.registry import Site
from telescope_assets.resources import RegistryResource

__all__ = ["night_deadline", "nightly_reports", "nightly_requests", "report_ready"]

#: How many of the latest nights a tick looks at.
RECENT_NIGHTS = 3
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
    """Check the latest nights; one run per night and state of its sites."""
    requests, reasons = nightly_requests(context.instance, registry.get(), dt.datetime.now(dt.UTC))
    if not requests:
        return dg.SensorResult(skip_reason="; ".join(reasons))
    return dg.SensorResult(run_requests=requests)


def nightly_requests(instance, registry, now: dt.datetime) -> tuple[list, list[str]]:
    """The sensor's decision at time ``now``: run requests, and a reason per night."""
    sites = [registry[name] for name in registry.names]
    tonight = (now - dt.timedelta(hours=12)).date()
    requests, reasons = [], []
    for back in range(RECENT_NIGHTS):
        night = (tonight - dt.timedelta(days=back)).isoformat()
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
        ready, why = report_ready(
            registry.names, observed, processed, now, night_deadline(sites, night)
        )
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
