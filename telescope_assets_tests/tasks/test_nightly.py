"""When a night's report is due (``tasks/nightly.py``); the sensor is tested in defs/."""

import datetime as dt

import numpy as np

from telescope_assets.registry import load_registry
from telescope_assets.tasks.nightly import night_deadline, nights_due, report_ready


def test_report_waits_for_observing_sites_but_not_forever_for_a_dark_one():
    sites = list(load_registry())
    registered = [s.name for s in sites]
    deadline = night_deadline(sites, "2026-03-18")
    # Local noon of the westernmost site, the day after the night key.
    assert (
        dt.datetime(2026, 3, 19, 12, tzinfo=dt.UTC)
        < deadline
        < dt.datetime(2026, 3, 20, tzinfo=dt.UTC)
    )
    before = deadline - dt.timedelta(hours=1)
    after = deadline + dt.timedelta(hours=1)
    everyone = set(registered)
    assert report_ready(registered, everyone, everyone, before, deadline)[0]
    three = set(registered[:3])
    ready, why = report_ready(registered, three, three, before, deadline)
    assert not ready
    assert registered[3] in why
    ready, why = report_ready(registered, three, three, after, deadline)
    assert ready
    assert "dark" in why
    ready, why = report_ready(registered, three, three - {registered[0]}, after, deadline)
    assert not ready
    assert registered[0] in why
    late = deadline + dt.timedelta(hours=13)
    assert report_ready(registered, three, three - {registered[0]}, late, deadline)[0]
    assert not report_ready(registered, set(), set(), late, deadline)[0]
    assert np.isfinite(deadline.timestamp())


def test_a_late_night_waits_for_every_observing_site_and_no_deadline():
    sites = list(load_registry())[:2]
    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    events = {("raw_frames", sites[0].name, "2026-03-18"): 5}

    def latest(asset, site, night):
        return events.get((asset, site, night))

    states = nights_due(latest, sites, now, late=["2026-03-18"])
    recent, late = states[0], states[-1]
    assert (recent.ready, recent.why) == (False, "no site has sent frames")
    assert (late.night, late.ready) == ("2026-03-18", False)
    events[("alerts", sites[0].name, "2026-03-18")] = 4  # older than the frames: stale
    assert not nights_due(latest, sites, now, late=["2026-03-18"])[-1].ready
    events[("alerts", sites[0].name, "2026-03-18")] = 9
    done = nights_due(latest, sites, now, late=["2026-03-18"])[-1]
    # The silent second site is no reason to wait for a night long over.
    assert (done.ready, done.why, done.newest_alerts) == (True, "late frames processed", 9)
