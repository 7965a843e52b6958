"""The shared sky: fields of stars, periodic variables, transients and galaxies.

Besides RR Lyrae and eclipsing binaries, each field holds one *dipper* on purpose: a
star that fades by 1–2 mag at irregular times (quasi-periodic, like the dusty dippers
of young clusters). It is the rare class that anomaly discovery should rank first; the
reference catalogue does not know it is variable.

Every site observes the same sky, so the same star has the same true magnitude
everywhere; what differs between sites is the telescope, the camera and the weather.
Magnitudes are in an AB-like ``g``/``r`` system; the reference catalogue written from
here is the stand-in for Gaia.

Asteroids cross the fields: main-belt objects at 15–60″/h, mostly westward (near
opposition), r = 16–21, and now and then a near-Earth object at 0.5–10°/day, r = 16–19.
Each moves on a straight line at a constant rate (over days, which is good within a
night; there is no orbit and no parallax between sites), so different sites see it at
different places.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["FIELDS", "Field", "Sky", "asteroid_positions", "make_asteroids", "make_sky", "rng_for"]


@dataclass(frozen=True)
class Field:
    """A pointing that every site observes when it can."""

    name: str
    ra: float
    dec: float


#: Fields around RA 9–15 h near the equator: all four sites see them in March nights.
FIELDS = (
    Field("F0930m10", 142.5, -10.0),
    Field("F1100p02", 165.0, 2.0),
    Field("F1230m20", 187.5, -20.0),
    Field("F1400m05", 210.0, -5.0),
)

FIELD_HALF_WIDTH_DEG = 0.22
MJD_DEMO_START = 61117.0  # 2026-03-18, near the start of the demo nights


def rng_for(seed: int, *parts: object) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the given parts (stable across runs)."""
    words = [zlib.crc32(str(p).encode()) for p in parts]
    return np.random.default_rng(np.random.SeedSequence([seed, *words]))


@dataclass
class Sky:
    """Everything on the sky, with the true parameters of every object."""

    stars: pd.DataFrame
    galaxies: pd.DataFrame
    transients: pd.DataFrame
    fields: tuple[Field, ...]
    asteroids: pd.DataFrame = dataclasses.field(
        default_factory=lambda: make_asteroids(0, (), 0.0, 0.0)
    )

    def star_mags(self, mjd: float, band: str, field: str) -> pd.DataFrame:
        """True magnitudes of every star of a field at time ``mjd`` in ``band``."""
        stars = self.stars[self.stars.field == field]
        mag = stars[band].to_numpy() + _variable_delta(stars, mjd, band)
        return stars.assign(mag=mag)

    def transient_mags(self, mjd: float, band: str, field: str) -> pd.DataFrame:
        """True magnitudes of the transients of a field at ``mjd`` (NaN before explosion)."""
        tr = self.transients[self.transients.field == field]
        return tr.assign(mag=transient_mag(tr, mjd, band))

    def asteroid_mags(self, mjd: float, band: str, field: str) -> pd.DataFrame:
        """The asteroids of a field where they are at ``mjd``, with their magnitudes."""
        ast = self.asteroids[self.asteroids.field == field]
        ra, dec = asteroid_positions(ast, mjd)
        return ast.assign(ra=ra, dec=dec, mag=ast[band].to_numpy())


def _variable_delta(stars: pd.DataFrame, mjd: float, band: str) -> np.ndarray:
    scale = 1.0 if band == "g" else 0.7
    phase = ((mjd - stars.t0.to_numpy()) / stars.period.to_numpy()) % 1.0
    amp = stars.amplitude.to_numpy() * scale
    delta = np.zeros(len(stars))
    rr = stars.var_type.to_numpy() == "rrlyrae"
    # RR Lyrae: a fast rise (10 % of the cycle) and a slow decline; mean-zero sawtooth.
    rise = phase < 0.1
    shape = np.where(rise, 1 - phase / 0.1, (phase - 0.1) / 0.9)
    delta[rr] = (amp * (shape - 0.5))[rr]
    eb = stars.var_type.to_numpy() == "eclipsing"
    # Detached eclipsing binary: primary eclipse at phase 0, secondary (40 %) at 0.5.
    width = 0.06
    d0 = np.minimum(phase, 1 - phase)
    d1 = np.abs(phase - 0.5)
    primary = np.clip(1 - d0 / width, 0, 1)
    secondary = 0.4 * np.clip(1 - d1 / width, 0, 1)
    delta[eb] = (amp * (primary + secondary))[eb]
    dip = stars.var_type.to_numpy() == "dipper"
    if dip.any():
        delta[dip] = dipper_delta(mjd, stars.period.to_numpy()[dip], stars.t0.to_numpy()[dip])
        delta[dip] *= stars.amplitude.to_numpy()[dip]
    return delta


def dipper_delta(mjd, period, t0) -> np.ndarray:
    """Fading (0 to 1, times the depth) of a dipper at ``mjd``: irregular dips.

    Three sines of incommensurate periods (``period`` × 1, φ, e) never repeat; the star
    dims where their sum is high, about a fifth of the time, for hours to days.
    """
    t = np.asarray(mjd, dtype=float) - np.asarray(t0, dtype=float)
    p = np.asarray(period, dtype=float)
    s = (
        np.sin(2 * np.pi * t / p)
        + np.sin(2 * np.pi * t / (p * 1.6180339887) + 1.0)
        + np.sin(2 * np.pi * t / (p * 2.7182818285) + 2.0)
    ) / 3
    return np.clip((s - 0.3) / 0.35, 0.0, 1.0)


def transient_mag(tr: pd.DataFrame, mjd: float, band: str) -> np.ndarray:
    """Supernova-like light curve: a logistic rise into an exponential decline.

    ``flux ∝ exp(-(t - t0)/τ_fall) / (1 + exp(-(t - t0)/τ_rise))``, normalised so the
    peak magnitude is ``peak_<band>``; NaN more than ``5 τ_rise`` before ``t0``.
    """
    t = mjd - tr.t0.to_numpy()
    rise = tr.tau_rise.to_numpy()
    fall = tr.tau_fall.to_numpy()
    tpk = rise * np.log(fall / rise - 1.0)
    peak_norm = np.exp(-tpk / fall) / (1 + np.exp(-tpk / rise))
    flux = np.exp(-t / fall) / (1 + np.exp(-t / rise)) / peak_norm
    with np.errstate(divide="ignore"):
        mag = tr[f"peak_{band}"].to_numpy() - 2.5 * np.log10(np.clip(flux, 1e-30, None))
    return np.where(t < -5 * rise, np.nan, mag)


def _field_stars(rng, seed: int, field: Field, n: int) -> list[dict]:
    """A field's stars: number counts, colours, positions, and its variables."""
    # Number counts rising as 10^(0.3 m): inverse-CDF sampling between 12 and 21.5.
    lo, hi, slope = 12.0, 21.5, 0.3 * np.log(10)
    u = rng.random(n)
    r = np.log(np.exp(slope * lo) + u * (np.exp(slope * hi) - np.exp(slope * lo))) / slope
    colour = np.clip(rng.normal(0.65, 0.3, n), -0.2, 1.6)
    cosd = np.cos(np.radians(field.dec))
    ra = field.ra + rng.uniform(-1, 1, n) * FIELD_HALF_WIDTH_DEG / cosd
    dec = field.dec + rng.uniform(-1, 1, n) * FIELD_HALF_WIDTH_DEG
    var_type, period, amplitude, t0 = _variables(rng, seed, field, r)
    return [
        {
            "object_id": f"{field.name}-S{i:05d}",
            "field": field.name,
            "ra": ra[i],
            "dec": dec[i],
            "g": r[i] + colour[i],
            "r": r[i],
            "var_type": var_type[i],
            "period": period[i],
            "amplitude": amplitude[i],
            "t0": t0[i],
        }
        for i in range(n)
    ]


def _variables(rng, seed: int, field: Field, r: np.ndarray):
    """Type, period, amplitude and epoch of each star.

    4 % of those brighter than r = 18.5 are RR Lyrae or eclipsing, one is a dipper, the
    rest are constant.
    """
    n = len(r)
    var_type = np.full(n, "constant", dtype=object)
    period = np.full(n, np.inf)
    amplitude = np.zeros(n)
    t0 = np.zeros(n)
    candidates = np.flatnonzero(r < 18.5)
    n_var = max(4, int(0.04 * len(candidates)))
    chosen = rng.choice(candidates, size=min(n_var, len(candidates)), replace=False)
    half = len(chosen) // 2
    rr, eb = chosen[:half], chosen[half:]
    var_type[rr] = "rrlyrae"
    period[rr] = rng.uniform(0.35, 0.75, len(rr))
    amplitude[rr] = rng.uniform(0.5, 1.0, len(rr))
    var_type[eb] = "eclipsing"
    period[eb] = rng.uniform(0.4, 3.0, len(eb))
    amplitude[eb] = rng.uniform(0.3, 0.8, len(eb))
    t0[chosen] = MJD_DEMO_START + rng.uniform(0, 1, len(chosen)) * period[chosen]
    # One dipper per field, from its own random stream so nothing else changes.
    odd_rng = rng_for(seed, "dipper", field.name)
    pool = np.flatnonzero((var_type == "constant") & (r > 14.5) & (r < 17.0))
    if pool.size:
        d = odd_rng.choice(pool)
        var_type[d] = "dipper"
        period[d] = odd_rng.uniform(1.0, 2.5)
        amplitude[d] = odd_rng.uniform(1.0, 2.0)
        t0[d] = MJD_DEMO_START + odd_rng.uniform(0, 10)
    return var_type, period, amplitude, t0


#: Galaxies per field.
GALAXIES_PER_FIELD = 12


def _field_galaxies(rng, field: Field) -> list[dict]:
    """A field's galaxies (r 15.5–18.5, radius 2–4.5″)."""
    n_gal = GALAXIES_PER_FIELD
    cosd = np.cos(np.radians(field.dec))
    g_ra = field.ra + rng.uniform(-0.8, 0.8, n_gal) * FIELD_HALF_WIDTH_DEG / cosd
    g_dec = field.dec + rng.uniform(-0.8, 0.8, n_gal) * FIELD_HALF_WIDTH_DEG
    g_r = rng.uniform(15.5, 18.5, n_gal)
    return [
        {
            "object_id": f"{field.name}-G{i:03d}",
            "field": field.name,
            "ra": g_ra[i],
            "dec": g_dec[i],
            "r": g_r[i],
            "g": g_r[i] + 0.7,
            "radius_arcsec": rng.uniform(2.0, 4.5),
            "axis_ratio": rng.uniform(0.4, 1.0),
            "pa_deg": rng.uniform(0, 180),
        }
        for i in range(n_gal)
    ]


def _field_transients(rng, field: Field, galaxies: list[dict]) -> list[dict]:
    """A field's three transients: two in galaxies (near their centres), one alone."""
    cosd = np.cos(np.radians(field.dec))
    rows = []
    for i in range(3):
        if i < 2:  # on a galaxy
            host = galaxies[i]
            off = rng.normal(0, 1.0, 2) / 3600
            t_ra, t_dec = host["ra"] + off[0] / cosd, host["dec"] + off[1]
            host_id = host["object_id"]
        else:
            t_ra = field.ra + rng.uniform(-0.6, 0.6) * FIELD_HALF_WIDTH_DEG / cosd
            t_dec = field.dec + rng.uniform(-0.6, 0.6) * FIELD_HALF_WIDTH_DEG
            host_id = ""
        peak_r = rng.uniform(16.5, 18.5)
        rows.append(
            {
                "object_id": f"{field.name}-T{i:02d}",
                "field": field.name,
                "ra": t_ra,
                "dec": t_dec,
                "host": host_id,
                "t0": MJD_DEMO_START + rng.uniform(-8, 4),
                "tau_rise": rng.uniform(2.0, 5.0),
                "tau_fall": rng.uniform(15.0, 40.0),
                "peak_r": peak_r,
                "peak_g": peak_r + rng.uniform(-0.3, 0.3),
            }
        )
    return rows


#: Asteroids whose track passes through each field, per day: main belt and near-Earth.
MAIN_BELT_PER_DAY = 2.0
NEO_PER_DAY = 0.5
ASTEROID_COLUMNS = (
    "object_id", "field", "kind", "mjd_ref", "ra_ref", "dec_ref",
    "rate_arcsec_per_hour", "pa_deg", "r", "g",
)  # fmt: skip


def make_asteroids(seed: int, fields, mjd_start: float, mjd_end: float) -> pd.DataFrame:
    """Asteroids crossing ``fields`` between ``mjd_start`` and ``mjd_end``.

    Each is at a random place of its field at a random time ``mjd_ref`` of the span
    (widened by a day each side, so that the first night is not empty) and moves at
    ``rate_arcsec_per_hour`` towards ``pa_deg`` (east of north).
    """
    rows = []
    days = max(mjd_end - mjd_start, 0.0) + 2.0
    for f in fields:
        rng = rng_for(seed, "asteroids", f.name)
        cosd = np.cos(np.radians(f.dec))
        for kind, per_day in (("main_belt", MAIN_BELT_PER_DAY), ("neo", NEO_PER_DAY)):
            n = int(rng.poisson(per_day * days)) if mjd_end > mjd_start else 0
            for i in range(n):
                neo = kind == "neo"
                # Main belt: 15–60″/h westward ±20°; NEO: 0.5–10°/day in any direction.
                rate = rng.uniform(75, 1500) if neo else rng.uniform(15, 60)
                pa = rng.uniform(0, 360) if neo else rng.normal(270, 20)
                r = rng.uniform(16, 19) if neo else 16 + 5 * rng.power(3.0)
                rows.append({
                    "object_id": f"{f.name}-{'N' if neo else 'A'}{i:03d}",
                    "field": f.name,
                    "kind": kind,
                    "mjd_ref": mjd_start - 1 + rng.uniform(0, days),
                    "ra_ref": f.ra + rng.uniform(-1, 1) * FIELD_HALF_WIDTH_DEG / cosd,
                    "dec_ref": f.dec + rng.uniform(-1, 1) * FIELD_HALF_WIDTH_DEG,
                    "rate_arcsec_per_hour": rate,
                    "pa_deg": pa % 360,
                    "r": r,
                    "g": r + 0.4,
                })  # fmt: skip
    numeric = dict.fromkeys(ASTEROID_COLUMNS[3:], float)  # typed even when empty
    return pd.DataFrame(rows, columns=list(ASTEROID_COLUMNS)).astype(numeric)


def asteroid_positions(asteroids: pd.DataFrame, mjd) -> tuple[np.ndarray, np.ndarray]:
    """Where each asteroid is at ``mjd`` (degrees)."""
    hours = (np.asarray(mjd, float) - asteroids.mjd_ref.to_numpy()) * 24.0
    rate = asteroids.rate_arcsec_per_hour.to_numpy() / 3600.0  # degrees per hour
    pa = np.radians(asteroids.pa_deg.to_numpy())
    dec = asteroids.dec_ref.to_numpy() + rate * np.cos(pa) * hours
    ra = asteroids.ra_ref.to_numpy() + rate * np.sin(pa) * hours / np.cos(np.radians(dec))
    return ra, dec


def make_sky(
    seed: int,
    fields: tuple[Field, ...] = FIELDS,
    stars_per_field: int = 1400,
    mjd_span: tuple[float, float] = (0.0, 0.0),
) -> Sky:
    """Generate the shared sky.

    Parameters
    ----------
    seed : int
        Everything is a deterministic function of the seed.
    fields : tuple of Field
        Pointings to populate.
    stars_per_field : int
        Stars per field between r = 12 and 21.5 (about 1/3 of them land on one frame).
    mjd_span : tuple of float
        When asteroids cross the fields (none by default).

    Returns
    -------
    Sky
    """
    star_rows, gal_rows, tr_rows = [], [], []
    for field in fields:
        rng = rng_for(seed, "sky", field.name)
        star_rows += _field_stars(rng, seed, field, stars_per_field)
        galaxies = _field_galaxies(rng, field)
        gal_rows += galaxies
        tr_rows += _field_transients(rng, field, galaxies)
    return Sky(
        stars=pd.DataFrame(star_rows),
        galaxies=pd.DataFrame(gal_rows),
        transients=pd.DataFrame(tr_rows),
        fields=tuple(fields),
        asteroids=make_asteroids(seed, fields, *mjd_span),
    )
