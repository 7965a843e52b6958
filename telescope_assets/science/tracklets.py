"""Moving objects: detections of one night linked into tracklets of linear motion.

An asteroid is a new point source in every difference image it falls on, each time at
another place. Over one night its motion on the sky is close to a straight line at a
constant rate (the simulator's is exactly; a real path curves by up to about an
arcsecond and the observer's parallax adds more, which is not corrected, see
``docs/transients.md``). So a tracklet is any set of at least :data:`MIN_DETECTIONS`
detections, from different exposures of any sites, that one linear motion reproduces
within :data:`TOLERANCE_ARCSEC`, at a rate between :data:`MIN_RATE` and
:data:`MAX_RATE` (a stationary transient is not a moving object).

The search is exhaustive over pairs, as in a classical tracklet builder (Kubica et al.
2007 use kd-trees for the same predicate at survey scale; one night of a small network
has hundreds of detections, where pairs are cheap): every pair of detections at an
admissible rate predicts where the object is at every other detection's time; the pair
with the most supporters becomes a tracklet (fitted by least squares over all of them),
its detections leave the pool, and the search repeats.

Positions are in a tangent plane around each pair's first detection, in arcseconds
(east, north). At least :data:`MIN_DETECTIONS` of a tracklet's detections must lie at
places the astrometry tells apart (back-to-back exposures of a supernova see it at one
place). The rate is in arcsec/hour and the position angle in degrees east of
north, as the MPC and astronomers quote them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "MAX_RATE",
    "MIN_DETECTIONS",
    "MIN_RATE",
    "TOLERANCE_ARCSEC",
    "Tracklet",
    "link",
]

#: Detections a tracklet needs (two points always fit a line).
MIN_DETECTIONS = 3
#: Slowest motion called moving (″/h): 3σ of a 0.3″ position over an hour and a half.
MIN_RATE = 1.0
#: Fastest (″/h): 10°/day, a near-Earth object close to the Earth.
MAX_RATE = 1500.0
#: How far a detection may sit from the line (″): astrometric error plus trailing.
TOLERANCE_ARCSEC = 1.5
#: Detections closer in time than this (hours) come from the same exposure.
SAME_EXPOSURE_HOURS = 10 / 3600


@dataclass(frozen=True)
class Tracklet:
    """One object's linear motion over a night, and the detections that follow it."""

    tracklet_id: str
    members: tuple[int, ...]  # row positions in the detections table
    ra: float  # degrees, at ``mjd``
    dec: float
    mjd: float  # the mean time of the members
    rate_arcsec_per_hour: float
    pa_deg: float  # direction of motion, east of north
    rms_arcsec: float

    def as_dict(self) -> dict:
        """The tracklet's row (members as a count)."""
        return {
            "tracklet_id": self.tracklet_id,
            "n_detections": len(self.members),
            "ra": self.ra,
            "dec": self.dec,
            "mjd": self.mjd,
            "rate_arcsec_per_hour": self.rate_arcsec_per_hour,
            "pa_deg": self.pa_deg,
            "rms_arcsec": self.rms_arcsec,
        }


def _offsets(ra, dec, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic (east, north) offsets in arcsec of (ra, dec) from (ra0, dec0)."""
    ra, dec = np.radians(ra), np.radians(dec)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    cosc = np.sin(d0) * np.sin(dec) + np.cos(d0) * np.cos(dec) * np.cos(ra - a0)
    xi = np.cos(dec) * np.sin(ra - a0) / cosc
    eta = (np.cos(d0) * np.sin(dec) - np.sin(d0) * np.cos(dec) * np.cos(ra - a0)) / cosc
    return np.degrees(xi) * 3600, np.degrees(eta) * 3600


def _from_offsets(xi, eta, ra0: float, dec0: float) -> tuple[float, float]:
    """Inverse of :func:`_offsets` for one point."""
    x, y = np.radians(xi / 3600), np.radians(eta / 3600)
    a0, d0 = np.radians(ra0), np.radians(dec0)
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    if rho == 0:
        return ra0, dec0
    dec = np.arcsin(np.cos(c) * np.sin(d0) + y * np.sin(c) * np.cos(d0) / rho)
    ra = a0 + np.arctan2(x * np.sin(c), rho * np.cos(d0) * np.cos(c) - y * np.sin(d0) * np.sin(c))
    return float(np.degrees(ra) % 360), float(np.degrees(dec))


def _supporters(hours, xi, eta, i: int, j: int, free: np.ndarray) -> np.ndarray:
    """Free detections on the line through detections ``i`` and ``j`` (one per exposure)."""
    dt = hours[j] - hours[i]
    vx, vy = (xi[j] - xi[i]) / dt, (eta[j] - eta[i]) / dt
    px = xi[i] + vx * (hours - hours[i])
    py = eta[i] + vy * (hours - hours[i])
    miss = np.hypot(xi - px, eta - py)
    near = free & (miss < TOLERANCE_ARCSEC)
    chosen = []
    # One detection per exposure: the closest to the line.
    for k in np.flatnonzero(near)[np.argsort(miss[near])]:
        if all(abs(hours[k] - hours[c]) > SAME_EXPOSURE_HOURS for c in chosen):
            chosen.append(int(k))
    return np.array(sorted(chosen, key=lambda k: hours[k]), dtype=int)


def _resolved(xi, eta, members: np.ndarray) -> int:
    """How many of the members lie at places more than two tolerances from each other.

    Motion is shown only between places the astrometry tells apart: back-to-back
    exposures of a supernova (a minute apart) put two detections at one place, which
    with a third point anywhere would otherwise make a "line".
    """
    kept: list[int] = []
    for k in members:
        if all(np.hypot(xi[k] - xi[c], eta[k] - eta[c]) > 2 * TOLERANCE_ARCSEC for c in kept):
            kept.append(int(k))
    return len(kept)


def _fit(hours, xi, eta) -> tuple[float, float, float, float, float]:
    """Least-squares linear motion: position at the mean time, velocity, RMS (″, ″/h)."""
    t = hours - hours.mean()
    a = np.column_stack([np.ones_like(t), t])
    (x0, vx), *_ = np.linalg.lstsq(a, xi, rcond=None)
    (y0, vy), *_ = np.linalg.lstsq(a, eta, rcond=None)
    resid = np.hypot(xi - (x0 + vx * t), eta - (y0 + vy * t))
    return x0, y0, vx, vy, float(np.sqrt(np.mean(resid**2)))


def _candidate_pairs(hours, ra, dec, ok: np.ndarray) -> list[tuple[int, int]]:
    """Pairs at an admissible rate whose line at least :data:`MIN_DETECTIONS` lie near.

    Vectorised per first detection: the lines through it and every later one predict
    every detection's place at once (a matrix), so only promising pairs reach Python.
    """
    pairs = []
    for i in np.flatnonzero(ok):
        xi, eta = _offsets(ra, dec, ra[i], dec[i])
        dt = hours - hours[i]
        rate = np.hypot(xi, eta) / np.where(np.abs(dt) > SAME_EXPOSURE_HOURS, np.abs(dt), np.nan)
        later = ok & (dt > SAME_EXPOSURE_HOURS) & (rate >= MIN_RATE) & (rate <= MAX_RATE)
        js = np.flatnonzero(later)
        if js.size == 0:
            continue
        vx, vy = xi[js] / dt[js], eta[js] / dt[js]
        miss = np.hypot(
            xi[None, :] - vx[:, None] * dt[None, :], eta[None, :] - vy[:, None] * dt[None, :]
        )
        support = ((miss < TOLERANCE_ARCSEC) & ok[None, :]).sum(axis=1)
        pairs += [(int(i), int(j)) for j in js[support >= MIN_DETECTIONS]]
    return pairs


def _members(hours, ra, dec, pair: tuple[int, int], free: np.ndarray) -> np.ndarray:
    """The line's members, or none when fewer than :data:`MIN_DETECTIONS` places."""
    i, j = pair
    xi, eta = _offsets(ra, dec, ra[i], dec[i])
    members = _supporters(hours, xi, eta, i, j, free)
    if _resolved(xi, eta, members) < MIN_DETECTIONS:
        return np.array([], dtype=int)
    return members


def link(detections: pd.DataFrame, night: str = "") -> tuple[list[Tracklet], np.ndarray]:
    """Tracklets among a night's detections.

    Parameters
    ----------
    detections : pandas.DataFrame
        ``mjd``, ``ra``, ``dec`` (degrees) of every detection that is not a known
        stationary object, from any sites.
    night : str
        Used in the tracklet ids (``TK<night>-<n>``).

    Returns
    -------
    tracklets : list of Tracklet
    labels : numpy.ndarray
        For each detection, its tracklet's id, or ``""``.

    Examples
    --------
    >>> rows = [(61117.0 + h / 24, 150.0 + 30 * h / 3600, 2.0) for h in (0.0, 1.5, 3.0)]
    >>> rows.append((61117.05, 150.2, 2.1))  # something else
    >>> tracklets, labels = link(pd.DataFrame(rows, columns=["mjd", "ra", "dec"]), "20260318")
    >>> round(tracklets[0].rate_arcsec_per_hour, 1), round(tracklets[0].pa_deg)
    (30.0, 90)
    >>> labels.tolist()
    ['TK20260318-1', 'TK20260318-1', 'TK20260318-1', '']
    """
    mjd = detections.mjd.to_numpy(float)
    ra = detections.ra.to_numpy(float)
    dec = detections.dec.to_numpy(float)
    hours = mjd * 24.0
    free = np.isfinite(mjd) & np.isfinite(ra) & np.isfinite(dec)
    labels = np.full(len(detections), "", dtype=object)
    tracklets: list[Tracklet] = []
    # Lazy greedy: the best-supported line first; a line that lost members to an
    # earlier tracklet is counted again before it may win.
    lines = [
        (len(m), pair, m)
        for pair in _candidate_pairs(hours, ra, dec, free)
        if len(m := _members(hours, ra, dec, pair, free)) >= MIN_DETECTIONS
    ]
    while lines:
        lines.sort(key=lambda line: (-line[0], line[1]))
        _count, pair, members = lines.pop(0)
        if not free[members].all():
            if free[list(pair)].all():
                members = _members(hours, ra, dec, pair, free)
                if len(members) >= MIN_DETECTIONS:
                    lines.append((len(members), pair, members))
            continue
        tracklet = _tracklet(mjd, ra, dec, members, f"TK{night}-{len(tracklets) + 1}")
        free[members] = False
        tracklets.append(tracklet)
        labels[members] = tracklet.tracklet_id
    return tracklets, labels


def _tracklet(mjd, ra, dec, members: np.ndarray, name: str) -> Tracklet:
    ra0, dec0 = ra[members[0]], dec[members[0]]
    xi, eta = _offsets(ra[members], dec[members], ra0, dec0)
    hours = mjd[members] * 24.0
    x0, y0, vx, vy, rms = _fit(hours, xi, eta)
    mid_ra, mid_dec = _from_offsets(x0, y0, ra0, dec0)
    return Tracklet(
        tracklet_id=name,
        members=tuple(int(m) for m in members),
        ra=mid_ra,
        dec=mid_dec,
        mjd=float(mjd[members].mean()),
        rate_arcsec_per_hour=float(np.hypot(vx, vy)),
        pa_deg=float(np.degrees(np.arctan2(vx, vy)) % 360),
        rms_arcsec=rms,
    )
