"""Astrometric calibration: refine a frame's approximate WCS against a reference catalogue.

1. Project the reference stars through the header's approximate WCS.
2. Find the pointing offset by voting: every pairing of a bright detection with a bright
   reference star within ``max_offset_px`` votes for its (dx, dy); the densest cell wins
   (robust to a few arcseconds of pointing error and to unmatched sources).
3. Match within a small radius after the shift; fit a TAN WCS (CD matrix and reference
   point) to the matched pairs (:func:`fit_wcs`, linear least squares); clip outliers;
   repeat.
4. Where enough stars support it (and it lowers the residual noticeably), fit SIP
   distortion as well.

The residual RMS in pixels and the number of matched stars come back with the WCS; a
solution with too few matches or a large residual is reported as failed, never dropped.

A frame without a WCS in its header is solved from an approximate pointing (the header's
RA/DEC, or the reference catalogue's own centre when the header has none) and the
camera's pixel scale: :func:`solve_from_pointing` searches the unknown rotation (every
degree, both parities: a camera may be mounted any way round and flipped by a mirror or
a meridian flip) and the pointing error by the same offset voting, then refines as above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "AstrometricSolution",
    "fit_wcs",
    "refine_wcs",
    "solve_from_pointing",
    "tan_wcs",
    "verify_wcs",
]


@dataclass
class AstrometricSolution:
    """A refined WCS and how well it fits."""

    wcs: object  # astropy.wcs.WCS
    ok: bool
    n_matched: int
    rms_px: float
    offset_px: tuple[float, float]
    sip_degree: int
    message: str
    det_index: np.ndarray  # matched detection rows
    ref_index: np.ndarray  # matched reference rows
    refitted: bool = True  # False: the header's WCS, confirmed by too few stars to refit


def _vote_offset(xd, yd, xr, yr, max_offset, cell=1.0):
    dx = (xd[:, None] - xr[None, :]).ravel()
    dy = (yd[:, None] - yr[None, :]).ravel()
    near = (np.abs(dx) <= max_offset) & (np.abs(dy) <= max_offset)
    dx, dy = dx[near], dy[near]
    if dx.size == 0:
        return None
    bins = np.arange(-max_offset, max_offset + cell, cell)
    hist, ex, ey = np.histogram2d(dx, dy, bins=[bins, bins])
    # Smooth by summing 2x2 neighbours so a peak on a cell edge is not split.
    smooth = hist[:-1, :-1] + hist[1:, :-1] + hist[:-1, 1:] + hist[1:, 1:]
    i, j = np.unravel_index(np.argmax(smooth), smooth.shape)
    if smooth[i, j] < 4:
        return None
    sel = (dx >= ex[i]) & (dx < ex[i + 2]) & (dy >= ey[j]) & (dy < ey[j + 2])
    return float(np.median(dx[sel])), float(np.median(dy[sel]))


def _match(xd, yd, xr, yr, radius):
    from scipy.spatial import cKDTree

    tree = cKDTree(np.column_stack([xr, yr]))
    dist, idx = tree.query(np.column_stack([xd, yd]), distance_upper_bound=radius)
    ok = np.isfinite(dist)
    det, ref = np.flatnonzero(ok), idx[ok]
    # Keep one detection per reference star: the closest.
    order = np.argsort(dist[ok])
    _, first = np.unique(ref[order], return_index=True)
    keep = order[first]
    return det[keep], ref[keep]


#: The (p, q) of the u^p v^q terms of a degree-2 SIP polynomial.
_SIP2_TERMS = ((2, 0), (1, 1), (0, 2))


def fit_wcs(x: np.ndarray, y: np.ndarray, ra: np.ndarray, dec: np.ndarray, sip_degree: int = 0):
    """A TAN (or TAN-SIP) WCS fitted to matched pixel and sky positions.

    The model of astropy's ``fit_wcs_from_points(xy, world, proj_point="center",
    projection="TAN", sip_degree=...)``: the reference point CRVAL at the centre of the sky
    positions; CD, CRPIX and the forward SIP coefficients free (inverse SIP left zero).
    With CRVAL fixed, the stars' gnomonic projection about it is exact, so the map from
    pixels to the tangent plane is a polynomial (affine for TAN, of degree 2 for SIP 2),
    fitted here by linear least squares: CRPIX is where it is zero, CD its Jacobian
    there, and the SIP coefficients its quadratic terms in CD's frame. astropy fits the
    same parameters by nonlinear least squares with numerical derivatives and residuals
    on the sphere; the two agree to well under a thousandth of a pixel on these fields
    (tested) and this is about 30 times faster (2 s of a dense 2048² frame's catalogue).

    Parameters
    ----------
    x, y : numpy.ndarray
        0-based pixel positions.
    ra, dec : numpy.ndarray
        Their sky positions (ICRS, degrees).
    sip_degree : int
        0 (plain TAN) or 2.
    """
    if sip_degree not in (0, 2):
        raise ValueError(f"sip_degree must be 0 or 2, not {sip_degree}")
    x, y = np.asarray(x, float), np.asarray(y, float)
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    crval = _box_centre(ra, dec)
    xi, eta = _tangent_plane(ra, dec, crval)
    # Centred, scaled pixel coordinates keep the normal equations well conditioned.
    cx, cy, scale = x.mean(), y.mean(), 1000.0
    s, t = (x - cx) / scale, (y - cy) / scale
    powers = [(1, 0), (0, 1)] + (list(_SIP2_TERMS) if sip_degree else [])
    design = np.column_stack([np.ones_like(s)] + [s**p * t**q for p, q in powers])
    coef, _, rank, _ = np.linalg.lstsq(design, np.column_stack([xi, eta]), rcond=None)
    if rank < design.shape[1]:
        raise ValueError(
            f"{len(x)} stars do not constrain a {'TAN-SIP' if sip_degree else 'TAN'} WCS "
            "(too few, or all on one line)"
        )
    c0, lin, quad = coef[0], coef[1:3].T, coef[3:].T  # lin[k] = d(xi_k)/d(s, t)
    p, jac = _tangent_point_root(c0, lin, quad if sip_degree else None)
    cd = jac / scale
    crpix = [cx + scale * p[0] + 1.0, cy + scale * p[1] + 1.0]  # FITS: 1-based
    extent = tuple(1 if v.max() <= 0.0 else int(np.ceil(v.max())) for v in (x, y))
    sip = np.linalg.solve(cd, quad / scale**2) if sip_degree else None
    return _tan_wcs(crval, cd, crpix, extent, sip)


def _box_centre(ra: np.ndarray, dec: np.ndarray) -> tuple[float, float]:
    """CRVAL as astropy's ``proj_point="center"``: midway between the sky box's corners."""
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    sc1 = SkyCoord(ra.min() * u.deg, dec.max() * u.deg)
    sc2 = SkyCoord(ra.max() * u.deg, dec.min() * u.deg)
    mid = sc1.directional_offset_by(sc1.position_angle(sc2), sc1.separation(sc2) / 2)
    return (mid.data.lon.deg, mid.data.lat.deg)


def _tangent_plane(ra: np.ndarray, dec: np.ndarray, crval) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic projection about ``crval``: tangent-plane coordinates, degrees."""
    from astropy.wcs import WCS

    plane = WCS(naxis=2)
    plane.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    plane.wcs.crval = crval
    plane.wcs.crpix = [1.0, 1.0]
    plane.wcs.cd = np.eye(2)
    return plane.wcs_world2pix(ra, dec, 0)


def _tangent_point_root(c0, lin, quad) -> tuple[np.ndarray, np.ndarray]:
    """Where the fitted map reaches the tangent point (CRPIX), and its Jacobian there.

    Newton's method from the affine root; ``quad`` (the quadratic terms) None for TAN.
    """

    def value_and_jacobian(p):
        s0, t0 = p
        val = c0 + lin @ p
        jac = lin.copy()
        if quad is not None:
            val = val + quad @ np.array([s0 * s0, s0 * t0, t0 * t0])
            jac = jac + np.column_stack(
                [2 * quad[:, 0] * s0 + quad[:, 1] * t0, quad[:, 1] * s0 + 2 * quad[:, 2] * t0]
            )
        return val, jac

    p = np.linalg.solve(lin, -c0)
    for _ in range(20):
        val, jac = value_and_jacobian(p)
        step = np.linalg.solve(jac, -val)
        p = p + step
        if np.abs(step).max() < 1e-12:
            break
    _, jac = value_and_jacobian(p)
    return p, jac


def _tan_wcs(crval, cd, crpix, extent, sip_ab):
    """An ICRS TAN WCS; TAN-SIP with forward coefficients ``sip_ab`` (A, B in CD's frame)."""
    from astropy.coordinates import ICRS
    from astropy.wcs import Sip
    from astropy.wcs.utils import celestial_frame_to_wcs

    wcs = celestial_frame_to_wcs(frame=ICRS(), projection="TAN")
    if wcs.wcs.has_pc():
        del wcs.wcs.pc
    wcs.pixel_shape = extent
    wcs.wcs.crval = crval
    wcs.wcs.cd = cd
    wcs.wcs.crpix = crpix
    if sip_ab is not None:
        # Quadratic terms do not change when the origin moves to CRPIX; in pixels they
        # are quad / scale**2, and SIP's A, B are them in CD's frame.
        a, b = np.zeros((3, 3)), np.zeros((3, 3))
        for k, (i, j) in enumerate(_SIP2_TERMS):
            a[i, j], b[i, j] = sip_ab[0, k], sip_ab[1, k]
        wcs.wcs.ctype = [c + "-SIP" for c in wcs.wcs.ctype]
        wcs.sip = Sip(a, b, np.zeros((3, 3)), np.zeros((3, 3)), wcs.wcs.crpix)
    return wcs


def refine_wcs(
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    ref_ra: np.ndarray,
    ref_dec: np.ndarray,
    ref_mag: np.ndarray,
    wcs0,
    shape: tuple[int, int],
    max_offset_px: float = 40.0,
    match_radius_px: float = 1.5,
    n_bright: int = 150,
    min_matches: int = 8,
    max_rms_px: float = 0.5,
) -> AstrometricSolution:
    """Refine ``wcs0`` by matching detections to reference stars.

    Parameters
    ----------
    x, y, flux : numpy.ndarray
        Detections (0-based pixel centroids) and fluxes (for choosing bright ones).
    ref_ra, ref_dec, ref_mag : numpy.ndarray
        Reference catalogue (degrees, magnitude in the frame's band).
    wcs0 : astropy.wcs.WCS
        The approximate WCS from the header.
    shape : tuple of int
        Image shape ``(ny, nx)``.
    max_offset_px : float
        Largest pointing error searched for.
    match_radius_px : float
        Final matching radius.
    n_bright : int
        How many of the brightest detections and reference stars vote for the offset.
    min_matches, max_rms_px : int, float
        Below/above these the solution is reported as failed.

    Returns
    -------
    AstrometricSolution
    """
    ny, nx = shape
    empty = np.array([], dtype=int)

    def failed(msg, n=0, rms=np.nan, off=(np.nan, np.nan)):
        return AstrometricSolution(wcs0, False, n, rms, off, 0, msg, empty, empty)

    xr, yr = wcs0.all_world2pix(ref_ra, ref_dec, 0)
    margin = max_offset_px
    inside = (xr > -margin) & (xr < nx + margin) & (yr > -margin) & (yr < ny + margin)
    inside &= np.isfinite(ref_mag)
    if len(x) < min_matches or inside.sum() < min_matches:
        # Too few stars to refit: the header's own WCS, if the stars confirm it.
        verified = verify_wcs(x, y, xr, yr, (ny, nx), match_radius_px, wcs0)
        if verified is not None:
            return verified
        if len(x) < min_matches:
            return failed(f"only {len(x)} detections")
        return failed(f"only {int(inside.sum())} reference stars fall on the frame")
    ref_idx = np.flatnonzero(inside)
    ref_idx = ref_idx[np.argsort(ref_mag[ref_idx])]
    det_order = np.argsort(-np.nan_to_num(flux, nan=-np.inf))
    bright_d = det_order[:n_bright]
    bright_r = ref_idx[:n_bright]
    offset = _vote_offset(x[bright_d], y[bright_d], xr[bright_r], yr[bright_r], max_offset_px)
    if offset is None:
        return failed("no consistent offset between detections and the reference catalogue")
    dx, dy = offset
    det, ref = _match(x, y, xr[ref_idx] + dx, yr[ref_idx] + dy, 3.0)
    radii = (3.0, 2.0, match_radius_px, match_radius_px)
    fitted = _match_and_fit(x, y, ref_ra, ref_dec, ref_idx, det, ref_idx[ref], radii, min_matches)
    if isinstance(fitted[0], str):  # too few matches, or matched stars on one line
        message, n = fitted
        return failed(message, n, off=offset)
    wcs, rms, det, ref, sip = fitted
    ok = len(det) >= min_matches and rms <= max_rms_px
    msg = "ok" if ok else f"residual {rms:.2f} px with {len(det)} stars"
    return AstrometricSolution(wcs, ok, len(det), rms, offset, sip, msg, det, ref)


def _match_and_fit(x, y, ref_ra, ref_dec, ref_idx, det, ref, radii, min_matches):
    """Fit a TAN WCS to the matches, and match again, at each of ``radii``; then clip.

    Outliers are clipped and the WCS refitted; a SIP fit is kept when it lowers the
    residual by a fifth (60 matched stars or more).

    Returns ``(wcs, rms, det, ref, sip_degree)``, or ``(message, n_matched)`` when too few
    stars match or they lie on one line.
    """
    try:
        for radius in radii:
            if len(det) < min_matches:
                return f"only {len(det)} matched stars", len(det)
            wcs = fit_wcs(x[det], y[det], ref_ra[ref], ref_dec[ref])
            px, py = wcs.all_world2pix(ref_ra[ref_idx], ref_dec[ref_idx], 0)
            det, ref = _match(x, y, px, py, radius)
            ref = ref_idx[ref]
        wcs, rms, det, ref = _clip_and_refit(x, y, ref_ra, ref_dec, det, ref, wcs)
        sip = 0
        if len(det) >= 60:
            sip_wcs = fit_wcs(x[det], y[det], ref_ra[ref], ref_dec[ref], sip_degree=2)
            sip_rms = _rms(sip_wcs, x[det], y[det], ref_ra[ref], ref_dec[ref])
            if sip_rms < 0.8 * rms:
                wcs, rms, sip = sip_wcs, sip_rms, 2
    except ValueError as exc:  # matched stars on one line: no WCS to be had from them
        return str(exc), len(det)
    return wcs, rms, det, ref, sip


#: Fewest reference stars that confirm a header WCS too sparse to refit (none refitted).
MIN_VERIFY = 3


def verify_wcs(x, y, xr, yr, shape, radius, wcs0) -> AstrometricSolution | None:
    """The header WCS, unchanged, when the few reference stars on the frame confirm it.

    A field too sparse to refit a WCS (fewer than 8 stars: a small cutout, a short
    exposure) keeps its header's solution when at least ``MIN_VERIFY`` reference stars,
    and at least half of those that fall on the frame, have a detection within
    ``radius`` pixels where the header puts them. Chance coincidences are rare at that
    radius (the detections cover a small fraction of the frame) and several are needed.
    Returns ``None`` when the stars do not confirm it.
    """
    ny, nx = shape
    on = np.flatnonzero((xr >= 0) & (xr < nx) & (yr >= 0) & (yr < ny))
    if len(x) == 0 or len(on) < MIN_VERIFY:
        return None
    det, ref = _match(x, y, xr[on], yr[on], radius)
    if len(det) < max(MIN_VERIFY, len(on) / 2):
        return None
    ref = on[ref]
    rms = float(np.sqrt(np.mean((x[det] - xr[ref]) ** 2 + (y[det] - yr[ref]) ** 2)))
    message = f"header WCS verified by {len(det)} of {len(on)} stars (too few to refit)"
    return AstrometricSolution(wcs0, True, len(det), rms, (0.0, 0.0), 0, message, det, ref, False)


def _rms(wcs, x, y, ra, dec) -> float:
    px, py = wcs.all_world2pix(ra, dec, 0)
    return float(np.sqrt(np.mean((px - x) ** 2 + (py - y) ** 2)))


def _clip_and_refit(x, y, ra, dec, det, ref, wcs, nsigma=3.0):
    for _ in range(3):
        px, py = wcs.all_world2pix(ra[ref], dec[ref], 0)
        r = np.hypot(px - x[det], py - y[det])
        scale = 1.4826 * np.median(r) + 1e-6
        keep = r < nsigma * scale * 1.5
        if keep.all():
            break
        det, ref = det[keep], ref[keep]
        wcs = fit_wcs(x[det], y[det], ra[ref], dec[ref])
    return wcs, _rms(wcs, x[det], y[det], ra[ref], dec[ref]), det, ref


def tan_wcs(ra: float, dec: float, pixel_scale: float, shape, angle_deg=0.0, parity=1):
    """A TAN WCS centred on ``(ra, dec)``: ``pixel_scale`` ″/px, north rotated by ``angle``.

    ``parity`` 1 is the sky as seen (east left of north), -1 its mirror image.
    """
    from astropy.wcs import WCS

    ny, nx = shape
    th = np.radians(angle_deg)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    # pixel offset = rot @ diag(-parity, 1) @ (xi, eta) / scale, as the search rotates.
    w.wcs.cd = pixel_scale / 3600.0 * (np.diag([-parity, 1.0]) @ rot.T)
    return w


def _rotation_trials(det_xy, ref_xy, max_offset_px, cell, angle_step_deg) -> list[tuple]:
    """Every rotation and parity of the reference offsets, voted on by offset histograms.

    Returns ``(votes, angle, parity, dx, dy)`` per trial, most votes first: the peak of
    the histogram of detection - reference offsets (2 x 2 cells summed) and where it is.
    """
    (xd, yd), (xi, eta) = det_xy, ref_xy
    bins = np.arange(-max_offset_px, max_offset_px + cell, cell)
    trials = []
    for parity in (1, -1):
        for angle in np.arange(0.0, 360.0, angle_step_deg):
            th = np.radians(angle)
            u = parity * xi
            xr = np.cos(th) * u - np.sin(th) * eta
            yr = np.sin(th) * u + np.cos(th) * eta
            dx = (xd[:, None] - xr[None, :]).ravel()
            dy = (yd[:, None] - yr[None, :]).ravel()
            hist, _, _ = np.histogram2d(dx, dy, bins=[bins, bins])
            smooth = hist[:-1, :-1] + hist[1:, :-1] + hist[:-1, 1:] + hist[1:, 1:]
            k = int(np.argmax(smooth))
            i, j = np.unravel_index(k, smooth.shape)
            trials.append((smooth[i, j], angle, parity, bins[i] + cell, bins[j] + cell))
    trials.sort(key=lambda t: -t[0])
    return trials


def solve_from_pointing(
    x: np.ndarray,
    y: np.ndarray,
    flux: np.ndarray,
    ref_ra: np.ndarray,
    ref_dec: np.ndarray,
    ref_mag: np.ndarray,
    pointing: tuple[float, float],
    pixel_scale: float,
    shape: tuple[int, int],
    max_offset_px: float | None = None,
    n_bright: int = 60,
    angle_step_deg: float = 1.0,
    **refine_options,
) -> AstrometricSolution:
    """Solve a frame that has no WCS, from an approximate pointing and the pixel scale.

    Parameters
    ----------
    x, y, flux, ref_ra, ref_dec, ref_mag : numpy.ndarray
        As for :func:`refine_wcs`.
    pointing : tuple of float
        Approximate RA, Dec of the frame's centre (degrees).
    pixel_scale : float
        ″/px (the registry's; within a few per cent).
    shape : tuple of int
        ``(ny, nx)``.
    max_offset_px : float, optional
        Largest pointing error searched (default: the frame's larger side).
    n_bright : int
        Brightest detections and reference stars that vote.
    angle_step_deg : float
        Rotation step of the search; the refinement takes the rest.

    Returns
    -------
    AstrometricSolution
        From :func:`refine_wcs` started at the best trial; ``message`` says which
        rotation and parity won and how many votes it had against the runner-up.
    """
    ny, nx = shape
    if max_offset_px is None:
        max_offset_px = float(max(nx, ny))
    empty = np.array([], dtype=int)
    wcs_c = tan_wcs(pointing[0], pointing[1], pixel_scale, shape)
    if len(x) < 8:
        return AstrometricSolution(wcs_c, False, 0, np.nan, (np.nan, np.nan), 0,
                                   f"only {len(x)} detections", empty, empty)  # fmt: skip
    # Tangent-plane offsets of the reference stars about the pointing, in pixels, east
    # to the left (the angle-0, parity-1 frame): each trial rotates and flips these.
    xi, eta = wcs_c.wcs_world2pix(ref_ra, ref_dec, 0)
    xi, eta = xi - (nx - 1) / 2, eta - (ny - 1) / 2
    reach = np.hypot(nx, ny) / 2 + max_offset_px
    near = (np.hypot(xi, eta) < reach) & np.isfinite(ref_mag)
    if near.sum() < 8:
        why = "under 8 reference stars near the pointing"
        return AstrometricSolution(wcs_c, False, 0, np.nan, (np.nan, np.nan), 0, why, empty, empty)
    ref_near = np.flatnonzero(near)
    # Reference stars that can fall on the frame whatever the rotation, brightest first.
    bright_r = ref_near[np.argsort(ref_mag[ref_near])][: 2 * n_bright]
    bright_d = np.argsort(-np.nan_to_num(flux, nan=-np.inf))[:n_bright]
    xd, yd = x[bright_d] - (nx - 1) / 2, y[bright_d] - (ny - 1) / 2
    cell = max(3.0, 0.006 * max(nx, ny))
    ref_xy = (xi[bright_r], eta[bright_r])
    trials = _rotation_trials((xd, yd), ref_xy, max_offset_px, cell, angle_step_deg)
    votes, angle, parity, dx, dy = trials[0]
    runner_up = next((t[0] for t in trials[1:] if t[2] != parity or abs(t[1] - angle) > 3), 0)
    # The winning trial as a WCS: rotate, flip, then move the centre by the offset.
    wcs1 = tan_wcs(pointing[0], pointing[1], pixel_scale, shape, angle, parity)
    ra1, dec1 = wcs1.all_pix2world((nx - 1) / 2 - dx, (ny - 1) / 2 - dy, 0)
    wcs1 = tan_wcs(float(ra1), float(dec1), pixel_scale, shape, angle, parity)
    options = {"max_offset_px": max(4 * cell, 20.0), **refine_options}
    solution = refine_wcs(x, y, flux, ref_ra, ref_dec, ref_mag, wcs1, shape, **options)
    solution.message = (
        f"{solution.message}; from pointing: rotation {angle:.0f}°, parity {parity:+d}, "
        f"{votes:.0f} votes (next best {runner_up:.0f})"
    )
    return solution
