"""Observing nights: the site-local date at the noon that starts a night."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

__all__ = ["night_noon_utc", "night_of"]


def night_of(date_obs: dt.datetime, timezone: str) -> str:
    """Return the night key ``YYYY-MM-DD`` of an exposure.

    The night is the site's local date at the local noon that starts it, i.e. the
    local date of ``DATE-OBS - 12 h``. Every exposure between two local noons belongs
    to one night, however late or early it was taken.

    Parameters
    ----------
    date_obs : datetime.datetime
        Start of the exposure. A naive datetime is taken as UTC (the FITS convention).
    timezone : str
        The site's IANA timezone.

    Returns
    -------
    str
        The night key.

    Examples
    --------
    >>> import datetime as dt
    >>> night_of(dt.datetime(2026, 3, 19, 2, 30), "Atlantic/Canary")
    '2026-03-18'
    >>> night_of(dt.datetime(2026, 3, 19, 11, 0), "Australia/Sydney")
    '2026-03-19'
    """
    if date_obs.tzinfo is None:
        date_obs = date_obs.replace(tzinfo=dt.UTC)
    local = date_obs.astimezone(ZoneInfo(timezone))
    return (local - dt.timedelta(hours=12)).date().isoformat()


def night_noon_utc(night: str, timezone: str) -> dt.datetime:
    """Return the UTC instant of the local noon that starts ``night``.

    Examples
    --------
    >>> night_noon_utc("2026-03-18", "Africa/Johannesburg").isoformat()
    '2026-03-18T10:00:00+00:00'
    """
    day = dt.date.fromisoformat(night)
    noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(timezone))
    return noon.astimezone(dt.UTC)
