"""Catalog speed on 2048² frames: telescope_assets beside a plain photutils loop.

Not a test. Simulates one clear night of one site with 2048 x 2048 frames and a dense
field (a few thousand stars per frame), calibrates them, then times per frame:

(a) ``catalog_one`` — two-pass background, detection with deblending, windowed
    centroids, Gaussian-fit FWHM, aperture photometry, local-background aperture
    correction, WCS refinement against the reference catalogue and the zero point;
(b) a plain photutils loop doing detection + photometry only (``Background2D``,
    ``detect_sources``, ``deblend_sources``, ``SourceCatalog``, ``aperture_photometry``);
(c) ``catalog_one`` mapped over 2 dask worker processes (throughput).

Prints seconds per frame, catalogs per second per core, the ratios and peak memory.

    .venv/bin/python bench/catalogs.py [--frames 4] [--size 2048]
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from telescope_assets import tasks
from telescope_assets.ingest import ingest
from telescope_assets.lake import Lake, Store
from telescope_assets.registry import load_registry
from telescope_assets.resources import DaskResource
from telescope_assets.simulate.network import SimulationConfig, simulate_network

SITE = "sidingspring"
NIGHT = "2026-03-18"


def _plain_photutils(path: str, lake: Lake) -> int:
    from astropy.convolution import convolve
    from photutils.aperture import CircularAperture, aperture_photometry
    from photutils.background import Background2D, MedianBackground
    from photutils.segmentation import (
        SourceCatalog,
        deblend_sources,
        detect_sources,
        make_2dgaussian_kernel,
    )

    with lake.read_fits(path) as hdul:
        sci = hdul["SCI"].data.astype(float)
        err = hdul["ERR"].data.astype(float)
        mask = hdul["MASK"].data > 0
    bkg = Background2D(sci, 64, mask=mask, filter_size=3, bkg_estimator=MedianBackground())
    data = sci - bkg.background
    conv = convolve(data, make_2dgaussian_kernel(3.0, size=7))
    segm = detect_sources(conv, 3.0 * bkg.background_rms, 5, mask=mask)
    segm = deblend_sources(conv, segm, 5, progress_bar=False)
    cat = SourceCatalog(data, segm, convolved_data=conv, mask=mask)
    pos = np.column_stack([cat.x_centroid_win, cat.y_centroid_win])
    pos = pos[np.isfinite(pos).all(axis=1)]
    aps = [CircularAperture(pos, r=r) for r in (3.0, 5.0, 8.0)]
    aperture_photometry(data, aps, error=err, mask=mask)
    return len(pos)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    reg = load_registry().with_camera(SITE, shape=(args.size, args.size))
    site = reg[SITE]
    with tempfile.TemporaryDirectory() as tmp:
        rates = dict.fromkeys(
            ("tracking", "defocus", "satellite", "hot_column", "poor_seeing"), 0.0
        )
        cfg = SimulationConfig(seed=3, nights=(NIGHT,), sites=(SITE,), stars_per_field=40000,
                               science_per_night=args.frames, truncated_uploads=0.0,
                               defect_rates=rates)  # fmt: skip
        print(f"simulating {args.frames} frames of {args.size}² with a dense field ...", flush=True)
        simulate_network(reg, Path(tmp, "in"), Path(tmp, "truth"), cfg)
        lake = Lake(str(Path(tmp, "lake")))
        for p in Path(tmp, "truth", "refcat").glob("*.parquet"):
            lake.write_bytes(f"refcat/{p.name}", p.read_bytes())
        ingest(Store(str(Path(tmp, "in"))), lake, reg, max_files=1000)
        raw = tasks.raw_manifest(lake, SITE, NIGHT)
        masters = tasks.build_masters(lake, site, NIGHT, raw)
        rows = [tasks.calibrate_one(r, lake, site, masters)
                for r in raw[raw.frame_type == "science"].to_dict("records")]  # fmt: skip

        t0 = time.perf_counter()
        out = [tasks.catalog_one(r, lake, site) for r in rows]
        ours = (time.perf_counter() - t0) / len(rows)
        t0 = time.perf_counter()
        counts = [_plain_photutils(r["path"], lake) for r in rows]
        plain = (time.perf_counter() - t0) / len(rows)
        dask = DaskResource(n_workers=2, processes=True)
        with dask.client() as client:
            t0 = time.perf_counter()
            client.gather(client.map(tasks.catalog_one, rows, lake=lake, site=site, pure=False))
            parallel = (time.perf_counter() - t0) / len(rows)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = np.mean([o["n_sources"] for o in out])
    print()
    print(f"{'method':52s} {'s/frame':>8s} {'cat/s/core':>11s} {'vs plain':>9s}")
    for name, sec, cores in (
        ("plain photutils loop (detect + photometry only)", plain, 1),
        ("telescope_assets catalog_one, serial (+WCS, ZP)", ours, 1),
        ("telescope_assets catalog_one, dask 2 processes", parallel, 2),
    ):
        print(f"{name:52s} {sec:8.2f} {1 / sec / cores:11.3f} {plain / sec:8.2f}x")
    print(f"sources per frame: ours {n:.0f}, plain {np.mean(counts):.0f}; "
          f"median WCS RMS {np.median([o['astrometric_rms_px'] for o in out]):.3f} px; "
          f"peak RSS of this process {peak:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
