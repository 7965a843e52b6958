"""Labelled transient populations for the typing model, with the network's way of seeing them.

Each example is one alert object as the pipeline would know it at some night: its
context (a galaxy near it, a star under it, a tracklet) and the difference magnitudes of
its detections so far, observed as the network observes — a few nights (some missed), one
to four visits a night at the sites, each with its own limiting magnitude (19.3–20.8),
detections only at S/N ≥ 5 with their noise. Its class is the population it was drawn
from (truth). The features are then made by the pipeline's own
:func:`telescope_assets.science.typing.features`.

Populations (equal numbers, ``TYPE_CLASSES`` order):

* ``supernova_like`` — Bazin light curves (rise 1.5–8 d, fall 15–60 d, peak r 16–20),
  seen from 20 days before to 25 days after the peak, on a galaxy (r 15–19.5, radius
  1–5″) at an offset drawn from an exponential disk; 5 % with a host too faint to detect.
* ``nuclear`` — at the galaxy's centre: slow flares (rise 8–40 d, fall 40–200 d; 70 %)
  or an active nucleus's random walk (30 %).
* ``variable_star`` — a star (r 12–18.5) varying by 0.2–1.2 mag (sine or sawtooth,
  periods 0.2–30 d), alerted when brighter than the reference; half catalogued as
  variable.
* ``flare`` — a star (r 13–19.5) brightening by 0.3–30 times its flux within minutes,
  fading with a 5–90 minute e-folding time, on one night.
* ``moving_object`` — a tracklet of 3–8 detections in one night, 15–60″/h (main belt,
  80 %) or 75–1500″/h (near-Earth), r 16–20.5.
* ``unknown`` — no galaxy, no star, no motion: Bazin shapes of any timescale (rise
  0.1–20 d, fall 0.5–100 d); 10 % with an unrelated galaxy 4–10″ away.

Astrometric error of a transient against its galaxy's centre: 0.1–0.35″ per axis.
"""

from __future__ import annotations

import numpy as np

from telescope_assets.science.typing import TYPE_CLASSES, Context, features

__all__ = ["TYPE_CLASSES", "observe", "typing_examples"]


def _visits(rng, n_nights: int, spacing: tuple[float, float] = (0.01, 0.12)) -> np.ndarray:
    """Visit times (days from the first night's start): a quarter of nights missed."""
    times = []
    for night in range(n_nights):
        if night and rng.random() < 0.25:
            continue
        k = int(rng.integers(1, 5))
        start = night + rng.uniform(0.0, 0.25)
        times.extend(start + np.cumsum(np.r_[0.0, rng.uniform(*spacing, k - 1)]))
    return np.asarray(times)


def observe(rng, t: np.ndarray, mag_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The detections (S/N ≥ 5) of true magnitudes at visit times, with their noise."""
    limit = rng.uniform(19.3, 20.8, len(t))
    with np.errstate(over="ignore", invalid="ignore"):
        snr = np.nan_to_num(5.0 * 10 ** (-0.4 * (mag_true - limit)))  # sky-limited
    flux = snr * (1.0 + 0.01 * rng.normal(0.0, 1.0, len(t))) + rng.normal(0.0, 1.0, len(t))
    seen = flux >= 5.0
    return t[seen], limit[seen] - 2.5 * np.log10(flux[seen] / 5.0)


def _bazin_mag(t, t0, peak, rise, fall) -> np.ndarray:
    x = t - t0
    ln = -x / fall - np.logaddexp(0.0, -x / rise)
    x_peak = rise * np.log(fall / rise - 1.0) if fall > 2 * rise else 0.0
    ln_peak = -x_peak / fall - np.logaddexp(0.0, -x_peak / rise)
    return peak - 2.5 * (ln - ln_peak) / np.log(10.0)


def _host(rng) -> dict:
    return {"host_mag": rng.uniform(15.0, 19.5), "host_radius_arcsec": rng.uniform(1.0, 5.0)}


def _measured_sep(rng, offset: np.ndarray) -> float:
    return float(np.hypot(*(offset + rng.normal(0.0, rng.uniform(0.1, 0.35), 2))))


def _supernova(rng):
    host = _host(rng)
    r = rng.gamma(2.0, host["host_radius_arcsec"] / 1.68)
    angle = rng.uniform(0, 2 * np.pi)
    offset = r * np.array([np.cos(angle), np.sin(angle)])
    ctx = dict(host, host_sep_arcsec=_measured_sep(rng, offset))
    if rng.random() < 0.05:  # a host below the detection limit
        ctx = {}
    t = _visits(rng, int(rng.integers(1, 9)))
    t0 = rng.uniform(-20.0, 25.0)
    mag = _bazin_mag(t, t0, rng.uniform(16.0, 20.0), rng.uniform(1.5, 8.0), rng.uniform(15, 60))
    return ctx, t, mag


def _nuclear(rng):
    ctx = dict(_host(rng), host_sep_arcsec=_measured_sep(rng, np.zeros(2)))
    t = _visits(rng, int(rng.integers(1, 9)))
    if rng.random() < 0.7:
        rise, fall = rng.uniform(8.0, 40.0), rng.uniform(40.0, 200.0)
        mag = _bazin_mag(t, rng.uniform(-40.0, 60.0), rng.uniform(16.5, 20.0), rise, fall)
    else:  # an active nucleus: a random walk of its difference magnitude
        steps = rng.normal(0.0, 0.05, len(t)) * np.sqrt(np.maximum(np.diff(t, prepend=t[0]), 0.01))
        mag = rng.uniform(17.0, 20.0) + np.cumsum(steps)
    return ctx, t, mag


def _variable_star(rng):
    star = rng.uniform(12.0, 18.5)
    amplitude, period = rng.uniform(0.2, 1.2), np.exp(rng.uniform(np.log(0.2), np.log(30.0)))
    t = _visits(rng, int(rng.integers(1, 9)))
    phase = (t / period + rng.random()) % 1.0
    shape = np.sin(2 * np.pi * phase) if rng.random() < 0.5 else 1.0 - 2.0 * phase
    ratio = 10 ** (0.4 * amplitude / 2 * shape) - 1.0  # difference flux / the star's
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = np.where(ratio > 0, star - 2.5 * np.log10(ratio), np.nan)
    ctx = {"star_mag": star, "catalogued_variable": bool(rng.random() < 0.5)}
    return ctx, t, mag


def _flare(rng):
    star = rng.uniform(13.0, 19.5)
    n = int(rng.integers(1, 9))
    t = _visits(rng, n, spacing=(0.005, 0.06))
    night = int(rng.integers(0, n))
    tonight = t[(t >= night) & (t < night + 1)]
    if not len(tonight):
        tonight = np.array([night + 0.1])
    t_peak = tonight[0] - rng.uniform(0.0, 0.03)
    tau = rng.uniform(5.0, 90.0) / 1440.0
    after = np.maximum(t - t_peak, 0.0)
    ratio = np.exp(rng.uniform(np.log(0.3), np.log(30.0))) * np.exp(-after / tau)
    ratio = np.where(t >= t_peak, ratio, 0.0)
    with np.errstate(divide="ignore", under="ignore"):
        mag = np.where(ratio > 0, star - 2.5 * np.log10(ratio), np.nan)
    return {"star_mag": star}, t[t < night + 1], mag[t < night + 1]


def _moving(rng):
    k = int(rng.integers(3, 9))
    t = np.sort(rng.uniform(0.0, 0.3, k))
    fast = rng.random() < 0.2
    rate = rng.uniform(75.0, 1500.0) if fast else rng.uniform(15.0, 60.0)
    ctx = {"in_tracklet": True, "rate_arcsec_per_hour": rate}
    if rng.random() < 0.05:  # crossing a galaxy
        ctx |= dict(_host(rng), host_sep_arcsec=rng.uniform(0.5, 8.0))
    return ctx, t, np.full(k, rng.uniform(16.0, 20.5))


def _unknown(rng):
    ctx = {}
    if rng.random() < 0.1:  # an unrelated galaxy nearby
        ctx = {"host_mag": rng.uniform(16, 20), "host_radius_arcsec": rng.uniform(1.0, 3.0),
               "host_sep_arcsec": rng.uniform(4.0, 10.0)}  # fmt: skip
    t = _visits(rng, int(rng.integers(1, 9)))
    rise, fall = np.exp(rng.uniform(np.log(0.1), np.log(20.0))), np.exp(rng.uniform(0, 4.6))
    mag = _bazin_mag(t, rng.uniform(-10.0, 15.0), rng.uniform(16.0, 20.0), rise, fall + rise)
    return ctx, t, mag


_POPULATIONS = {
    "supernova_like": _supernova,
    "nuclear": _nuclear,
    "variable_star": _variable_star,
    "flare": _flare,
    "moving_object": _moving,
    "unknown": _unknown,
}


def _example(rng, label: str) -> Context:
    """One object of a population, drawn until it has at least one detection."""
    while True:
        ctx, t, mag = _POPULATIONS[label](rng)
        t_seen, mag_seen = observe(rng, t, mag)
        if label == "moving_object":
            t_seen, mag_seen = t, mag + rng.normal(0.0, 0.05, len(mag))  # linked: all seen
        if len(t_seen):
            cut = t_seen[int(rng.integers(0, len(t_seen)))]  # typed after a random detection
            keep = t_seen <= cut if label != "moving_object" else slice(None)
            return Context(mjd=60000.0 + t_seen[keep], mag=mag_seen[keep], **ctx)


def typing_examples(n: int, seed: int) -> dict[str, np.ndarray]:
    """``n`` labelled feature vectors (``x``: float32, ``y``: class index), classes balanced.

    Deterministic for a seed; evaluation uses seeds training never sees.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(TYPE_CLASSES)
    rng.shuffle(labels)
    x = np.stack([features(_example(rng, TYPE_CLASSES[k])) for k in labels])
    return {"x": x.astype(np.float32), "y": labels.astype(np.int64)}
