"""Model inference throughput: real/bogus triplets/s and frame-quality frames/s.

Not a test. Uses the champions of the demo's MLflow store and the cutouts and thumbnails
of the demo's lake (run ``make demo`` first), repeated to ``--n`` examples. Times, best of
three runs each, on the device chosen at run time (a GPU when one is visible, else the
CPU with ``--threads`` torch threads, by default one per core this process may use):

* normalising the cutouts: one image at a time (as before 2026-12-08) and all at once;
* the registered program as loaded (``torch.export``) beside what the pipeline scores
  with (``ml.inference.for_inference``: batch normalisation folded, channels-last), at
  several batch sizes, and with their largest difference in p(real);
* ``tasks.alerts.score`` end to end (normalising, batching, the network);
* bfloat16 for information only (the pipeline scores in float32): its speed and how many
  real/bogus decisions at 0.5 it changes.

    python bench/inference.py [--n 8192] [--threads N]
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRACKING = f"sqlite:///{REPO / 'models' / 'mlflow.db'}"


def _best(fn, repeat: int = 3) -> float:
    fn()  # warm: first calls allocate and pick kernels
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _cutouts(n: int) -> np.ndarray:
    files = sorted((REPO / "data" / "lake" / "candidates").rglob("*.npz"))
    stamps = [np.load(f)["cutouts"] for f in files]
    stamps = [s for s in stamps if len(s)]
    if not stamps:
        raise SystemExit("no candidate cutouts in data/lake: run `make demo` first")
    pool = np.concatenate(stamps)
    return pool[np.arange(n) % len(pool)], len(pool)


def _thumbnails(n: int) -> tuple[np.ndarray, np.ndarray]:
    files = sorted(
        f for f in (REPO / "data" / "lake" / "thumbnails").rglob("*.npy") if f.suffixes == [".npy"]
    )
    if not files:
        raise SystemExit("no frame thumbnails in data/lake: run `make demo` first")
    pool = np.stack([np.load(io.BytesIO(f.read_bytes())) for f in files])
    thumbs = pool[np.arange(n) % len(pool)]
    scalars = np.tile(np.float32([2.5, 0.9, 0.05]), (n, 1))
    return thumbs, scalars


def _run(net, x, batch: int, device: str, *extra):
    import torch

    with torch.inference_mode():
        out = [
            net(
                torch.as_tensor(x[i : i + batch]).to(device),
                *[torch.as_tensor(e[i : i + batch]).to(device) for e in extra],
            )
            for i in range(0, len(x), batch)
        ]
    return torch.cat(out).float().cpu()


def _real_bogus(n: int, device: str) -> None:
    import torch

    from telescope_assets.ml import model_registry
    from telescope_assets.ml.inference import for_inference
    from telescope_assets.science.thumbnails import normalise, normalise_stack
    from telescope_assets.tasks.alerts import SCORE_BATCH, score

    stamps, distinct = _cutouts(n)
    print(f"real_bogus: {n} triplets (the demo's {distinct} candidates, repeated)")
    loop = _best(lambda: np.stack([[normalise(c) for c in t] for t in stamps]), repeat=1)
    stack = _best(lambda: normalise_stack(stamps))
    print(f"  normalise one by one   {n / loop:9.0f} triplets/s")
    print(f"  normalise_stack        {n / stack:9.0f} triplets/s   ({loop / stack:.0f}x)")
    x = normalise_stack(stamps)
    version = model_registry.champion(TRACKING, "real_bogus").version
    program = model_registry.load_version(TRACKING, "real_bogus", str(version))
    fast = for_inference(program, "real_bogus", device)
    program = program.to(device) if device != "cpu" else program
    reference = torch.softmax(_run(program, x, 4096, device), 1)
    for batch in (16, 64, 256, 4096):
        t_prog = _best(lambda b=batch: _run(program, x, b, device))
        t_fast = _best(lambda b=batch: _run(fast, x, b, device))
        p = torch.softmax(_run(fast, x, batch, device), 1)
        print(
            f"  batch {batch:5d}: program {n / t_prog:7.0f}/s, for_inference {n / t_fast:7.0f}/s "
            f"({t_prog / t_fast:.1f}x), max |dp| {float((p - reference).abs().max()):.1e}"
        )
    end = _best(lambda: score(fast, stamps, tuple(range(5)), device=device))
    print(f"  score() end to end, batches of {SCORE_BATCH}: {n / end:7.0f} triplets/s")

    def before():  # until 2026-12-08: image by image, the program, a frame's 60 at once
        x = np.stack([[normalise(c) for c in t] for t in stamps]).astype(np.float32)
        return _run(program, x, 60, device)

    print(f"  same as scored before 2026-12-08:  {n / _best(before, repeat=1):7.0f} triplets/s")
    if device == "cpu":
        half = fast.to(torch.bfloat16)
        xb = torch.as_tensor(x).to(torch.bfloat16)
        t_half = _best(lambda: _run(half, xb, SCORE_BATCH, device))
        p = torch.softmax(_run(half, xb, SCORE_BATCH, device), 1)
        flips = int(((p[:, 0] >= 0.5) != (reference[:, 0] >= 0.5)).sum())
        print(
            f"  bfloat16 (not used): {n / t_half:7.0f}/s, max |dp| "
            f"{float((p - reference).abs().max()):.1e}, decisions at 0.5 changed: {flips} of {n}"
        )


def _frame_quality(n: int, device: str) -> None:
    from telescope_assets.ml import model_registry
    from telescope_assets.ml.inference import for_inference

    thumbs, scalars = _thumbnails(n)
    version = model_registry.champion(TRACKING, "frame_quality").version
    program = model_registry.load_version(TRACKING, "frame_quality", str(version))
    fast = for_inference(program, "frame_quality", device)
    program = program.to(device) if device != "cpu" else program
    t_prog = _best(lambda: _run(program, thumbs, 256, device, scalars))
    t_fast = _best(lambda: _run(fast, thumbs, 256, device, scalars))
    diff = float(
        (_run(fast, thumbs, 256, device, scalars) - _run(program, thumbs, 256, device, scalars))
        .abs()
        .max()
    )
    print(
        f"frame_quality: {n} thumbnails: program {n / t_prog:7.0f} frames/s, "
        f"for_inference {n / t_fast:7.0f} frames/s ({t_prog / t_fast:.1f}x), "
        f"max |dlogit| {diff:.1e}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    import torch

    from telescope_assets.ml.inference import inference_device

    torch.set_num_threads(args.threads)
    device = inference_device()
    where = torch.cuda.get_device_name() if device == "cuda" else f"{args.threads} CPU threads"
    print(f"device: {device} ({where}), torch {torch.__version__}")
    _real_bogus(args.n, device)
    _frame_quality(min(args.n, 2048), device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
