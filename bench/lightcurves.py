"""Light-curve build time and memory as the store grows, beside a full-rebuild baseline.

Catalogs of N nights of four sites come from the catalog-level simulator (no pixels).
Each night is added as ``light_curves`` adds it (cross-match into the object registry,
offsets over all nights, fusion of every tile); the time and peak traced memory of the
newest night's update, and the process's peak resident memory, are printed for a
growing number of nights, beside a plain
baseline that rebuilds every light curve from all catalogs with astropy's
``match_to_catalog_sky`` and a pandas group-by. Not a test: it prints figures.

    python bench/lightcurves.py [--nights 4 8 16 32]
"""

import argparse
import datetime as dt
import resource
import tempfile
import time

import numpy as np
import pandas as pd
from tqdm import tqdm

from telescope_assets.lake import Lake
from telescope_assets.science import lightcurves as lc
from telescope_assets.simulate.catalogs import publish_catalogs, simulate_catalogs
from telescope_assets.simulate.sky import make_sky
from telescope_assets.tasks import lightcurves as lc_tasks

SITES = {"lapalma": -17.9, "tololo": -70.8, "sidingspring": 149.1, "sutherland": 20.8}


def night_list(n: int) -> list[str]:
    first = dt.date(2026, 3, 18)
    return [(first + dt.timedelta(days=d)).isoformat() for d in range(n)]


def update(lake: Lake, night: str) -> int:
    """What ``light_curves`` does for one night (fusion in this process)."""
    lc_tasks.ingest_night(lake, night)
    offsets, _ = lc_tasks.refresh_offsets(lake)
    return sum(lc_tasks.fuse_tile(t, lake, offsets) for t in lc_tasks.all_tiles(lake))


def baseline(lake: Lake, nights: list[str], refcat: pd.DataFrame) -> int:
    """Rebuild everything from all catalogs: astropy cross-match, pandas weighted means."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    cats = [
        lake.read_parquet(p)
        for night in nights
        for site in SITES
        for p in lake.list(f"catalogs/{site}/{night}", ".parquet")
    ]
    det = pd.concat(cats, ignore_index=True)
    det = det[det.snr >= 5]
    ref = SkyCoord(refcat.ra.to_numpy() * u.deg, refcat.dec.to_numpy() * u.deg)
    idx, sep, _ = SkyCoord(
        det.ra.to_numpy() * u.deg, det.dec.to_numpy() * u.deg
    ).match_to_catalog_sky(ref)
    det = det.assign(object_id=np.where(sep.arcsec < 1.5, refcat.source_id.to_numpy()[idx], ""))
    det = det[det.object_id != ""]
    w = 1 / det.mag_err**2
    det = det.assign(w=w, wm=w * det.mag, slot=(det.mjd * 48).round())
    fused = det.groupby(["object_id", "filter", "slot"])[["w", "wm"]].sum()
    return len(fused)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nights", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--stars-per-field", type=int, default=1400)
    args = parser.parse_args()
    sky = make_sky(8, stars_per_field=args.stars_per_field)
    refcat = sky.stars.rename(columns={"object_id": "source_id"})
    every = night_list(max(args.nights))
    det, _ = simulate_catalogs(sky, SITES, every, seed=1, offset_sigma=0.02)
    det = det.drop(columns="true_mag")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(tmp)
        publish_catalogs(lake, det)
        for i, night in enumerate(tqdm(every, desc="adding nights", unit="night")):
            n = i + 1
            if n not in args.nights:
                # Nights between the sizes printed are added untimed.
                update(lake, night)
                continue
            t0 = time.perf_counter()
            n_fused = update(lake, night)
            t_update = time.perf_counter() - t0
            # Peak resident memory of this process so far (Linux reports KiB).
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            t0 = time.perf_counter()
            baseline(lake, every[:n], refcat)
            t_base = time.perf_counter() - t0
            points = sum(len(lc_tasks.read_points(lake, t)) for t in lc_tasks.all_tiles(lake))
            rows.append(
                {
                    "nights": n,
                    "points": points,
                    "fused points": n_fused,
                    "update (s)": round(t_update, 2),
                    "peak RSS (MiB)": round(peak, 1),
                    "baseline rebuild (s)": round(t_base, 2),
                    "update / baseline": round(t_update / t_base, 2),
                }
            )
    print()
    print(pd.DataFrame(rows).to_string(index=False))
    print(
        f"\nHEALPix nside {lc.NSIDE}; the update includes the cross-match into the object "
        "registry, offsets solved over all nights and the fusion of every tile; the "
        "baseline only matches to the reference catalogue and averages (no offsets, no "
        "uncatalogued objects)."
    )


if __name__ == "__main__":
    main()
