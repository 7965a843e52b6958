"""Light curves: sky tiles, objects, cross-site zero-point offsets, fused points.

Detections are cross-matched into objects, per site × night zero-point offsets put all
sites on one system, and near-simultaneous points are fused.

Everything here is a pure function of pandas tables (no I/O, no Dagster). The columns
used are those of the source catalogs: ``ra``, ``dec``, ``mag``, ``mag_err``, ``mjd``,
``site``, ``night``, ``filter``, ``frame_id``, ``ref_id``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "NSIDE",
    "apply_offsets",
    "assign_objects",
    "fuse",
    "held_out_residual",
    "iau_name",
    "solve_offsets",
    "tile_of",
]

#: HEALPix resolution of the light-curve store: nside 64 (nested) has 0.92° pixels, so a
#: field of view of the network's cameras touches one to four tiles.
NSIDE = 64
MATCH_RADIUS_ARCSEC = 1.5


def tile_of(ra, dec, nside: int = NSIDE) -> np.ndarray:
    """Nested HEALPix pixel of each position (degrees)."""
    import astropy.units as u
    from astropy_healpix import HEALPix

    hp = HEALPix(nside=nside, order="nested")
    return np.asarray(
        hp.lonlat_to_healpix(np.asarray(ra, float) * u.deg, np.asarray(dec, float) * u.deg),
        dtype=np.int64,
    )


def _unit(ra, dec) -> np.ndarray:
    ra, dec = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def _chord(arcsec: float) -> float:
    return 2 * np.sin(np.radians(arcsec / 3600) / 2)


def iau_name(ra: float, dec: float, prefix: str = "TA") -> str:
    """An IAU-style designation, ``TA Jhhmmss.ss±ddmmss.s``, for an uncatalogued object."""
    from astropy.coordinates import SkyCoord

    c = SkyCoord(ra, dec, unit="deg")
    hms = c.ra.to_string(unit="hourangle", sep="", precision=2, pad=True)
    dms = c.dec.to_string(sep="", precision=1, alwayssign=True, pad=True)
    return f"{prefix} J{hms}{dms}"


def assign_objects(
    detections: pd.DataFrame,
    objects: pd.DataFrame,
    radius_arcsec: float = MATCH_RADIUS_ARCSEC,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Give every detection an object id.

    1. A detection matched to a reference-catalogue star (``ref_id``) belongs to that
       star, whose position is the catalogue's (``ref_ra``/``ref_dec`` if given).
    2. Otherwise, to the nearest known object (or catalogued star of this batch) within
       ``radius_arcsec``.
    3. The rest are grouped friends-of-friends within ``radius_arcsec``; each group
       becomes a new object named by its mean position (:func:`iau_name`).

    A frame contributes at most one detection per object: the nearest.

    Parameters
    ----------
    detections : pandas.DataFrame
        Catalog rows (``ra``, ``dec``, ``ref_id``, ``frame_id``...).
    objects : pandas.DataFrame
        Known objects: ``object_id``, ``ra``, ``dec``, ``ref_id`` ("" if none).

    Returns
    -------
    detections : pandas.DataFrame
        The input with ``object_id`` and ``sep_arcsec`` columns.
    new_objects : pandas.DataFrame
        Objects first seen here (same columns as ``objects``).
    """
    det = detections.reset_index(drop=True).copy()
    det["object_id"] = ""
    det["sep_arcsec"] = np.nan
    ref = det.ref_id.fillna("").astype(str).to_numpy()
    seen = set(objects.object_id) if len(objects) else set()
    new_rows = []

    has_ref = ref != ""
    if has_ref.any():
        det.loc[has_ref, "object_id"] = ref[has_ref]
        new_rows += _catalogued_objects(det[has_ref & ~det.object_id.isin(seen)])
    rest = np.flatnonzero(~has_ref)
    chord = _chord(radius_arcsec)
    rest = _match_known(det, rest, objects, new_rows, chord)
    if rest.size:
        new_rows += _group_new(det, rest, chord)

    new_objects = pd.DataFrame(new_rows, columns=["object_id", "ra", "dec", "ref_id"])
    new_objects = new_objects.drop_duplicates("object_id")
    every = pd.concat([objects[new_objects.columns], new_objects], ignore_index=True)
    pos = every.drop_duplicates("object_id").set_index("object_id")
    o = pos.loc[det.object_id]
    sep = np.degrees(
        2 * np.arcsin(np.linalg.norm(_unit(det.ra, det.dec) - _unit(o.ra, o.dec), axis=1) / 2)
    )
    det["sep_arcsec"] = sep * 3600
    det = det.sort_values("sep_arcsec").drop_duplicates(["frame_id", "object_id"])
    return det.sort_index(), new_objects


def _catalogued_objects(first: pd.DataFrame) -> list[dict]:
    """New objects for catalogued stars first seen here, at the catalogue's position.

    The catalogue's position is ``ref_ra``/``ref_dec`` when the detections carry them.
    """
    first = first.drop_duplicates("object_id")
    ra_col = "ref_ra" if "ref_ra" in first else "ra"
    dec_col = "ref_dec" if "ref_dec" in first else "dec"
    return [
        {"object_id": r.object_id, "ra": getattr(r, ra_col), "dec": getattr(r, dec_col),
         "ref_id": r.object_id}
        for r in first.itertuples()
    ]  # fmt: skip


def _match_known(det, rest, objects, new_rows, chord) -> np.ndarray:
    """Detections ``rest`` near a known object take its id; returns those left over.

    Known: the objects before this batch and the catalogued stars first seen in it.
    """
    from scipy.spatial import cKDTree

    targets = pd.concat(
        [
            objects[["object_id", "ra", "dec"]] if len(objects) else None,
            pd.DataFrame(new_rows, columns=["object_id", "ra", "dec", "ref_id"])[
                ["object_id", "ra", "dec"]
            ],
        ]
    ).drop_duplicates("object_id")
    if not (rest.size and len(targets)):
        return rest
    tree = cKDTree(_unit(targets.ra, targets.dec))
    d, j = tree.query(_unit(det.ra.to_numpy()[rest], det.dec.to_numpy()[rest]))
    hit = d < chord
    det.loc[rest[hit], "object_id"] = targets.object_id.to_numpy()[j[hit]]
    return rest[~hit]


def _group_new(det, rest, chord) -> list[dict]:
    """Friends-of-friends groups of the unmatched detections ``rest``, a new object each.

    Each is named by its mean position (:func:`iau_name`).
    """
    from scipy.cluster.hierarchy import DisjointSet
    from scipy.spatial import cKDTree

    xyz = _unit(det.ra.to_numpy()[rest], det.dec.to_numpy()[rest])
    groups = DisjointSet(range(rest.size))
    for a, b in cKDTree(xyz).query_pairs(chord):
        groups.merge(a, b)
    rows = []
    for members in groups.subsets():
        idx = rest[sorted(members)]
        mean = xyz[sorted(members)].mean(axis=0)
        ra = float(np.degrees(np.arctan2(mean[1], mean[0])) % 360)
        dec = float(np.degrees(np.arcsin(mean[2] / np.linalg.norm(mean))))
        oid = iau_name(ra, dec)
        det.loc[idx, "object_id"] = oid
        rows.append({"object_id": oid, "ra": ra, "dec": dec, "ref_id": ""})
    return rows


def solve_offsets(
    points: pd.DataFrame,
    min_stars: int = 5,
    clip: float = 3.0,
    iterations: int = 30,
) -> pd.DataFrame:
    """Per site × night × filter zero-point offsets that put every site on one system.

    The model is ``mag_ij = M_j + d_g(i)`` for star ``j`` and group ``g = (site, night,
    filter)``, solved per filter by alternating weighted means (an ubercal of the
    common stars) with ``clip``-σ clipping. Groups tied together by common stars form a
    component (sites that never saw the same stars in a filter cannot be compared);
    the offsets of each component are constrained to a zero weighted mean, so the
    system stays that of the reference catalogue every frame was calibrated on.

    Parameters
    ----------
    points : pandas.DataFrame
        Detections of constant, well-measured stars: ``object_id``, ``site``, ``night``,
        ``filter``, ``mag``, ``mag_err``. Stars seen by a single group carry no
        information and are ignored.

    Returns
    -------
    pandas.DataFrame
        ``site``, ``night``, ``filter``, ``component``, ``offset`` (mag, to subtract),
        ``offset_err``, ``n_stars``, ``rms`` (clipped residual scatter, mag).
    """
    rows = []
    columns = ["site", "night", "filter", "component", "offset", "offset_err", "n_stars", "rms"]
    if points.empty:
        return pd.DataFrame(columns=columns)
    for band, p in points.groupby("filter"):
        rows += _offsets_of_band(band, p, min_stars, clip, iterations)
    return pd.DataFrame(rows, columns=columns)


def _offsets_of_band(band, p, min_stars, clip, iterations) -> list[dict]:
    """:func:`solve_offsets` for one filter's points: one row per group it solved."""
    p = p.assign(group=p.site + "|" + p.night)
    # Only stars seen by more than one group tie groups together.
    n_groups = p.groupby("object_id").group.transform("nunique")
    p = p[n_groups > 1]
    if p.empty:
        return []
    star = p.object_id.astype("category").cat.codes.to_numpy()
    grp_cat = p.group.astype("category")
    grp = grp_cat.cat.codes.to_numpy()
    m = p.mag.to_numpy()
    w = 1 / np.maximum(p.mag_err.to_numpy(), 0.003) ** 2
    ns, ng = star.max() + 1, grp.max() + 1
    comp = _components(star, grp, ng)
    n_comp = comp.max() + 1
    d = np.zeros(ng)
    keep = np.ones(len(m), bool)
    for _ in range(iterations):
        wk = w * keep
        big_m = np.bincount(star, wk * (m - d[grp]), ns) / np.maximum(
            np.bincount(star, wk, ns), 1e-30
        )
        r = m - big_m[star]
        new_d = np.bincount(grp, wk * r, ng) / np.maximum(np.bincount(grp, wk, ng), 1e-30)
        gw = np.bincount(grp, wk, ng) + 1e-30
        for c in range(n_comp):
            sel = comp == c
            new_d[sel] -= np.average(new_d[sel], weights=gw[sel])
        resid = r - new_d[grp]
        chi = resid * np.sqrt(w)
        sigma = 1.4826 * np.median(np.abs(chi[keep])) if keep.any() else 1.0
        new_keep = np.abs(chi) < clip * max(sigma, 1.0)
        converged = np.allclose(new_d, d, atol=1e-5) and (new_keep == keep).all()
        d, keep = new_d, new_keep
        if converged:
            break
    resid = m - big_m[star] - d[grp]
    rows = []
    for g, name in enumerate(grp_cat.cat.categories):
        sel = (grp == g) & keep
        n = len(np.unique(star[sel]))
        if n < min_stars:
            continue
        site, night = name.split("|")
        scatter = float(np.sqrt(np.average(resid[sel] ** 2, weights=w[sel])))
        err = float(max(1 / np.sqrt(w[sel].sum()), 1.2533 * scatter / np.sqrt(sel.sum())))
        rows.append(
            {
                "site": site,
                "night": night,
                "filter": band,
                "component": f"{band}{comp[g]}",
                "offset": float(d[g]),
                "offset_err": err,
                "n_stars": n,
                "rms": scatter,
            }
        )
    return rows


def _components(star: np.ndarray, grp: np.ndarray, ng: int) -> np.ndarray:
    """Connected components of groups that share stars (a label per group)."""
    from scipy.cluster.hierarchy import DisjointSet

    sets = DisjointSet(range(ng))
    first_group = {}
    for s_, g in zip(star.tolist(), grp.tolist(), strict=True):
        if s_ in first_group:
            sets.merge(first_group[s_], g)
        else:
            first_group[s_] = g
    labels = {}
    return np.array([labels.setdefault(sets[g], len(labels)) for g in range(ng)])


def apply_offsets(
    points: pd.DataFrame, offsets: pd.DataFrame, min_significance: float = 3.0
) -> pd.DataFrame:
    """Subtract each point's group offset and add its error in quadrature.

    Only offsets of at least ``min_significance`` σ are applied: when every frame is
    already calibrated on the same reference catalogue, most offsets are noise, and
    applying them would add scatter (measured on held-out stars). Points of a group
    without a solved or significant offset keep their magnitudes; ``offset_applied``
    says which.
    """
    keys = ["site", "night", "filter"]
    if offsets.empty:
        out = points.assign(offset=0.0, offset_err=0.0)
    else:
        significant = offsets[offsets.offset.abs() >= min_significance * offsets.offset_err]
        out = points.merge(significant[[*keys, "offset", "offset_err"]], on=keys, how="left")
    out["offset_applied"] = out.offset.notna()
    out["offset"] = out.offset.fillna(0.0)
    out["offset_err"] = out.offset_err.fillna(0.0)
    out["mag"] = out.mag - out.offset
    out["mag_err"] = np.hypot(out.mag_err, out.offset_err)
    return out


def fuse(points: pd.DataFrame, window_minutes: float = 30.0) -> pd.DataFrame:
    """Fuse near-simultaneous points of an object and filter into one.

    Points within ``window_minutes`` of the first point of a group (from any site) are
    averaged in flux with inverse-variance weights. The error is the formal one,
    multiplied by the Birge ratio ``sqrt(χ²/dof)`` when the points disagree more than
    their errors allow, so a fused point is never more precise than its inputs agree.

    Returns
    -------
    pandas.DataFrame
        ``object_id``, ``filter``, ``mjd`` (weighted), ``mag``, ``mag_err``,
        ``n_points``, ``sites`` (comma-joined), ``frame_ids`` (comma-joined),
        ``seeing_arcsec`` (weighted; NaN where the points carry none).
    """
    columns = [
        "object_id",
        "filter",
        "mjd",
        "mag",
        "mag_err",
        "n_points",
        "sites",
        "frame_ids",
        "seeing_arcsec",
    ]
    if points.empty:
        return pd.DataFrame(columns=columns)
    p = points.sort_values(["object_id", "filter", "mjd"]).reset_index(drop=True)
    window = window_minutes / 1440.0
    # Group boundaries: a new object/filter, or a point beyond the window of its group's
    # first point (a running start, so chains of points do not merge without limit).
    same = (p.object_id.to_numpy()[1:] == p.object_id.to_numpy()[:-1]) & (
        p["filter"].to_numpy()[1:] == p["filter"].to_numpy()[:-1]
    )
    mjd = p.mjd.to_numpy()
    group = np.zeros(len(p), np.int64)
    start = mjd[0]
    g = 0
    for i in range(1, len(p)):
        if not same[i - 1] or mjd[i] - start > window:
            g += 1
            start = mjd[i]
        group[i] = g
    flux = 10 ** (-0.4 * (p.mag.to_numpy() - 25))
    ferr = flux * p.mag_err.to_numpy() * np.log(10) / 2.5
    w = 1 / ferr**2
    n = np.bincount(group)
    sw = np.bincount(group, w)
    fmean = np.bincount(group, w * flux) / sw
    tmean = np.bincount(group, w * mjd) / sw
    chi2 = np.bincount(group, w * (flux - fmean[group]) ** 2)
    birge = np.sqrt(np.where(n > 1, chi2 / np.maximum(n - 1, 1), 1.0))
    ferr_f = np.maximum(birge, 1.0) / np.sqrt(sw)
    first = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    # Points are sorted by group: split the columns at group starts (pandas' group-by
    # with a Python join per group is ten times slower).
    sites = [
        ",".join(sorted(set(chunk))) for chunk in np.split(p.site.to_numpy(dtype=object), first[1:])
    ]
    frames = [",".join(chunk) for chunk in np.split(p.frame_id.to_numpy(dtype=object), first[1:])]
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = 25 - 2.5 * np.log10(fmean)
        mag_err = 2.5 / np.log(10) * ferr_f / fmean
    out = pd.DataFrame(
        {
            "object_id": p.object_id.to_numpy()[first],
            "filter": p["filter"].to_numpy()[first],
            "mjd": tmean,
            "mag": mag,
            "mag_err": mag_err,
            "n_points": n,
            "sites": sites,
            "frame_ids": frames,
            "seeing_arcsec": _weighted_seeing(p, group, w, sw),
        }
    )
    return out[np.isfinite(out.mag)].reset_index(drop=True)


def _weighted_seeing(points: pd.DataFrame, group, w, sw) -> np.ndarray:
    """The fused points' seeing (weighted like their fluxes); NaN where not recorded."""
    if "seeing_arcsec" not in points:
        return np.full(len(sw), np.nan)
    seeing = points.seeing_arcsec.to_numpy(float)
    return np.bincount(group, w * seeing) / sw


def _group_residuals(points: pd.DataFrame) -> pd.Series:
    """Weighted median residual of each site × night × filter from the stars' means."""
    w = 1 / np.maximum(points.mag_err.to_numpy(), 0.003) ** 2
    p = points.assign(w=w, wm=w * points.mag)
    sums = p.groupby(["object_id", "filter"])[["w", "wm"]].transform("sum")
    p = p.assign(resid=p.mag - sums.wm / sums.w)
    return p.groupby(["site", "night", "filter"]).resid.median()


def held_out_residual(stars: pd.DataFrame, min_stars: int = 5) -> dict[str, float]:
    """Site-to-site offsets left after calibration, measured on stars not used to solve.

    Stars are split in two by their id; offsets solved on one half are applied to the
    other, and the RMS over groups of the held-out half's median residuals is reported,
    before (``before``) and after (``after``) applying them (mag).
    """
    import zlib

    half = np.array([zlib.crc32(str(o).encode()) % 2 for o in stars.object_id]) == 1
    fit, test = stars[half], stars[~half]
    offsets = solve_offsets(fit, min_stars=min_stars)
    if offsets.empty or test.empty:
        return {"before": float("nan"), "after": float("nan")}
    keys = ["site", "night", "filter"]
    test = test.merge(offsets[keys], on=keys)
    multi = test.groupby("object_id").site.transform("nunique") > 1
    test = test[multi]
    before = _group_residuals(test)
    after = _group_residuals(apply_offsets(test, offsets))
    return {
        "before": float(np.sqrt(np.mean(before**2))),
        "after": float(np.sqrt(np.mean(after**2))),
    }
