"""Photometric calibration: aperture correction, zero point and colour term.

A frame's zero point ``ZP`` is the magnitude that gives 1 electron per second of *total*
flux, so that ``m = ZP - 2.5 log10(flux_total / exptime)``. Total flux comes from the
aperture flux times an aperture correction measured on bright, isolated, unflagged stars
(the curve of growth out to the largest aperture). ``ZP`` is fitted against the
reference catalogue with iterative sigma clipping, optionally with a colour term
``m_ref - m_inst = ZP + c (g - r)``, and its uncertainty is the clipped scatter over
√N (plus the catalogue's own errors in quadrature).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ZeroPoint", "aperture_correction", "fit_zero_point", "limiting_magnitude"]


def aperture_correction(
    flux_small: np.ndarray, flux_large: np.ndarray, snr: np.ndarray, min_snr: float = 30.0
) -> tuple[float, int]:
    """Median ratio of large- to small-aperture flux for high-S/N stars.

    Returns
    -------
    correction : float
        Multiply small-aperture fluxes by this to get total flux (1.0 if no star qualifies).
    n : int
        Stars used.
    """
    use = (snr > min_snr) & (flux_small > 0) & np.isfinite(flux_large)
    if use.sum() < 3:
        return 1.0, int(use.sum())
    from astropy.stats import sigma_clipped_stats

    _, median, _ = sigma_clipped_stats(flux_large[use] / flux_small[use], sigma=3.0)
    return float(median), int(use.sum())


@dataclass
class ZeroPoint:
    """A fitted zero point."""

    zp: float
    zp_err: float
    colour_term: float
    n_used: int
    scatter: float
    ok: bool
    message: str


def fit_zero_point(
    m_inst: np.ndarray,
    m_inst_err: np.ndarray,
    m_ref: np.ndarray,
    m_ref_err: np.ndarray,
    colour: np.ndarray | None = None,
    sigma: float = 3.0,
    min_stars: int = 5,
    max_err: float = 0.05,
) -> ZeroPoint:
    """Fit ``m_ref - m_inst = ZP (+ c * colour)`` with iterative sigma clipping.

    Parameters
    ----------
    m_inst, m_inst_err : numpy.ndarray
        Instrumental magnitudes ``-2.5 log10(flux_total / exptime)`` and errors.
    m_ref, m_ref_err : numpy.ndarray
        Reference magnitudes in the same band and their errors.
    colour : numpy.ndarray, optional
        Reference colour (e.g. g - r) to fit a colour term.
    sigma : float
        Clipping threshold in units of the robust scatter.
    min_stars : int
        Fewer usable stars than this: not ok.
    max_err : float
        Stars with a combined error above this (mag) are not used.

    Returns
    -------
    ZeroPoint
    """
    from astropy.stats import mad_std

    err = np.hypot(m_inst_err, m_ref_err)
    use = np.isfinite(m_inst) & np.isfinite(m_ref) & (err < max_err)
    if colour is not None:
        use &= np.isfinite(colour)
    if use.sum() < min_stars:
        return ZeroPoint(
            np.nan,
            np.nan,
            0.0,
            int(use.sum()),
            np.nan,
            False,
            f"only {int(use.sum())} usable stars",
        )
    delta = m_ref - m_inst
    base = use.copy()
    # Start from the median, which outliers (variables, blends) cannot drag, then refit
    # with least squares, letting stars back in when the model moves towards them.
    first = np.abs(delta - np.median(delta[base])) < 5 * max(mad_std(delta[base]), 0.01)
    use = base & first
    w = 1.0 / np.maximum(err, 0.002) ** 2
    fit_colour = colour is not None and use.sum() >= 20
    scale = max(mad_std(delta[use]), 1e-4)
    coef = np.array([np.median(delta[use]), 0.0])
    for _ in range(20):
        design = np.column_stack([np.ones(use.sum())] + ([colour[use]] if fit_colour else []))
        sw = np.sqrt(w[use])
        sol = np.linalg.lstsq(design * sw[:, None], delta[use] * sw, rcond=None)[0]
        coef = np.array([sol[0], sol[1] if fit_colour else 0.0])
        model = coef[0] + (coef[1] * colour if fit_colour else 0.0)
        resid = delta - model
        scale = max(mad_std(resid[use]), 1e-4)
        new = base & (np.abs(resid) < sigma * np.maximum(scale, err))
        if np.array_equal(new, use):
            break
        use = new
    n = int(use.sum())
    wsum = w[use].sum()
    zp_err = float(np.sqrt(1.0 / wsum + (scale**2) / n)) if n else np.nan
    return ZeroPoint(float(coef[0]), zp_err, float(coef[1]), n, float(scale), n >= min_stars, "ok")


def limiting_magnitude(
    zp: float,
    exptime: float,
    sky_rms_e: float,
    radius_px: float,
    aperture_correction: float,
    nsigma: float = 5.0,
) -> float:
    """Point-source magnitude detected at ``nsigma`` in a sky-limited aperture."""
    noise = sky_rms_e * np.sqrt(np.pi * radius_px**2)
    if not noise > 0 or not np.isfinite(zp):
        return float("nan")
    return float(zp - 2.5 * np.log10(nsigma * noise * aperture_correction / exptime))
