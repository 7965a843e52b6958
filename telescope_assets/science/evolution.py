"""How a transient evolves: its rate, its coming magnitudes, when it fades out of reach.

The light curve is fitted with Bazin et al.'s (2009, A&A 499, 653) function, the usual
empirical shape of supernova light curves in survey pipelines::

    f_b(t) = A_b exp(-(t - t0) / τ_fall) / (1 + exp(-(t - t0) / τ_rise))

one amplitude per band, the times shared, in flux (so a point near the limit weighs what
its error says). A few detections over two or three nights cannot pin four parameters,
so the timescales have weak priors (log-normal, a factor e wide) around the values of
observed supernovae (τ_rise 3 d, τ_fall 30 d); the data override them when they can. The
uncertainty of every prediction comes from the fit's covariance, by drawing 200 parameter
sets.

Pure code: no Dagster, no lake. Used by ``tasks/followup.py`` (follow-up ranks objects by
priority and stops when an object is predicted too faint).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["PRIOR_TAU_FALL", "PRIOR_TAU_RISE", "Evolution", "fit_evolution"]

#: Prior centres (days) of the rise and fall timescales, and their width (natural log).
PRIOR_TAU_RISE, PRIOR_TAU_FALL, PRIOR_WIDTH = 3.0, 30.0, 1.0
#: Magnitude zero point of the internal flux unit.
_ZP = 25.0
#: Parameter draws behind each prediction's uncertainty.
DRAWS = 200


def _log_bazin(t, t0, tau_rise, tau_fall):
    """Natural log of the Bazin shape (without its amplitude), safe far from the peak."""
    x = t - t0
    return -x / tau_fall - np.logaddexp(0.0, -x / tau_rise)


@dataclass
class Evolution:
    """A fitted light curve: where it is going and when it fades out of reach."""

    bands: tuple[str, ...]
    params: np.ndarray  # t0, log τ_rise, log τ_fall, then log A per band
    cov: np.ndarray
    last_mjd: float
    n_points: int
    n_nights: int
    ok: bool
    message: str = ""

    @cached_property
    def _draws(self) -> np.ndarray:
        """:data:`DRAWS` parameter sets from the fit's covariance (drawn once, seed 0)."""
        rng = np.random.default_rng(0)
        return rng.multivariate_normal(self.params, self.cov, DRAWS, method="eigh")

    def _mag(self, p: np.ndarray, mjd, band: str) -> np.ndarray:
        """Magnitudes of parameter sets ``p`` (one per row) at ``mjd``: (sets, times).

        A band the object was not seen in takes the light curve of the first one that it
        was (an approximation: colours change as a supernova ages).
        """
        p = np.atleast_2d(p)
        k = 3 + (self.bands.index(band) if band in self.bands else 0)
        t = np.atleast_1d(np.asarray(mjd, float))[None, :]
        log_flux = p[:, k, None] + _log_bazin(
            t, p[:, 0, None], np.exp(p[:, 1, None]), np.exp(p[:, 2, None])
        )
        return _ZP - 2.5 / np.log(10.0) * log_flux

    def magnitude(self, mjd, band: str) -> np.ndarray:
        """The best fit's magnitude in ``band`` at ``mjd`` (array), without uncertainty."""
        return self._mag(self.params, mjd, band)[0]

    def predict(self, mjd, band: str) -> tuple[np.ndarray, np.ndarray]:
        """Magnitude in ``band`` at ``mjd`` (array) and its 1σ uncertainty."""
        mjd = np.atleast_1d(np.asarray(mjd, float))
        best = self.magnitude(mjd, band)
        spread = self._mag(self._draws, mjd, band)
        lo, hi = np.percentile(spread, [16, 84], axis=0)
        return best, (hi - lo) / 2

    def rate(self, band: str, mjd: float | None = None) -> tuple[float, float]:
        """Magnitudes per day at ``mjd`` (the last detection by default): > 0 fading."""
        t = self.last_mjd if mjd is None else mjd
        grid = np.array([t - 0.5, t + 0.5])
        best = np.diff(self._mag(self.params, grid, band)[0])[0]
        draws = np.diff(self._mag(self._draws, grid, band), axis=1)[:, 0]
        return float(best), float(np.std(draws))

    def fade_mjd(self, limit_mag: float, band: str, horizon_days: float = 365.0):
        """When the object drops below ``limit_mag`` after its last detection.

        Returns ``(mjd, lo, hi)`` (the best fit, and the 16th–84th percentile of the
        draws); ``mjd`` is ``last_mjd`` when it is already fainter, NaN when it stays
        brighter over ``horizon_days``.
        """
        grid = self.last_mjd + np.linspace(0.0, horizon_days, int(horizon_days * 4) + 1)

        def first_below(mags: np.ndarray) -> np.ndarray:
            below = mags > limit_mag
            idx = np.argmax(below, axis=-1)
            return np.where(below.any(axis=-1), grid[idx], np.nan)

        best = float(first_below(self._mag(self.params, grid, band))[0])
        draws = first_below(self._mag(self._draws, grid, band))
        finite = draws[np.isfinite(draws)]
        if len(finite) < DRAWS // 2:
            return best, np.nan, np.nan
        lo, hi = np.percentile(finite, [16, 84])
        return best, float(lo), float(hi)


def fit_evolution(mjd, mag, mag_err, band) -> Evolution:
    """Fit the Bazin function to detections ``(mjd, mag, mag_err, band)`` (arrays).

    Needs detections on at least two nights (a night is 0.5 day apart here); else
    ``ok`` is false and every prediction is the last magnitude held flat.
    """
    from scipy.optimize import least_squares

    mjd, mag = np.asarray(mjd, float), np.asarray(mag, float)
    err = np.clip(np.asarray(mag_err, float), 0.01, None)
    band = np.asarray(band, str)
    ok = np.isfinite(mjd) & np.isfinite(mag) & np.isfinite(err)
    mjd, mag, err, band = mjd[ok], mag[ok], err[ok], band[ok]
    bands = tuple(sorted(set(band)))
    nights = np.unique(np.floor(mjd - 0.5))
    flux = 10 ** (-0.4 * (mag - _ZP))
    flux_err = flux * err / 1.0857
    which = np.array([bands.index(b) for b in band], int)
    t_peak = mjd[np.argmax(flux)] if len(mjd) else np.nan
    start = np.r_[
        t_peak - PRIOR_TAU_RISE,
        np.log(PRIOR_TAU_RISE),
        np.log(PRIOR_TAU_FALL),
        [np.log(flux[which == i].max() * 2) for i in range(len(bands))],
    ]
    if len(nights) < 2 or len(mjd) < 3:
        return Evolution(
            bands, start, np.eye(len(start)) * 1e-6, float(mjd.max()) if len(mjd) else np.nan,
            len(mjd), len(nights), False, "detections on fewer than two nights",
        )  # fmt: skip
    prior = np.log([PRIOR_TAU_RISE, PRIOR_TAU_FALL])

    def residuals(p):
        log_model = p[3 + which] + _log_bazin(mjd, p[0], np.exp(p[1]), np.exp(p[2]))
        model = np.exp(np.clip(log_model, -700, 700))
        return np.r_[(flux - model) / flux_err, (p[1:3] - prior) / PRIOR_WIDTH]

    lower = np.r_[mjd.min() - 100, np.log(0.2), np.log(2.0), np.full(len(bands), -np.inf)]
    upper = np.r_[mjd.max() + 30, np.log(40.0), np.log(400.0), np.full(len(bands), np.inf)]
    fit = least_squares(residuals, np.clip(start, lower + 1e-6, upper - 1e-6),
                        bounds=(lower, upper), x_scale="jac")  # fmt: skip
    jac = fit.jac
    try:
        cov = np.linalg.pinv(jac.T @ jac)
    except np.linalg.LinAlgError:
        cov = np.eye(len(fit.x)) * 1e-6
    dof = max(len(mjd) - len(bands) - 1, 1)
    chi2 = float(np.sum(residuals(fit.x)[: len(mjd)] ** 2) / dof)
    cov = cov * max(chi2, 1.0)  # a poor fit widens its own predictions
    return Evolution(
        bands, fit.x, (cov + cov.T) / 2, float(mjd.max()), len(mjd), len(nights), True,
        f"chi2/dof {chi2:.2f}",
    )  # fmt: skip
