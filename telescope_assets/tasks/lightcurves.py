"""Light curves, variability and anomalies: lake in, science, lake out (no Dagster).

Layout of the light-curve store (HEALPix nside 64, nested; ``{tile}`` is the pixel)::

    lightcurves/objects/{tile}.parquet         object registry: id, position, ref_id
    lightcurves/points/{tile}/{night}.parquet  every accepted detection of that night
    lightcurves/offsets.parquet                per site × night × filter zero-point offsets
    lightcurves/fused/{tile}.parquet           fused points, one light curve per object
    variability/{tile}.parquet                 statistics, period and class per object
    anomalies/{night}/objects.parquet          objects ranked by an isolation forest
    anomalies/{night}/frames.parquet           frames ranked by the autoencoder score

A night's points are one file per tile, replaced whole when the night is recomputed, so
a rerun or a backfill never duplicates a point. The object registry only grows: a
recomputed night finds the objects it made before and reuses their ids.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from telescope_assets.lake import Lake
from telescope_assets.science import lightcurves, variability

__all__ = [
    "ANOMALY_COLUMNS",
    "LC_VERSION",
    "catalogued_variables",
    "fuse_tile",
    "ingest_night",
    "new_variables",
    "night_detections",
    "rank_anomalies",
    "refresh_offsets",
    "unfit_for_offsets",
    "variability_tile",
    "write_variability",
]

LC_VERSION = "lc-2"
#: What a ranked object's row shows (asset metadata and the nightly report).
ANOMALY_COLUMNS = (
    "rank",
    "object_id",
    "anomaly_score",
    "var_class",
    "amplitude",
    "chi2_red",
    "n_epochs",
)
POINT_COLUMNS = [
    "object_id",
    "source_id",
    "frame_id",
    "site",
    "night",
    "filter",
    "mjd",
    "ra",
    "dec",
    "mag",
    "mag_err",
    "snr",
    "flags",
    "ref_id",
    "sep_arcsec",
    "seeing_arcsec",
]
#: Catalog flags that keep a detection out of light curves: saturated (1), masked pixels
#: in the aperture (2: a cosmic ray, a bad column or a trail took part of the star's
#: light; on the demo of 2026-12-07 such points of constant stars sat +1.2σ faint on
#: average with a tail to 86σ, and made 24 of the 28 points off by more than 10σ),
#: edge (4).
EXCLUDED_FLAGS = 1 | 2 | 4


def night_detections(lake: Lake, night: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every usable detection of one night, all sites.

    A frame is used when ``frame_quality`` calls it good or medium and it has a zero
    point; a detection when it is not saturated, has no masked pixel in its aperture, is
    not at the edge and has S/N ≥ 5.

    Returns
    -------
    detections : pandas.DataFrame
        Catalog rows.
    frames : pandas.DataFrame
        One row per catalogued frame with ``used`` and, if not used, ``reason``.
    """
    parts, frames = [], []
    quality = lake.night_table("frame_quality", night)
    for row in quality.to_dict("records"):
        site, fid = row["site"], row["frame_id"]
        reason = ""
        if row.get("quality_class") == "bad":
            reason = "quality bad"
        elif not np.isfinite(row.get("zero_point", np.nan)):
            reason = "no zero point"
        path = lake.catalog(site, night, fid)
        if not reason and not lake.exists(path):
            reason = "no catalog"
        frames.append(
            {
                "site": site,
                "night": night,
                "frame_id": fid,
                "filter": row.get("filter"),
                "mjd": row.get("mjd"),
                "used": not reason,
                "reason": reason,
            }
        )
        if reason:
            continue
        cat = lake.read_parquet(path)
        keep = (
            ((cat["flags"].to_numpy() & EXCLUDED_FLAGS) == 0)
            & (cat.snr.to_numpy() >= 5)
            & np.isfinite(cat.mag.to_numpy())
            & np.isfinite(cat.mag_err.to_numpy())
        )
        # The frame's seeing beside each point: aperture photometry of a galaxy or a
        # blend follows it, which variability tells from a star's own changes.
        parts.append(cat[keep].assign(seeing_arcsec=row.get("seeing_arcsec", np.nan)))
    columns = [c for c in POINT_COLUMNS if c not in ("object_id", "sep_arcsec")]
    det = pd.concat(parts, ignore_index=True)[columns] if parts else pd.DataFrame(columns=columns)
    det["ref_id"] = det.ref_id.fillna("").astype(str)
    return det, pd.DataFrame(frames)


def _neighbours(tiles) -> set[int]:
    from astropy_healpix import HEALPix

    hp = HEALPix(nside=lightcurves.NSIDE, order="nested")
    tiles = np.array(sorted(set(int(t) for t in tiles)), dtype=np.int64)
    if tiles.size == 0:
        return set()
    near = hp.neighbours(tiles).ravel()
    return set(tiles.tolist()) | {int(t) for t in near if t >= 0}


def _read_objects(lake: Lake, tiles) -> pd.DataFrame:
    parts = [
        lake.read_parquet(lake.light_curve_objects(t))
        for t in sorted(tiles)
        if lake.exists(lake.light_curve_objects(t))
    ]
    cols = ["object_id", "ra", "dec", "ref_id", "tile", "first_night"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def ingest_night(lake: Lake, night: str) -> dict:
    """Cross-match one night's detections into objects and write its points.

    Replaces every ``lightcurves/points/*/{night}.parquet`` (stale tiles of an earlier
    run of the night are removed) and appends new objects to their tiles' registries.

    Returns
    -------
    dict
        ``n_points``, ``n_objects`` (seen tonight), ``n_new_objects``, ``tiles``,
        ``frames`` (the per-frame table of :func:`night_detections`).
    """
    det, frames = night_detections(lake, night)
    det["tile"] = lightcurves.tile_of(det.ra, det.dec) if len(det) else np.array([], np.int64)
    known = _read_objects(lake, _neighbours(det.tile))
    det, new = lightcurves.assign_objects(det, known)
    new = new.assign(
        tile=lightcurves.tile_of(new.ra, new.dec) if len(new) else [], first_night=night
    )
    for tile, rows in new.groupby("tile"):
        rel = lake.light_curve_objects(int(tile))
        old = lake.read_parquet(rel) if lake.exists(rel) else pd.DataFrame(columns=rows.columns)
        merged = pd.concat([old, rows], ignore_index=True).drop_duplicates("object_id")
        lake.write_parquet(rel, merged)
    every = pd.concat([known, new], ignore_index=True).drop_duplicates("object_id")
    tile_of_object = every.set_index("object_id").tile
    det["tile"] = tile_of_object.loc[det.object_id].to_numpy() if len(det) else det.tile
    written = set()
    for tile, rows in det.groupby("tile"):
        lake.write_parquet(lake.light_curve_points(int(tile), night), rows[POINT_COLUMNS])
        written.add(int(tile))
    for tile in lake.list_dirs(lake.light_curve_points()):
        if int(tile) not in written:
            lake.delete(lake.light_curve_points(int(tile), night))
    return {
        "n_points": len(det),
        "n_objects": int(det.object_id.nunique()) if len(det) else 0,
        "n_new_objects": len(new),
        "tiles": sorted(written),
        "frames": frames,
    }


def all_tiles(lake: Lake) -> list[int]:
    """Tiles that hold points."""
    return [int(t) for t in lake.list_dirs(lake.light_curve_points())]


def read_points(lake: Lake, tile: int) -> pd.DataFrame:
    """Every night's points of a tile."""
    parts = [lake.read_parquet(p) for p in lake.list(lake.light_curve_points(tile), ".parquet")]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=POINT_COLUMNS)


def catalogued_variables(lake: Lake) -> set[str]:
    """Ids of the stars the reference catalogues (``refcat/*.parquet``) call variable."""
    known = set()
    for rel in lake.list(lake.refcat(), ".parquet"):
        table = lake.read_parquet(rel)
        if "variable" in table and "source_id" in table:
            known |= set(table.source_id[table.variable.astype(bool)])
    return known


def unfit_for_offsets(lake: Lake) -> set[str]:
    """Objects whose points must not tie sites together.

    The catalogued variables, and those the pipeline found variable or
    ``seeing_dependent`` (a blend's brightness follows the seeing, which differs
    between sites).
    """
    unfit = catalogued_variables(lake)
    found = read_variability(lake)
    if len(found):
        bad = found.var_class.isin([*variability.VARYING, "seeing_dependent"])
        unfit |= set(found.object_id[bad])
    return unfit


def calibration_stars(points: pd.DataFrame, max_err: float = 0.03) -> pd.DataFrame:
    """Points of catalogued stars measured well enough to tie sites together."""
    return points[(points.ref_id != "") & (points.mag_err < max_err) & (points["flags"] == 0)]


def refresh_offsets(lake: Lake, variable_ids: set[str] | None = None) -> tuple[pd.DataFrame, dict]:
    """Solve the zero-point offsets of every site × night × filter over all points.

    Catalogued stars with good photometry are used, less the known variables
    (``variable_ids``). The residual site-to-site offset is measured by
    cross-validation: offsets solved on half of the stars are applied to the other half,
    whose per-group median residuals are what remains.

    Returns
    -------
    offsets : pandas.DataFrame
        Written to ``lightcurves/offsets.parquet``.
    summary : dict
        ``offset_rms`` (spread of the offsets, mag), ``residual_rms_before`` and
        ``residual_rms_after`` (held-out site-to-site offsets, mag), ``n_groups``.
    """
    parts = [calibration_stars(read_points(lake, t)) for t in all_tiles(lake)]
    stars = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=POINT_COLUMNS)
    if variable_ids:
        stars = stars[~stars.object_id.isin(variable_ids)]
    offsets = lightcurves.solve_offsets(stars)
    lake.write_parquet(lake.site_offsets(), offsets)
    summary = {
        "n_groups": len(offsets),
        "offset_rms": float(np.sqrt(np.mean(offsets.offset**2))) if len(offsets) else float("nan"),
    }
    held = (
        lightcurves.held_out_residual(stars) if len(stars) else {"before": np.nan, "after": np.nan}
    )
    summary["residual_rms_before"] = held["before"]
    summary["residual_rms_after"] = held["after"]
    return offsets, summary


def fuse_tile(tile: int, lake: Lake, offsets: pd.DataFrame) -> int:
    """Apply the offsets to a tile's points and fuse them; returns the fused point count."""
    points = read_points(lake, tile)
    fused = lightcurves.fuse(lightcurves.apply_offsets(points, offsets))
    lake.write_parquet(lake.fused_light_curves(tile), fused)
    return len(fused)


def read_fused(lake: Lake, tiles=None) -> pd.DataFrame:
    """Fused light curves of the given tiles (default all)."""
    tiles = all_tiles(lake) if tiles is None else tiles
    parts = [
        lake.read_parquet(lake.fused_light_curves(t))
        for t in tiles
        if lake.exists(lake.fused_light_curves(t))
    ]
    return pd.concat(parts, ignore_index=True) if parts else lightcurves.fuse(pd.DataFrame())


def variability_tile(tile: int, lake: Lake) -> pd.DataFrame:
    """Characterise every object of a tile from its fused light curve.

    Not written: :func:`write_variability` judges them against every tile's objects first.
    """
    fused = read_fused(lake, [tile])
    rows = []
    for oid, g in fused.groupby("object_id"):
        v = variability.characterise(
            g.mjd, g.mag, g.mag_err, g["filter"], g.get("seeing_arcsec", None)
        )
        mean = g.groupby("filter").mag.median().to_dict()
        rows.append(
            {
                "object_id": oid,
                "tile": tile,
                **v.as_dict(),
                **{f"median_{b}": m for b, m in mean.items()},
            }
        )
    return pd.DataFrame(rows)


def write_variability(lake: Lake, tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Judge the tiles' objects against each other and write each tile's table.

    An object keeps a variable class only when its χ² also stands out from the objects
    of its brightness (:func:`~telescope_assets.science.variability.against_ensemble`).
    """
    parts = [t for t in tables if len(t)]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(table):
        table = variability.against_ensemble(table)
    for tile, rows in table.groupby("tile") if len(table) else []:
        lake.write_parquet(lake.variability(int(tile)), rows.reset_index(drop=True))
    return table


def read_variability(lake: Lake) -> pd.DataFrame:
    """Every tile's variability table."""
    parts = [lake.read_parquet(p) for p in lake.list(lake.variability(), ".parquet")]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def new_variables(lake: Lake) -> pd.DataFrame:
    """Variable objects the reference catalogues do not know, most significant first.

    Periodic and eclipsing objects first (lowest false-alarm probability first), then
    irregular ones; ``seeing_dependent`` objects (galaxies, blends) are not variables.
    New means an uncatalogued object, or a catalogued star not called variable there.
    """
    table = read_variability(lake)
    if not len(table):
        return table
    varying = table[table.var_class.isin(variability.VARYING)]
    new = varying[~varying.object_id.isin(catalogued_variables(lake))]
    order = (new.var_class == "irregular").astype(int)
    return new.assign(_order=order).sort_values(["_order", "log_fap"]).drop(columns="_order")


def rank_anomalies(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Rank objects by an isolation forest on their light-curve features.

    Objects with too few epochs are left out. ``anomaly_score`` is the negated
    ``score_samples`` (higher is stranger); ``rank`` 1 is the strangest.
    """
    from sklearn.ensemble import IsolationForest

    usable = table[table.var_class != "too_few"].copy() if len(table) else table
    if len(usable) < 10:
        return usable.assign(
            anomaly_score=np.nan, rank=np.arange(1, len(usable) + 1), forest="too few objects"
        )
    x = usable[list(variability.FEATURES)].to_numpy(float)
    x = np.where(np.isfinite(x), x, np.nanmedian(x, axis=0))
    # Heavy-tailed features (χ², amplitude) on a log scale, so one extreme star does not
    # squash the rest into a single split.
    for i, name in enumerate(variability.FEATURES):
        if name in ("chi2_red", "amplitude", "std"):
            x[:, i] = np.log10(np.maximum(x[:, i], 1e-6))
    import sklearn

    forest = IsolationForest(n_estimators=300, random_state=seed).fit(x)
    usable["anomaly_score"] = -forest.score_samples(x)
    usable["forest"] = (
        f"IsolationForest(scikit-learn {sklearn.__version__}, 300 trees, seed {seed})"
    )
    usable = usable.sort_values("anomaly_score", ascending=False)
    usable["rank"] = np.arange(1, len(usable) + 1)
    return usable.reset_index(drop=True)
