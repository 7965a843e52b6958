"""Calibration speed on 2048² frames: telescope_assets beside a plain ccdproc loop.

Not a test. Simulates one night of one site with 2048 x 2048 (+ overscan) frames, then
times, per science frame, (a) our calibration (overscan, trim, bias, dark, flat, ERR,
MASK with astroscrappy) run serially, (b) the same through the dask resource with 2
worker processes, and (c) a plain ccdproc loop doing the same work (ccd_process +
cosmicray_lacosmic). Prints seconds per frame and the ratios.

    .venv/bin/python bench/calibration.py [--frames 6] [--size 2048]
"""

import argparse
import tempfile
import time
from pathlib import Path

import astropy.units as u
import ccdproc
import numpy as np
from astropy.nddata import CCDData

from telescope_assets.registry import load_registry
from telescope_assets.resources import DaskResource
from telescope_assets.science import calibration
from telescope_assets.science.frames import read_image
from telescope_assets.simulate.network import SimulationConfig, simulate_network

SITE = "sutherland"


def _calibrate(item, cam, bias, dark, flat):
    raw, exptime = item
    return calibration.calibrate_frame(read_image(raw), exptime, cam, bias, dark, flat).n_cosmic_ray


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--size", type=int, default=2048)
    args = parser.parse_args()
    n = args.size
    reg = load_registry().with_camera(
        SITE, shape=(n, n + 32), biassec=f"[{n + 5}:{n + 28},1:{n}]", trimsec=f"[1:{n},1:{n}]"
    )
    cam = reg[SITE].camera
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SimulationConfig(
            seed=1, nights=("2026-03-18",), sites=(SITE,), science_per_night=args.frames
        )
        print(f"simulating {args.frames} science frames of {n}x{n + 32} ...", flush=True)
        frames = simulate_network(reg, Path(tmp, "in"), Path(tmp, "truth"), cfg)

        def load(kind, band=None):
            rows = frames[(frames.kind == kind) & ((frames["filter"] == band) if band else True)]
            blobs = [Path(tmp, "in", f).read_bytes() for f in rows.filename]
            return blobs, rows.exptime.tolist()

        sci_blobs, sci_t = load("science")
        band = frames[frames.kind == "science"]["filter"].iloc[0]
        sci = [
            (b, t)
            for b, t, f in zip(
                sci_blobs, sci_t, frames[frames.kind == "science"]["filter"], strict=True
            )
            if f == band
        ]
        biases, _ = load("bias")
        darks, dark_t = load("dark")
        flats, flat_t = load("flat", band)
        bias = calibration.make_master_bias([read_image(b) for b in biases], cam)
        dark = calibration.make_master_dark([read_image(b) for b in darks], dark_t, cam, bias)
        flat = calibration.make_master_flat([read_image(b) for b in flats], flat_t, cam, bias, dark)

        t0 = time.perf_counter()
        for item in sci:
            _calibrate(item, cam, bias, dark, flat)
        ours = (time.perf_counter() - t0) / len(sci)

        dask = DaskResource(n_workers=2, processes=True)
        with dask.client() as client:  # cluster start-up is not part of per-frame cost
            t0 = time.perf_counter()
            masters = {
                k: client.scatter(v, broadcast=True)
                for k, v in (("bias", bias), ("dark", dark), ("flat", flat))
            }
            client.gather(client.map(_calibrate, sci, cam=cam, pure=False, **masters))
            ours_dask = (time.perf_counter() - t0) / len(sci)

        mbias = CCDData(bias, unit="electron")
        mdark = CCDData(dark, unit="electron", meta={"exptime": 1.0})
        mflat = CCDData(flat, unit="")
        t0 = time.perf_counter()
        for raw, exptime in sci:
            ccd = CCDData(read_image(raw).astype(float), unit="adu", meta={"exptime": exptime})
            out = ccdproc.ccd_process(
                ccd,
                oscan=cam.biassec,
                trim=cam.trimsec,
                gain=cam.gain * u.electron / u.adu,
                readnoise=cam.read_noise * u.electron,
                error=True,
                master_bias=mbias,
                dark_frame=mdark,
                exposure_key="exptime",
                exposure_unit=u.s,
                dark_scale=True,
                master_flat=mflat,
            )
            ccdproc.cosmicray_lacosmic(
                out,
                readnoise=cam.read_noise,
                gain=1.0 * u.electron / u.electron,
                satlevel=cam.saturation * cam.gain,
                sigclip=5.0,
                objlim=8.0,
                niter=calibration.CR_ITERATIONS,  # the same work as ours
            )
        plain = (time.perf_counter() - t0) / len(sci)

    print()
    print(f"{'method':44s} {'s/frame':>8s} {'speed-up':>10s}")
    for name, sec in (
        ("plain ccdproc loop (ccd_process + lacosmic)", plain),
        ("telescope_assets, serial", ours),
        ("telescope_assets, dask 2 worker processes", ours_dask),
    ):
        print(f"{name:44s} {sec:8.2f} {plain / sec:9.2f}x")
    print(
        f"({len(sci)} frames of {n}x{n}, {np.prod(cam.trimmed_shape) / 1e6:.1f} Mpixel after trim)"
    )


if __name__ == "__main__":
    main()
