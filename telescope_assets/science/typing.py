"""What an alert object is: the features a transient's type is learned from.

One function, :func:`features`, turns what the pipeline measures of an alert object — its
context (a galaxy near it, a catalogued star under it, a tracklet it belongs to) and its
light curve (the difference magnitudes of its alerts, every site and night) — into a
fixed vector of order-unity numbers. The simulator's labelled populations
(``simulate/typing.py``) go through the same function, so the model learns exactly what
the pipeline will give it. Pure: numpy only.

The classes (``TYPE_CLASSES``):

* ``supernova_like`` — on or near a galaxy, off its centre, rising or fading over days;
* ``nuclear`` — at a galaxy's centre (within the astrometric error), slow;
* ``variable_star`` — on a star that is catalogued as variable or has varied before;
* ``flare`` — on a star, a fast rise and a fade within hours;
* ``moving_object`` — in a tracklet (a rule: motion is exact);
* ``unknown`` — none of these: no galaxy, no star, no motion (an orphan transient, or a
  supernova whose host is below the detection limit).
"""

from dataclasses import dataclass, field

import numpy as np

__all__ = ["FEATURE_NAMES", "TYPE_CLASSES", "Context", "features"]

TYPE_CLASSES = ("supernova_like", "nuclear", "variable_star", "flare", "moving_object", "unknown")

FEATURE_NAMES = (
    "has_host",
    "host_offset_norm",  # separation / the galaxy's radius, at most 5
    "host_offset_log_arcsec",
    "host_mag",
    "has_star",
    "star_minus_peak_mag",  # the star's magnitude minus the brightest difference magnitude
    "catalogued_variable",
    "in_tracklet",
    "log_rate",  # log10(1 + rate in arcsec/hour)
    "log_n_detections",
    "n_nights",
    "log_span_days",
    "rise_mag_per_day",  # brightening before the peak (positive), clipped at 5
    "fade_mag_per_day",  # fading after the peak (positive), clipped at 5
    "night_fade_mag_per_hour",  # the fastest fade within one night, clipped at 5
    "peak_mag",
    "scatter_mag",
    "reversals",  # fraction of consecutive changes that reverse the direction
    "days_since_first",
)

#: Order-unity scalings: ``(value - offset) / scale``.
_OFFSET = {"host_mag": 17.5, "peak_mag": 18.0, "n_nights": 2.0, "days_since_first": 3.0}
_SCALE = {"host_mag": 2.0, "peak_mag": 2.0, "n_nights": 3.0, "days_since_first": 10.0}


@dataclass
class Context:
    """What the pipeline knows about one alert object.

    Distances in arcsec, magnitudes in the alerts' band; NaN where there is nothing
    (no galaxy within reach, no star under it). ``mjd``/``mag`` are the difference
    magnitudes of its alerts (S/N ≥ 5), any order.
    """

    host_sep_arcsec: float = np.nan
    host_radius_arcsec: float = np.nan
    host_mag: float = np.nan
    star_mag: float = np.nan
    catalogued_variable: bool = False
    in_tracklet: bool = False
    rate_arcsec_per_hour: float = 0.0
    mjd: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mag: np.ndarray = field(default_factory=lambda: np.zeros(0))


def _rates(t: np.ndarray, m: np.ndarray) -> tuple[float, float, float]:
    """Rise before the peak and fade after it (mag/day), and the fastest fade in a night (mag/h)."""
    k = int(np.argmin(m))
    rise = fade = night = 0.0
    if k > 0 and t[k] - t[0] > 0.02:
        rise = (m[0] - m[k]) / (t[k] - t[0])
    if k < len(m) - 1 and t[-1] - t[k] > 0.02:
        fade = (m[-1] - m[k]) / (t[-1] - t[k])
    dt = np.diff(t)
    same_night = (dt > 0.005) & (dt < 0.5)
    if same_night.any():
        night = float(np.max(np.diff(m)[same_night] / (dt[same_night] * 24.0)))
    return rise, fade, night


def features(ctx: Context) -> np.ndarray:
    """The feature vector (``FEATURE_NAMES``, float32) of one alert object.

    >>> f = features(Context(host_sep_arcsec=1.0, host_radius_arcsec=2.0, host_mag=17.0,
    ...                      mjd=np.array([0.0, 2.0, 4.0]), mag=np.array([19.0, 18.0, 18.5])))
    >>> dict(zip(FEATURE_NAMES, f.round(2)))["host_offset_norm"], len(f) == len(FEATURE_NAMES)
    (np.float32(0.5), True)
    """
    order = np.argsort(ctx.mjd)
    t = np.asarray(ctx.mjd, float)[order]
    m = np.asarray(ctx.mag, float)[order]
    has_host = np.isfinite(ctx.host_sep_arcsec)
    has_star = np.isfinite(ctx.star_mag)
    n = len(m)
    peak = float(m.min()) if n else 21.0
    rise, fade, night = _rates(t, m) if n > 1 else (0.0, 0.0, 0.0)
    steps = np.sign(np.diff(m)[np.abs(np.diff(m)) > 0.05]) if n > 2 else np.zeros(0)
    values = {
        "has_host": float(has_host),
        "host_offset_norm": min(ctx.host_sep_arcsec / max(ctx.host_radius_arcsec, 0.5), 5.0)
        if has_host
        else 5.0,
        "host_offset_log_arcsec": np.log10(max(ctx.host_sep_arcsec, 0.05)) if has_host else 1.5,
        "host_mag": ctx.host_mag if has_host and np.isfinite(ctx.host_mag) else 21.5,
        "has_star": float(has_star),
        "star_minus_peak_mag": np.clip(ctx.star_mag - peak, -5, 5) if has_star else 0.0,
        "catalogued_variable": float(ctx.catalogued_variable),
        "in_tracklet": float(ctx.in_tracklet),
        "log_rate": np.log10(1.0 + max(ctx.rate_arcsec_per_hour, 0.0)),
        "log_n_detections": np.log10(1.0 + n),
        "n_nights": float(1 + np.sum(np.diff(t) > 0.5)) if n else 0.0,  # gaps of > 12 h
        "log_span_days": np.log10(1.0 + (t[-1] - t[0])) if n else 0.0,
        "rise_mag_per_day": np.clip(rise, -5, 5),
        "fade_mag_per_day": np.clip(fade, -5, 5),
        "night_fade_mag_per_hour": np.clip(night, -5, 5),
        "peak_mag": peak,
        "scatter_mag": float(np.std(m)) if n > 1 else 0.0,
        "reversals": float(np.mean(steps[1:] != steps[:-1])) if len(steps) > 1 else 0.0,
        "days_since_first": (t[-1] - t[0]) if n else 0.0,
    }
    out = [(values[k] - _OFFSET.get(k, 0.0)) / _SCALE.get(k, 1.0) for k in FEATURE_NAMES]
    return np.asarray(out, dtype=np.float32)
