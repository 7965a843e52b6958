"""Variability of a light curve: statistics, period and class.

The period comes from a Lomb–Scargle periodogram (with its false-alarm probability) and
box least squares, judged with alias checks.

Pure functions on arrays (time in days, magnitudes, errors, band names).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CLASSES",
    "FEATURES",
    "VARYING",
    "Variability",
    "against_ensemble",
    "characterise",
    "day_alias",
    "ensemble_z",
    "is_alias",
    "period_search",
]

CLASSES = ("constant", "periodic", "eclipsing", "irregular", "seeing_dependent", "too_few")
#: The classes that call an object variable.
VARYING = ("periodic", "eclipsing", "irregular")
#: Light-curve features given to the isolation forest (see ``anomalies``).
FEATURES = (
    "chi2_red",
    "amplitude",
    "std",
    "skew",
    "eta",
    "beyond_2sigma",
    "ls_power",
    "log_fap",
    "log_period",
)

MIN_EPOCHS = 8
#: A period is believed when its Lomb–Scargle false-alarm probability is below this.
FAP_PERIODIC = 1e-3
#: A curve varies when its reduced χ² about the mean, its most deviant point left out,
#: exceeds this.
CHI2_VARIABLE = 5.0
#: A curve varies only when its χ² also stands this many robust σ above the χ² of the
#: objects of its brightness in the same data (:func:`ensemble_z`): errors are never
#: exactly right (flat fields, crowding, zero points), and most stars are constant.
ENSEMBLE_Z = 4.0
#: Objects per magnitude bin of the ensemble; with fewer objects in all than this, there
#: is no ensemble and χ² alone decides.
ENSEMBLE_BIN = 100
#: A varying curve is ``seeing_dependent`` (a galaxy or a blend measured through an
#: aperture that grows with the seeing, not a star that varies) when a linear term in the
#: frames' seeing leaves a reduced χ² below :data:`CHI2_VARIABLE` or this fraction of
#: the χ² it had. On the demo of 2026-12-07 the term left 1–20 % of the χ² of every
#: galaxy and blend called variable, and 106 % of that of every simulated variable.
SEEING_EXPLAINED = 0.1
#: Below this relative string-length margin over the best unrelated candidate, the
#: period may be an alias (flagged ``alias_risk``).
ALIAS_MARGIN = 0.05
#: A period is also believed when its string length lies this many robust σ below
#: that of random trial periods.
JUDGE_Z_PERIODIC = 5.0
#: The sampling's own periods (days): a site sees a field at about the same hour every
#: night (the solar day), and a field returns to the same hour angle every sidereal day.
DAY_PERIODS = {"1-day": 1.0, "sidereal": 0.99726958}
#: A period is flagged (``day_alias``) when its frequency lies within this fraction of
#: k cycles per day (k = 1–4) or of 1/k per day (k = 2, 3): what a few nights of
#: nightly sampling cannot tell from the day itself.
DAY_ALIAS_TOL = 0.02
#: How many leading period candidates are judged again at their own best frequency.
N_REFINE = 2
#: A doubled period (of a curve that is not eclipse-like) is kept only when it fits
#: better than the period itself at this significance (:func:`_doubling_holds`).
DOUBLING_P = 1e-3
#: Magnitudes skewed beyond this (mostly bright, sometimes much fainter) look like eclipses.
ECLIPSE_SKEW = 0.75


@dataclass
class Variability:
    """What :func:`characterise` finds."""

    n_epochs: int
    n_bands: int
    baseline_days: float
    chi2_red: float
    chi2_red_robust: float
    chi2_red_seeing: float
    seeing_slope: float
    amplitude: float
    std: float
    skew: float
    eta: float
    beyond_2sigma: float
    period: float
    ls_power: float
    fap: float
    log_fap: float
    log_period: float
    alias_of: float
    alias_margin: float
    alias_risk: bool
    day_alias: str
    var_class: str

    def as_dict(self) -> dict:
        """A flat dict (for a table row)."""
        return asdict(self)


def _band_centered(mag, err, band):
    """Magnitudes minus each band's weighted mean, and the per-band means."""
    out = np.empty_like(mag)
    for b in np.unique(band):
        sel = band == b
        w = 1 / err[sel] ** 2
        out[sel] = mag[sel] - np.sum(w * mag[sel]) / np.sum(w)
    return out


def _fourier_chi2(t, y, dy, band, period: float, nterms: int = 3) -> float:
    """χ² of a Fourier series of ``nterms`` harmonics at ``period``, fitted per band.

    Each band gets its own coefficients (amplitudes differ between bands), and the χ²
    of the bands add up. The same number of harmonics for every candidate keeps the
    comparison fair: at twice the true period only the even harmonics are free.
    """
    return _fourier_fit(t, y, dy, band, period, nterms)[0]


def _fourier_fit(t, y, dy, band, period: float, nterms: int) -> tuple[float, int]:
    """χ² and number of free parameters of :func:`_fourier_chi2`'s fit."""
    total, n_params = 0.0, 0
    for b in np.unique(band):
        sel = band == b
        nt = max(1, min(nterms, (int(sel.sum()) - 1) // 4))
        phase = 2 * np.pi * t[sel] / period
        cols = [np.ones(sel.sum())]
        for k in range(1, nt + 1):
            cols += [np.sin(k * phase), np.cos(k * phase)]
        a = np.column_stack(cols) / dy[sel, None]
        coef, *_ = np.linalg.lstsq(a, y[sel] / dy[sel], rcond=None)
        total += float(np.sum((a @ coef - y[sel] / dy[sel]) ** 2))
        n_params += len(cols)
    return total, n_params


def _refine(judge, t, y, dy, band, f0: float, step: float) -> tuple[float, float]:
    """The frequency near ``f0`` (within one grid ``step``) that the judge likes best."""
    f, best = f0, judge(t, y, dy, band, 1 / f0)
    for width in (step, step / 6):
        grid = f + np.linspace(-width, width, 7)
        values = [judge(t, y, dy, band, 1 / g) for g in grid]
        if min(values) < best:
            f, best = float(grid[int(np.argmin(values))]), float(min(values))
    return f, best


def _doubling_holds(t, y, dy, band, period: float) -> bool:
    """Whether twice ``period`` fits significantly better than ``period`` itself.

    Nested models: 6 harmonics at twice the period hold every curve of 3 harmonics at
    the period, plus the odd harmonics that make alternate cycles differ (unequal
    eclipses). An F-test on the χ² they gain, at :data:`DOUBLING_P`. Without it, three
    harmonics at the doubled period absorb noise with their two odd ones and win by
    chance (a real RRc pulsator came out "eclipsing" at twice its period).
    """
    from scipy.stats import f as f_dist

    single, p_single = _fourier_fit(t, y, dy, band, period, 3)
    double, p_double = _fourier_fit(t, y, dy, band, 2 * period, 6)
    dof = len(t) - p_double
    if p_double <= p_single or dof <= 0 or double <= 0:
        return False
    stat = ((single - double) / (p_double - p_single)) / (double / dof)
    return bool(f_dist.sf(stat, p_double - p_single, dof) < DOUBLING_P)


def _string_length(t, y, dy, band, period: float) -> float:
    """Lafler–Kinman string length, summed over bands.

    Phase-adjacent points differ little at the right period, whatever the light curve's
    shape (a narrow eclipse included).
    """
    total = 0.0
    phase = (t / period) % 1.0
    for b in np.unique(band):
        sel = np.flatnonzero(band == b)
        order = sel[np.argsort(phase[sel])]
        ys = y[order]
        var = np.sum((ys - ys.mean()) ** 2)
        if len(ys) < 3 or var <= 0:
            continue
        diffs = np.diff(np.r_[ys, ys[:1]])
        total += float(np.sum(diffs**2) / var)
    return total


def _bls_peaks(t, y, dy, freq, n_peaks: int) -> list[float]:
    """Frequencies of the highest box-least-squares peaks (dips: magnitudes going up)."""
    from astropy.timeseries import BoxLeastSquares

    if len(freq) > 50_000:
        freq = np.linspace(freq[0], freq[-1], 50_000)
    periods = 1 / freq[::-1]
    durations = [d for d in (0.03, 0.06, 0.12, 0.24) if d < periods.min()]
    if not durations:
        return []
    result = BoxLeastSquares(t, -y, dy).power(periods, durations, objective="snr")
    power = np.asarray(result.power)
    interior = (power[1:-1] > power[:-2]) & (power[1:-1] >= power[2:])
    peaks = np.flatnonzero(interior) + 1
    peaks = peaks[np.argsort(power[peaks])[::-1]][:n_peaks]
    return [float(1 / periods[i]) for i in peaks]


def _choose(judge, t, y, dy, band, candidates: list, chi2, gram, eclipses: bool) -> int:
    """Index of the winning candidate (``candidates`` and ``chi2`` refined in place).

    The first half of ``candidates`` are single periods, the second their doubles. The
    periodogram's grid (a tenth of a peak's width) can leave the phase drifting by 5 % of
    a cycle over the baseline, which a sharp light curve's harmonics feel: the leading
    candidates are judged again at their own best frequency, each doubled one with its
    single (at a frequency slightly off, the doubled one, whose harmonics stop lower,
    can win by that alone). A doubled winner of a curve that is not eclipse-like must
    fit significantly better than its single (:func:`_doubling_holds`).
    """
    step = gram.freq[1] - gram.freq[0]
    n_single = len(candidates) // 2
    for j in sorted({int(i) % n_single for i in np.argsort(chi2)[:N_REFINE]}):
        for i in (j, j + n_single):
            f, chi2[i] = _refine(
                judge, t, y, dy, band, 1 / candidates[i], step / (1 + i // n_single)
            )
            candidates[i] = 1 / f
    best = int(np.argmin(chi2))
    doubled = best >= n_single
    if doubled and not eclipses and not _doubling_holds(t, y, dy, band, candidates[best] / 2):
        best = int(np.argmin(chi2[:n_single]))
    return best


def period_search(
    t,
    y,
    dy,
    band=None,
    min_period: float = 0.1,
    max_period: float = 30.0,
    n_peaks: int = 5,
    eclipses: bool = False,
) -> dict:
    """A period with its false-alarm probability, chosen among aliases.

    Candidates: the ``n_peaks`` highest peaks of the Lomb–Scargle periodogram (astropy,
    floating mean, all bands centred together); their 1- and 2-day aliases (``|f ± k|``
    per day, refined to the nearest periodogram maximum: sparse nightly sampling makes
    these nearly as high as the truth); and twice each. They are judged by the χ² of a
    3-harmonic Fourier fit per band. With ``eclipses`` (a curve that is mostly bright
    with short deep fadings), the highest box-least-squares peaks join the candidates
    and the judge is the Lafler–Kinman string length of the folded curve, which
    assumes no shape (a few harmonics cannot follow a narrow eclipse).

    Returns
    -------
    dict
        ``period``; ``ls_power`` (the periodogram's highest peak) and its ``fap``
        (Baluev); ``alias_of`` (the periodogram's own best period when another was
        chosen, else NaN); ``doubled`` (twice a peak's period); ``judge_z`` (how many
        robust σ the chosen string length lies below those of random periods);
        ``alias_margin`` (relative string-length margin over the best unrelated
        candidate) and ``alias_risk`` (margin below :data:`ALIAS_MARGIN`).
    """
    t, y, dy = (np.asarray(a, float) for a in (t, y, dy))
    band = np.asarray(band if band is not None else np.zeros(len(t)))
    baseline = t.max() - t.min()
    max_period = min(max_period, max(baseline / 2, min_period * 2))
    gram = _periodogram(t, y, dy, min_period, max_period, n_peaks)
    frequencies = _alias_frequencies(gram, baseline)
    if eclipses:
        frequencies += _bls_peaks(t, y, dy, gram.freq, n_peaks)
    frequencies = list(dict.fromkeys(frequencies))
    candidates = [1 / f for f in frequencies] + [2 / f for f in frequencies]
    doubled_flags = [False] * len(frequencies) + [True] * len(frequencies)
    judge = _string_length if eclipses else _fourier_chi2
    chi2 = np.array([judge(t, y, dy, band, p) for p in candidates])
    best = _choose(judge, t, y, dy, band, candidates, chi2, gram, eclipses)
    chosen = float(candidates[best])
    best_f = gram.freq[gram.peaks[0]]
    top = float(gram.power[gram.peaks[0]])
    fap = float(
        gram.ls.false_alarm_probability(
            top, method="baluev", minimum_frequency=gram.fmin, maximum_frequency=gram.fmax
        )
    )
    # How clearly the chosen period beats the best unrelated one (not itself, half or
    # double): a small margin means an alias could be the truth.
    related = [any(abs(p / (chosen * k) - 1) < 0.01 for k in (0.5, 1.0, 2.0)) for p in candidates]
    rivals = chi2[~np.array(related)]
    margin = float(rivals.min() / chi2[best] - 1) if rivals.size else float("inf")
    switched = not np.isclose(chosen, 1 / best_f, rtol=1e-6)
    # How far the chosen period's dispersion lies below that of arbitrary periods: a
    # significance that does not assume a sinusoid (the periodogram's FAP does).
    trial = np.random.default_rng(0).uniform(min_period, max_period, 64)
    null = np.array([judge(t, y, dy, band, p) for p in trial])
    mad = 1.4826 * np.median(np.abs(null - np.median(null)))
    judge_z = float((np.median(null) - chi2[best]) / max(mad, 1e-12))
    return {
        "period": chosen,
        "ls_power": top,
        "fap": fap,
        "alias_of": float(1 / best_f) if switched else float("nan"),
        "doubled": bool(doubled_flags[best]),
        "judge_z": judge_z,
        "alias_margin": margin,
        "alias_risk": bool(margin < ALIAS_MARGIN),
    }


@dataclass
class _Periodogram:
    """A Lomb–Scargle periodogram on a regular frequency grid and its highest peaks."""

    ls: Any
    freq: np.ndarray
    power: np.ndarray
    peaks: np.ndarray  # indices of the highest local maxima, highest first
    fmin: float
    fmax: float


def _periodogram(t, y, dy, min_period, max_period, n_peaks) -> _Periodogram:
    from astropy.timeseries import LombScargle

    baseline = t.max() - t.min()
    ls = LombScargle(t, y, dy)
    fmin, fmax = 1 / max_period, 1 / min_period
    # Peaks are ~1/baseline wide: ten grid points across each.
    n = int(min(10 * baseline * (fmax - fmin), 2_000_000)) + 1
    freq = np.linspace(fmin, fmax, max(n, 1000))
    power = ls.power(freq, method="fast", assume_regular_frequency=True)
    # Local maxima, highest first.
    interior = (power[1:-1] > power[:-2]) & (power[1:-1] >= power[2:])
    peaks = np.flatnonzero(interior) + 1
    peaks = peaks[np.argsort(power[peaks])[::-1]][:n_peaks]
    if peaks.size == 0:
        peaks = np.array([int(np.argmax(power))])
    return _Periodogram(ls, freq, power, peaks, fmin, fmax)


def _alias_frequencies(gram: _Periodogram, baseline: float) -> list[float]:
    """Each peak's frequency and its 1- and 2-day aliases (refined to the nearest maximum)."""
    freq, power, fmin = gram.freq, gram.power, gram.fmin
    step = freq[1] - freq[0]
    half_width = max(2, round(2 / max(baseline, 1e-3) / step))

    def refine(f: float) -> float | None:
        i = round((f - fmin) / step)
        if i < 0 or i >= len(freq):
            return None
        lo, hi = max(0, i - half_width), min(len(freq), i + half_width + 1)
        return float(freq[lo + int(np.argmax(power[lo:hi]))])

    frequencies = []
    for f in freq[gram.peaks]:
        frequencies.append(float(f))
        for k in (1, 2):
            for alias in (f + k, abs(f - k)):
                g = refine(alias)
                if g is not None:
                    frequencies.append(g)
    return frequencies


def _second_minimum(t, y, dy, period: float, width: float = 0.05) -> bool:
    """Whether the curve folded at ``period`` dips again half a cycle after its minimum.

    An eclipsing binary folded at its true period shows both eclipses; folded at half
    of it, the two overlay into one.
    """
    phase = (t / period) % 1.0
    faint = np.argsort(y)[-max(2, len(y) // 20) :]
    ang = 2 * np.pi * phase[faint]
    phi0 = (np.arctan2(np.sin(ang).mean(), np.cos(ang).mean()) / (2 * np.pi)) % 1.0

    def dist(a, b):
        d = np.abs(a - b) % 1.0
        return np.minimum(d, 1 - d)

    second = dist(phase, phi0 + 0.5) < width
    outside = (dist(phase, phi0) > 2 * width) & (dist(phase, phi0 + 0.5) > 2 * width)
    if second.sum() < 2 or outside.sum() < 5:
        return False
    base = np.median(y[outside])
    scatter = 1.4826 * np.median(np.abs(y[outside] - base))
    noise = np.hypot(scatter, np.median(dy[second])) / np.sqrt(second.sum())
    return bool(np.median(y[second]) - base > 3 * noise)


def _seeing_fit(y, err, seeing, dof: int) -> tuple[float, float]:
    """Reduced χ² left by one linear term in the seeing, and its slope (mag/arcsec).

    NaN for both when a point has no seeing or the seeing did not change.
    """
    if not np.isfinite(seeing).all() or np.ptp(seeing) == 0 or dof < 2:
        return float("nan"), float("nan")
    w = 1 / err**2
    x = seeing - np.average(seeing, weights=w)
    slope = float(np.sum(w * x * y) / np.sum(w * x**2))
    return float(np.sum(w * (y - slope * x) ** 2) / (dof - 1)), slope


def _too_few(t, band) -> Variability:
    """What :func:`characterise` says of a curve with fewer than :data:`MIN_EPOCHS`."""
    unknown = {f.name: float("nan") for f in fields(Variability) if f.type == "float"}
    return Variability(
        n_epochs=len(t),
        n_bands=len(np.unique(band)),
        baseline_days=float(np.ptp(t)) if len(t) else 0.0,
        alias_risk=False,
        day_alias="",
        var_class="too_few",
        **{k: v for k, v in unknown.items() if k != "baseline_days"},
    )


def characterise(t, mag, err, band=None, seeing=None) -> Variability:
    """Statistics, period and class of one object's light curve (all bands together).

    Each band is centred on its own weighted mean, so colours do not look like
    variability; the period search runs on all bands at once. With ``seeing`` (each
    point's frame seeing, arcsec), a curve whose changes the seeing explains is
    ``seeing_dependent``, not variable (:data:`SEEING_EXPLAINED`).
    """
    t, mag, err = (np.asarray(a, float) for a in (t, mag, err))
    band = np.asarray(band if band is not None else np.zeros(len(t), dtype=object))
    seeing = np.full(len(t), np.nan) if seeing is None else np.asarray(seeing, float)
    good = np.isfinite(t) & np.isfinite(mag) & np.isfinite(err) & (err > 0)
    t, mag, err, band, seeing = t[good], mag[good], err[good], band[good], seeing[good]
    n = len(t)
    if n < MIN_EPOCHS:
        return _too_few(t, band)
    y = _band_centered(mag, err, band)
    dof = n - len(np.unique(band))
    pulls2 = (y / err) ** 2
    chi2_red = float(pulls2.sum() / max(dof, 1))
    # Without its most deviant point: one hot pixel, a neighbour's cosmic ray or a
    # satellite crossing the aperture on one frame does not make a star variable.
    keep = np.arange(n) != np.argmax(pulls2)
    rest = _band_centered(mag[keep], err[keep], band[keep])
    rest_dof = keep.sum() - len(np.unique(band[keep]))
    chi2_robust = float(np.sum((rest / err[keep]) ** 2) / max(rest_dof, 1))
    p5, p95 = np.percentile(y, [5, 95])
    std = float(np.std(y))
    skew = float(np.mean((y - y.mean()) ** 3) / max(std, 1e-9) ** 3)
    order = np.argsort(t)
    ys = y[order]
    eta = float(np.sum(np.diff(ys) ** 2) / (n - 1) / max(np.var(ys), 1e-12))
    beyond = float(np.mean(np.abs(y - y.mean()) > 2 * std))
    chi2_seeing, slope = _seeing_fit(y, err, seeing, dof)
    eclipse_like = skew > ECLIPSE_SKEW
    ps = period_search(t, y, err, band, eclipses=eclipse_like)
    significant = ps["fap"] < FAP_PERIODIC or ps["judge_z"] > JUDGE_Z_PERIODIC
    periodic = significant and chi2_robust > CHI2_VARIABLE
    # Eclipses: the star sits at maximum light and spends a little time much fainter
    # (magnitudes skew positive). Folded at half the period, primary and secondary
    # eclipses overlay into a tighter curve, so the search prefers half; an
    # eclipsing binary's period is twice that, the convention of every EB catalogue.
    if periodic and eclipse_like and not _second_minimum(t, y, err, ps["period"]):
        ps["alias_of"] = ps["period"]
        ps["period"] *= 2
        ps["doubled"] = True
    near_day = day_alias(ps["period"])
    follows_seeing = chi2_seeing <= max(CHI2_VARIABLE, SEEING_EXPLAINED * chi2_red)
    if chi2_robust > CHI2_VARIABLE and follows_seeing:
        var_class = "seeing_dependent"
    elif periodic:
        var_class = "eclipsing" if eclipse_like or ps["doubled"] else "periodic"
    elif chi2_robust > CHI2_VARIABLE:
        var_class = "irregular"
    else:
        var_class = "constant"
    return Variability(
        n_epochs=n,
        n_bands=len(np.unique(band)),
        baseline_days=float(np.ptp(t)),
        chi2_red=chi2_red,
        chi2_red_robust=chi2_robust,
        chi2_red_seeing=chi2_seeing,
        seeing_slope=slope,
        amplitude=float(p95 - p5),
        std=std,
        skew=skew,
        eta=eta,
        beyond_2sigma=beyond,
        period=ps["period"],
        ls_power=ps["ls_power"],
        fap=ps["fap"],
        log_fap=float(np.log10(max(ps["fap"], 1e-300))),
        log_period=float(np.log10(ps["period"])),
        alias_of=ps["alias_of"],
        alias_margin=ps["alias_margin"],
        alias_risk=ps["alias_risk"] or bool(near_day),
        day_alias=near_day,
        var_class=var_class,
    )


def is_alias(found: float, true: float, tol: float = 0.01) -> bool:
    """Whether ``found`` is a classic alias of ``true``: ×2, ×½, or 1/P ± k/day (k ≤ 2)."""
    if abs(found / true - 1) < tol:
        return False
    for ratio in (2.0, 0.5, 3.0, 1 / 3):
        if abs(found / (true * ratio) - 1) < tol:
            return True
    f_true, f = 1 / true, 1 / found
    return any(abs(f - (f_true + k)) < tol * f_true for k in (-2, -1, 1, 2))


def day_alias(period: float, tol: float = DAY_ALIAS_TOL) -> str:
    """Which of the sampling's own periods ``period`` sits on ("" for none).

    Near one cycle per solar or sidereal day, a harmonic of it (2, 3, 4 per day) or a
    subharmonic (every 2 or 3 days), a period found from nightly sampling may be the
    sampling's and not the star's: it is flagged, not rejected (a real 0.5-day RR Lyrae
    is flagged too, rightly: few nights cannot tell it from the alias). The name is the
    nearer of the two days.

    >>> day_alias(0.999), day_alias(0.4987), day_alias(2.01), day_alias(0.61)
    ('1-day', 'sidereal', '1-day', '')
    """
    if not np.isfinite(period) or period <= 0:
        return ""
    f = 1.0 / period
    best, name = np.inf, ""
    for label, day in DAY_PERIODS.items():
        for k in (1, 2, 3, 4, 1 / 2, 1 / 3):
            off = abs(f / (k / day) - 1)
            if off < tol and off < best:
                best, name = off, label
    return name


def ensemble_z(chi2_red, mag, per_bin: int = ENSEMBLE_BIN) -> np.ndarray:
    """How many robust σ each object's log χ²_red lies above its brightness's ensemble.

    The objects are split into magnitude bins of about ``per_bin`` each (quantiles of
    ``mag``); within a bin, the median and 1.4826 × MAD of log10 χ²_red describe the
    constant majority, whatever the photometric errors got wrong at that brightness
    (the comparison-star method of variability surveys). NaN where χ²_red or the
    magnitude is not finite, and everywhere when fewer than ``per_bin`` objects have both.

    >>> rng = np.random.default_rng(1)
    >>> chi2 = 3 * rng.chisquare(40, 400) / 40  # errors underestimated by √3
    >>> z = ensemble_z(np.r_[chi2, 30.0], np.r_[rng.uniform(12, 18, 400), 15.0])
    >>> bool((z[:-1] > ENSEMBLE_Z).mean() < 0.01), bool(z[-1] > ENSEMBLE_Z)
    (True, True)
    """
    chi2 = np.asarray(chi2_red, float)
    mag = np.asarray(mag, float)
    z = np.full(chi2.shape, np.nan)
    ok = np.isfinite(chi2) & (chi2 > 0) & np.isfinite(mag)
    if ok.sum() < per_bin:
        return z
    x = np.log10(chi2[ok])
    n_bins = int(ok.sum() // per_bin)
    edges = np.quantile(mag[ok], np.linspace(0, 1, n_bins + 1))
    which = np.clip(np.searchsorted(edges, mag[ok], side="right") - 1, 0, n_bins - 1)
    zs = np.empty(x.size)
    for b in range(n_bins):
        here = which == b
        centre = np.median(x[here])
        scale = 1.4826 * np.median(np.abs(x[here] - centre))
        zs[here] = (x[here] - centre) / max(scale, 1e-6)
    z[ok] = zs
    return z


def against_ensemble(table: pd.DataFrame) -> pd.DataFrame:
    """Objects' classes judged against each other: a copy with ``ensemble_z``.

    ``table`` holds one row per object (the fields of :class:`Variability` and the
    object's ``median_<band>`` magnitudes). An object called periodic, eclipsing or
    irregular keeps its class only when its χ² lies more than :data:`ENSEMBLE_Z` robust σ
    above that of the objects of its brightness (:func:`ensemble_z`); otherwise it is
    ``constant``. Where there are too few objects for an ensemble (``ensemble_z`` NaN),
    the classes stay as χ² alone made them.
    """
    bands = [c for c in table.columns if c.startswith("median_")]
    mag = table[bands].median(axis=1).to_numpy() if bands else np.full(len(table), np.nan)
    z = ensemble_z(table.chi2_red_robust.to_numpy(float), mag)
    out = table.assign(ensemble_z=z)
    varying = out.var_class.isin(VARYING).to_numpy()
    out.loc[varying & (z <= ENSEMBLE_Z), "var_class"] = "constant"
    return out
