"""Sensors that watch for a few seconds instead of glancing once (long polling).

Dagster's sensor daemon visits each sensor at most every 5 s (its loop time, not a
setting). A sensor that glances once per visit sees a frame 2.5 s after it lands on
average, and a follow-up run waits as long again for its alert. The ``new_frames`` and
``new_alerts`` sensors instead keep looking, a cheap check every ``POLL_SECONDS``, for up
to ``watch_seconds()`` per evaluation, and answer as soon as there is something: a frame
is seen a fraction of a second after it lands.

The watch is shorter than the daemon's loop, so the next visit is never skipped because
this one is still in flight (the daemon runs sensors on threads, ``dagster.yaml``), and
the sensors' threads hold no lock while they wait. ``TELESCOPE_SENSOR_WATCH_SECONDS=0``
turns it off (one glance per visit, Dagster's default behaviour).
"""

import os
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DEFAULT_WATCH_SECONDS", "POLL_SECONDS", "WATCH_ENV", "watch", "watch_seconds"]

T = TypeVar("T")

WATCH_ENV = "TELESCOPE_SENSOR_WATCH_SECONDS"
#: Below the daemon's 5 s loop, with room for the evaluation's own work.
DEFAULT_WATCH_SECONDS = 4.0
#: Between two checks: a directory listing, or one indexed event-log query.
POLL_SECONDS = 0.2


def watch_seconds() -> float:
    """How long a sensor evaluation may watch (``TELESCOPE_SENSOR_WATCH_SECONDS``)."""
    raw = os.environ.get(WATCH_ENV, "")
    try:
        seconds = float(raw) if raw else DEFAULT_WATCH_SECONDS
    except ValueError as exc:
        raise ValueError(f"{WATCH_ENV}={raw!r}: give a number of seconds (0 turns it off)") from exc
    if not 0 <= seconds < 5:
        raise ValueError(
            f"{WATCH_ENV}={raw!r}: must be at least 0 and below the sensor daemon's 5 s loop"
        )
    return seconds


def watch(check: Callable[[], T], seconds: float, poll: float = POLL_SECONDS) -> T:
    """Call ``check`` until it returns something true or ``seconds`` have passed.

    Returns its last value: the first true one, or the false one at the deadline. It is
    called at least once, so ``seconds=0`` is a single glance.
    """
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        left = deadline - time.monotonic()
        if value or left <= 0:
            return value
        time.sleep(min(poll, left))
