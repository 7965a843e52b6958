"""Sun, Moon and target altitudes at a site: twilight, airmass and visibility.

The network runs offline, so astropy is told never to download IERS tables: inside the
bundled tables' range results are exact; beyond it (nights far in the future) polar
motion is taken as zero, an error of well under an arcsecond, irrelevant to airmass.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from telescope_assets.science.nights import night_noon_utc

__all__ = [
    "NightWindow",
    "Visibility",
    "airmass",
    "night_window",
    "observability",
    "offline_astropy",
]

_CONFIGURED = False


def offline_astropy() -> None:
    """Configure astropy not to reach the network for IERS data (idempotent)."""
    global _CONFIGURED
    if _CONFIGURED:
        return
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    iers.conf.iers_degraded_accuracy = "ignore"
    _CONFIGURED = True


@dataclass(frozen=True)
class NightWindow:
    """Sun-defined times of one night at one site (UTC); ``None`` when never reached."""

    night: str
    sunset: dt.datetime | None
    evening_twilight_end: dt.datetime | None  # Sun below -18 deg
    morning_twilight_start: dt.datetime | None
    sunrise: dt.datetime | None
    moon_illumination: float

    @property
    def dark_hours(self) -> float:
        """Length of astronomical night in hours (0 if the Sun never gets below -18°)."""
        if self.evening_twilight_end is None or self.morning_twilight_start is None:
            return 0.0
        return (self.morning_twilight_start - self.evening_twilight_end).total_seconds() / 3600


def _crossing(times, alt: np.ndarray, level: float, falling: bool):
    below = alt < level
    for i in range(1, len(alt)):
        if falling and below[i] and not below[i - 1]:
            return _interp(times, alt, i, level)
        if not falling and not below[i] and below[i - 1]:
            return _interp(times, alt, i, level)
    return None


def _interp(times, alt, i, level):
    f = (level - alt[i - 1]) / (alt[i] - alt[i - 1])
    t0, t1 = times[i - 1], times[i]
    return t0 + (t1 - t0) * float(f)


def night_window(site, night: str, step_minutes: float = 5.0) -> NightWindow:
    """Compute sunset, astronomical twilight and sunrise for one site and night.

    Parameters
    ----------
    site : telescope_assets.registry.Site
        The site (location and timezone).
    night : str
        Night key ``YYYY-MM-DD`` (local date at the noon that starts the night).
    step_minutes : float
        Sampling of the Sun's altitude; crossings are interpolated linearly.

    Returns
    -------
    NightWindow
        Computed once per place, night and sampling in a process (the follow-up planner
        asks for the same nights for every alert).
    """
    key = (site.latitude, site.longitude, site.elevation, site.timezone, night, step_minutes)
    if key not in _WINDOWS:
        _WINDOWS[key] = _night_window(site, night, step_minutes)
    return _WINDOWS[key]


#: NightWindow (immutable) by place, night and sampling.
_WINDOWS: dict[tuple, NightWindow] = {}


def _night_window(site, night: str, step_minutes: float) -> NightWindow:
    offline_astropy()
    from astropy import units as u
    from astropy.coordinates import AltAz, get_body, get_sun
    from astropy.time import Time

    start = night_noon_utc(night, site.timezone)
    n = int(24 * 60 / step_minutes) + 1
    datetimes = [start + dt.timedelta(minutes=step_minutes * i) for i in range(n)]
    times = Time(datetimes)
    frame = AltAz(obstime=times, location=site.location)
    alt = get_sun(times).transform_to(frame).alt.deg
    midnight = times[n // 2]
    sun = get_sun(midnight)
    moon = get_body("moon", midnight)
    elongation = moon.separation(sun).to(u.rad).value
    illumination = float((1 - np.cos(elongation)) / 2)
    return NightWindow(
        night=night,
        sunset=_crossing(datetimes, alt, -0.833, falling=True),
        evening_twilight_end=_crossing(datetimes, alt, -18.0, falling=True),
        morning_twilight_start=_crossing(datetimes, alt, -18.0, falling=False),
        sunrise=_crossing(datetimes, alt, -0.833, falling=False),
        moon_illumination=illumination,
    )


def airmass(site, ra_deg, dec_deg, when) -> np.ndarray:
    """Airmass (sec z, ``inf`` below the horizon) of targets at given UTC times.

    ``ra_deg``/``dec_deg`` and ``when`` broadcast against each other.
    """
    offline_astropy()
    from astropy import units as u
    from astropy.coordinates import AltAz, SkyCoord
    from astropy.time import Time

    times = Time(when)
    target = SkyCoord(np.asarray(ra_deg) * u.deg, np.asarray(dec_deg) * u.deg)
    alt = target.transform_to(AltAz(obstime=times, location=site.location)).alt.deg
    alt = np.asarray(alt)
    with np.errstate(divide="ignore"):
        return np.where(alt > 0, 1 / np.sin(np.radians(np.clip(alt, 1e-3, 90))), np.inf)


@dataclass(frozen=True)
class Visibility:
    """When a target can be observed from a site on one night (UTC), or why not."""

    site: str
    night: str
    observable: bool
    start: dt.datetime | None
    end: dt.datetime | None
    min_airmass: float
    moon_separation_deg: float
    reason: str


def observability(
    site,
    night: str,
    ra_deg: float,
    dec_deg: float,
    *,
    after: dt.datetime | None = None,
    max_airmass: float = 2.0,
    min_moon_separation_deg: float = 30.0,
    step_minutes: float = 10.0,
) -> Visibility:
    """The window of astronomical night in which a target has airmass below ``max_airmass``.

    Only time after ``after`` counts (an alert cannot be followed up in the past). The
    target is refused when the Moon is closer than ``min_moon_separation_deg``.
    """
    offline_astropy()
    from astropy import units as u
    from astropy.coordinates import SkyCoord, get_body
    from astropy.time import Time

    window = night_window(site, night)
    name = site.name
    if window.dark_hours <= 0:
        return Visibility(name, night, False, None, None, np.inf, np.nan, "no astronomical night")
    start, end = window.evening_twilight_end, window.morning_twilight_start
    if after is not None:
        start = max(start, after)
    if start >= end:
        return Visibility(name, night, False, None, None, np.inf, np.nan, "night already over")
    n = max(int((end - start).total_seconds() / 60 / step_minutes), 1) + 1
    times = [start + (end - start) * (i / (n - 1 if n > 1 else 1)) for i in range(n)]
    x = airmass(site, ra_deg, dec_deg, times)
    target = SkyCoord(ra_deg * u.deg, dec_deg * u.deg)
    mid = Time(times[n // 2])
    moon = get_body("moon", mid, location=site.location)
    sep = float(moon.separation(target, origin_mismatch="ignore").deg)
    ok = x < max_airmass
    best = float(np.min(x))
    if not ok.any():
        reason = "below the horizon all night" if np.isinf(best) else f"airmass ≥ {max_airmass}"
        return Visibility(name, night, False, None, None, best, sep, reason)
    if sep < min_moon_separation_deg:
        return Visibility(name, night, False, None, None, best, sep, f"Moon {sep:.0f}° away")
    idx = np.flatnonzero(ok)
    return Visibility(name, night, True, times[idx[0]], times[idx[-1]], best, sep, "observable")
