"""Catalog-level simulation: what the source catalogs of many nights would hold.

Rendering and measuring images costs seconds per frame; light curves, periods and
cross-site calibration need months of epochs. This module skips the pixels and writes
catalog rows straight from the sky's truth, with a photometric error model, per-site ×
night zero-point offsets (known, so a solver can be checked) and the sparse cadence of a
network: each site observes at night in its own longitude, a few visits per field.
"""

from __future__ import annotations

import datetime as dt
import zlib

import numpy as np
import pandas as pd

from telescope_assets.manifests import MANIFEST_SCHEMAS
from telescope_assets.simulate.sky import Sky, rng_for

__all__ = ["mag_error", "publish_catalogs", "simulate_catalogs"]


def mag_error(mag, floor: float = 0.005, mag_at_002: float = 18.5) -> np.ndarray:
    """A small telescope's error model: a floor, then photon noise (0.02 at ``mag_at_002``)."""
    mag = np.asarray(mag, float)
    photon = 0.02 * 10 ** (0.4 * (mag - mag_at_002))
    # The sky dominates faint stars: σ grows twice as fast past the knee.
    photon = np.where(mag > mag_at_002, 0.02 * 10 ** (0.8 * (mag - mag_at_002)), photon)
    return np.hypot(floor, photon)


def simulate_catalogs(
    sky: Sky,
    sites: dict[str, float],
    nights: list[str],
    seed: int = 0,
    visits_per_night: int = 4,
    bands: tuple[str, ...] = ("g", "r"),
    offset_sigma: float = 0.03,
    limit_mag: float = 20.0,
    fields: tuple[str, ...] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Detections of the sky's stars as a network of sites would catalogue them.

    Parameters
    ----------
    sky : Sky
        The truth.
    sites : dict
        Site name → east longitude (degrees); a site observes within ±4 h of its local
        midnight.
    nights : list of str
        ``YYYY-MM-DD`` night keys.
    visits_per_night : int
        Frames per site and night: the bands in turn, then the next field.
    offset_sigma : float
        Spread of the per-site × night zero-point offsets added to every magnitude.
    limit_mag : float
        Stars fainter than this (at the epoch) are not detected.
    fields : tuple of str, optional
        Only these fields (default all of the sky's).

    Returns
    -------
    detections : pandas.DataFrame
        Catalog-like rows: ``source_id``, ``frame_id``, ``site``, ``night``, ``filter``,
        ``mjd``, ``ra``, ``dec``, ``mag``, ``mag_err``, ``snr``, ``flags``, ``ref_id``,
        and the truth ``true_mag``.
    offsets : pandas.DataFrame
        The true ``site``, ``night``, ``filter``, ``offset`` added.
    """
    field_names = list(fields or [f.name for f in sky.fields])
    rows, offsets = [], []
    for night in nights:
        date = dt.date.fromisoformat(night)
        for site, lon in sites.items():
            rng = rng_for(seed, "catalogs", site, night)
            # Local midnight in UTC: the night key's date + 1 day at 00:00 local mean time.
            midnight_mjd = (date - dt.date(1858, 11, 17)).days + 1 - lon / 360.0
            night_offsets = {b: float(rng.normal(0, offset_sigma)) for b in bands}
            for b in bands:
                offsets.append(
                    {"site": site, "night": night, "filter": b, "offset": night_offsets[b]}
                )
            for v in range(visits_per_night):
                mjd = midnight_mjd + rng.uniform(-4, 4) / 24
                field = field_names[(v // len(bands) + hash_index(site, night)) % len(field_names)]
                band = bands[v % len(bands)]
                frame = (f"{site}-{night}-{v:02d}", site, night, band, mjd)
                rows.append(_visit(sky, rng, frame, field, night_offsets[band], limit_mag))
    detections = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return detections, pd.DataFrame(offsets)


def _visit(sky: Sky, rng, frame: tuple, field: str, offset: float, limit_mag: float):
    """The catalogue of one simulated frame ``(frame_id, site, night, band, mjd)``."""
    fid, site, night, band, mjd = frame
    stars = sky.star_mags(mjd, band, field)
    true_mag = stars.mag.to_numpy()
    seen = true_mag < limit_mag
    stars, true_mag = stars[seen], true_mag[seen]
    err = mag_error(true_mag)
    mag = true_mag + offset + rng.normal(0, err)
    jitter = rng.normal(0, 0.1 / 3600, (2, len(stars)))
    return pd.DataFrame(
        {
            "source_id": [f"{fid}-{i:05d}" for i in range(len(stars))],
            "frame_id": fid,
            "site": site,
            "night": night,
            "filter": band,
            "mjd": mjd,
            "ra": stars.ra.to_numpy() + jitter[0] / np.cos(np.radians(stars.dec.to_numpy())),
            "dec": stars.dec.to_numpy() + jitter[1],
            "mag": mag,
            "mag_err": err,
            "snr": 1.0857 / err,
            "flags": 0,
            "ref_id": stars.object_id.to_numpy(),
            "true_mag": true_mag,
        }
    )


def hash_index(*parts: object) -> int:
    """A small stable integer from ``parts`` (which field a site starts its night on)."""
    return int(rng_for(0, *parts).integers(0, 1 << 16))


def publish_catalogs(lake, detections: pd.DataFrame, bad_suffix: str | None = None) -> None:
    """Write simulated catalogs where ``source_catalogs`` and ``frame_quality`` would.

    ``catalogs/{site}/{night}/{frame_id}.parquet`` per frame, and per site × night the
    ``source_catalogs``, ``frame_quality`` and ``raw_frames`` manifests (frames whose id
    ends with ``bad_suffix`` are of quality ``bad``). ``lake`` is a
    :class:`telescope_assets.lake.Lake`.
    """
    for (site, night), part in detections.groupby(["site", "night"]):
        frames = []
        for fid, cat in part.groupby("frame_id"):
            lake.write_parquet(lake.catalog(site, night, fid), cat)
            bad = bad_suffix is not None and fid.endswith(bad_suffix)
            frames.append(
                {
                    "frame_id": fid,
                    "filter": cat["filter"].iloc[0],
                    "mjd": cat.mjd.iloc[0],
                    "object": "simulated",
                    "quality_class": "bad" if bad else "good",
                    "zero_point": 25.0,
                    "seeing_arcsec": 1.5,
                    "transparency": 0.9,
                    "anomaly_score": (zlib.crc32(fid.encode()) % 1000) / 1000,
                    "anomalous": False,
                    "anomaly_model": "anomaly/1",
                    "cnn_model": "frame_quality/1",
                }
            )
        table = pd.DataFrame(frames)
        catalogued = [c for c in table if c in MANIFEST_SCHEMAS["source_catalogs"].names]
        lake.write_manifest("source_catalogs", site, night, table[catalogued])
        lake.write_manifest("frame_quality", site, night, table)
        lake.write_manifest("raw_frames", site, night, table[["frame_id"]])
