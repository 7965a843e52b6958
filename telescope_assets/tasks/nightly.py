"""When a night's report can be made: the ``nightly_reports`` sensor's decision.

A night's report (``nightly_job``: light curves to the report) is made once every site
that sent frames for it is processed through ``alerts``; a site that sent nothing is
waited for until local noon after the night, then reported dark. A night that receives
late frames is redone once they are processed. The sensor (``defs/lightcurves``) reads
the event log and turns :func:`nights_due`'s answer into run requests.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "RECENT_NIGHTS",
    "STUCK_GRACE",
    "NightState",
    "night_deadline",
    "nights_due",
    "nights_to_check",
    "report_ready",
]

#: How many of the latest nights a tick looks at.
RECENT_NIGHTS = 3
#: How long after the deadline a site whose frames are still unprocessed is waited for.
STUCK_GRACE = dt.timedelta(hours=12)


@dataclass(frozen=True)
class NightState:
    """One night's decision: whether its report is due, why, and its newest ``alerts``."""

    night: str
    ready: bool
    why: str
    #: Storage id of the newest ``alerts`` materialization among its processed sites
    #: (the run key changes when a site is processed again).
    newest_alerts: int


def night_deadline(sites, night: str, hour: int = 12) -> dt.datetime:
    """When the last site's night of ``night`` is surely over: local noon the next day.

    A site with no frames by then is taken as dark (clouded out or down) for the night.

    >>> from types import SimpleNamespace as Site
    >>> night_deadline([Site(timezone="UTC"), Site(timezone="America/Santiago")], "2026-03-18")
    datetime.datetime(2026, 3, 19, 15, 0, tzinfo=datetime.timezone.utc)
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


def nights_to_check(now: dt.datetime, late: Iterable[str]) -> tuple[list[str], list[str]]:
    """The latest :data:`RECENT_NIGHTS` nights, and the older ``late`` nights, newest first.

    "Tonight" is the night that began before ``now`` − 12 h (UTC): every site's local
    night of that date has ended by then or is under way.

    >>> now = dt.datetime(2026, 3, 21, 9, tzinfo=dt.UTC)
    >>> nights_to_check(now, ["2026-03-01", "2026-03-19"])
    (['2026-03-20', '2026-03-19', '2026-03-18'], ['2026-03-01'])
    """
    tonight = (now - dt.timedelta(hours=12)).date()
    recent = [(tonight - dt.timedelta(days=back)).isoformat() for back in range(RECENT_NIGHTS)]
    return recent, sorted(set(late) - set(recent), reverse=True)


def nights_due(
    latest: Callable[[str, str, str], int | None],
    sites,
    now: dt.datetime,
    late: Iterable[str] = (),
) -> list[NightState]:
    """The decision at time ``now`` for the recent nights and the ``late`` ones.

    Parameters
    ----------
    latest : callable
        ``latest(asset, site, night)``: the storage id of the asset's newest
        materialization for that site × night, or None.
    sites : list of Site
        Every site of the network (the site registry's entries).
    late : iterable of str
        Nights that received frames since the last decision. A late night, long over,
        is redone once every site that sent frames is processed, with no deadline (a
        partition that never finishes is the ``reconciler``'s to requeue).
    """
    recent, older = nights_to_check(now, late)
    names = [s.name for s in sites]
    states = []
    for night in [*recent, *older]:
        observed, processed, newest = set(), set(), 0
        for site in names:
            raw = latest("raw_frames", site, night)
            if raw is None:
                continue
            observed.add(site)
            done = latest("alerts", site, night)
            if done is not None and done > raw:
                processed.add(site)
                newest = max(newest, done)
        if night in recent:
            ready, why = report_ready(names, observed, processed, now, night_deadline(sites, night))
        else:
            ready = bool(observed) and processed == observed
            why = "late frames processed" if ready else "late frames waiting for processing"
        states.append(NightState(night, ready, why, newest))
    return states
