"""Point-spread functions and camera families: the optics a simulated telescope has.

Models trained on one PSF learn that PSF. So that the platform is trained on some optics
and judged on others, the simulator draws each site's image shape from a *family*:

- a PSF shape — a Moffat profile of any ``beta`` (2 is a broad-winged small telescope,
  4.8 the classic atmospheric value), a Gaussian (``beta=None``), elongated by
  astigmatism or guiding (``ellipticity``, ``pa_deg``), with a comatic tail
  (``coma``: the fraction of light in a displaced, broader second component);
- the telescope's own blur (``optics_fwhm_px``), added in quadrature to the seeing;
- camera changes — pixel scale (0.3″/px oversampled to 2.5″/px undersampled), shape,
  gain, read noise and saturation — applied to a registry entry.

Profiles are integrated over each pixel (by 5×5 sub-sampling) when the PSF is narrower
than 2 pixels, as an undersampled camera records it; a profile evaluated at pixel
centres would put a star's flux in the wrong pixels. (Above 2 px the standard optics
keep their point-sampled rendering, which the trained models and the catalog tests were
built on.)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

__all__ = ["FAMILIES", "PSF", "STANDARD_PSF", "CameraFamily", "family"]


@dataclass(frozen=True)
class PSF:
    """The shape of a star's image, up to its width (the seeing sets the FWHM).

    Attributes
    ----------
    beta : float or None
        Moffat index; ``None`` for a Gaussian.
    ellipticity : float
        ``1 - b/a`` of the core (astigmatism, wind shake).
    pa_deg : float
        Position angle of the major axis, degrees from +x towards +y.
    coma : float
        Fraction of the light in a second component displaced by ``coma_offset`` FWHM
        and twice as broad: a one-sided tail, as off-axis coma gives.
    coma_offset : float
        The tail's displacement in units of the FWHM, along ``pa_deg``.
    optics_fwhm_px : float
        The telescope's own blur (focus, optics, guiding), added to the seeing in
        quadrature.
    """

    beta: float | None = 4.765
    ellipticity: float = 0.0
    pa_deg: float = 0.0
    coma: float = 0.0
    coma_offset: float = 0.6
    optics_fwhm_px: float = 2.0

    def core(self, dx: np.ndarray, dy: np.ndarray, fwhm: float) -> np.ndarray:
        """The unnormalised profile of the core at offsets ``dx, dy`` (pixels)."""
        th = np.radians(self.pa_deg)
        u = dx * np.cos(th) + dy * np.sin(th)
        v = -dx * np.sin(th) + dy * np.cos(th)
        q = 1.0 - self.ellipticity
        # The FWHM is the geometric mean of the axes, so an elongated star keeps its area.
        r2 = (u**2) * q + (v**2) / q
        if self.beta is None:
            sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
            return np.exp(-0.5 * r2 / sigma**2)
        alpha = fwhm / (2 * np.sqrt(2 ** (1 / self.beta) - 1))
        return (1 + r2 / alpha**2) ** (-self.beta)

    def profile(self, dx: np.ndarray, dy: np.ndarray, fwhm: float) -> np.ndarray:
        """The unnormalised profile (core plus comatic tail)."""
        out = self.core(dx, dy, fwhm)
        if self.coma > 0:
            th = np.radians(self.pa_deg)
            shift = self.coma_offset * fwhm
            tail = self.core(dx - shift * np.cos(th), dy - shift * np.sin(th), 2 * fwhm)
            # Each part normalised by its continuous integral (area ∝ FWHM²).
            out = (1 - self.coma) * out + self.coma * tail / 4.0
        return out

    def half_width(self, fwhm: float) -> int:
        """Stamp half-size (pixels) holding all but ~0.1 % of the light."""
        if self.beta is None:
            reach = 2.0 * fwhm
        else:
            alpha = fwhm / (2 * np.sqrt(2 ** (1 / self.beta) - 1))
            reach = alpha * np.sqrt(1e3 ** (1 / (self.beta - 1)) - 1)
        reach = max(reach, 4 * fwhm)
        if self.coma > 0:
            reach += 2 * self.coma_offset * fwhm
        return int(np.ceil(min(reach, 60 * max(fwhm, 1.0))))

    def subsamples(self, fwhm: float) -> int:
        """Sub-pixels per axis needed to integrate the profile over a pixel."""
        return 1 if fwhm >= 2.0 else 5


#: The simulator's standard optics: a Moffat with β = 4.765 (Trujillo et al. 2001's
#: atmospheric value) and 2 px of telescope blur.
STANDARD_PSF = PSF()


@dataclass(frozen=True)
class CameraFamily:
    """A kind of telescope: its PSF, sampling and detector."""

    name: str
    description: str
    psf: PSF
    camera: dict[str, Any] = field(default_factory=dict)
    median_seeing_arcsec: float | None = None
    #: Magnitudes added to the site's nominal zero points: a bigger telescope's aperture
    #: (a 1 m collects 6 times a 0.4 m's light: +2 mag).
    zero_point_offset: float = 0.0

    def apply(self, registry, site: str):
        """A registry in which ``site`` has this family's camera, seeing and aperture."""
        out = registry.with_camera(site, **self.camera) if self.camera else registry
        changes: dict[str, Any] = {}
        if self.median_seeing_arcsec is not None:
            changes["median_seeing_arcsec"] = self.median_seeing_arcsec
        if self.zero_point_offset:
            nominal = out.sites[site].nominal_zero_point
            changes["nominal_zero_point"] = {
                band: zp + self.zero_point_offset for band, zp in nominal.items()
            }
        if changes:
            sites = dict(out.sites)
            sites[site] = replace(sites[site], **changes)
            out = replace(out, sites=sites)
        return out


#: Named families. Training draws from some; evaluation holds others out whole.
FAMILIES: dict[str, CameraFamily] = {
    f.name: f
    for f in (
        CameraFamily("standard", "the demo's optics: Moffat β 4.8, 2 px blur", STANDARD_PSF),
        CameraFamily(
            "broad_moffat",
            "small refractor/astrograph: Moffat β 2.5, broad wings",
            PSF(beta=2.5, optics_fwhm_px=1.5),
        ),
        CameraFamily(
            "very_broad_moffat",
            "scattered-light wings: Moffat β 2.0",
            PSF(beta=2.0, optics_fwhm_px=1.5),
        ),
        CameraFamily("gaussian", "Gaussian core, no wings", PSF(beta=None, optics_fwhm_px=1.5)),
        CameraFamily(
            "astigmatic",
            "elliptical Moffat β 3.5 (astigmatism, e = 0.2)",
            PSF(beta=3.5, ellipticity=0.2, pa_deg=35.0, optics_fwhm_px=1.5),
        ),
        CameraFamily(
            "coma",
            "Moffat β 3.5 with a comatic tail (15 % of the light)",
            PSF(beta=3.5, coma=0.15, pa_deg=-60.0, optics_fwhm_px=1.5),
        ),
        CameraFamily(
            "oversampled",
            "0.3″/px camera behind a 1 m class telescope: Moffat β 3, FWHM ~ 5 px",
            PSF(beta=3.0, optics_fwhm_px=1.5),
            camera={"pixel_scale": 0.3},
            median_seeing_arcsec=1.4,
            zero_point_offset=2.0,
        ),
        CameraFamily(
            "undersampled",
            "2″/px wide-field camera: Moffat β 3.5, FWHM ~ 1.2 px",
            PSF(beta=3.5, optics_fwhm_px=0.6),
            camera={"pixel_scale": 2.0},
            median_seeing_arcsec=2.0,
        ),
    )
}


def family(name: str) -> CameraFamily:
    """The named camera family (a clear error naming the known ones otherwise)."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"no camera family {name!r}; known: {', '.join(FAMILIES)}") from None
