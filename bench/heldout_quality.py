"""Frame quality on camera families held out from training: does the CNN learn the sky?

Two `frame_quality` networks, trained the production way (`ml.train.fit`, the kind's
epochs) on examples of the same size:

* **standard**: the production training set (the simulator's standard optics, 0.9–1.3″/px);
* **families**: drawn from the training families below (`simulate.optics.FAMILIES`).

Each is evaluated on fresh examples of the training families (in-family) and of the
held-out families (never seen by either): class accuracy and the recall of each defect
flag, with the production target beside them (accuracy ≥ 97 %; trail and hot-column
recall ≥ 95 %, issue 18).

    python bench/heldout_quality.py [N_TRAIN] [N_EVAL]      (defaults 6000, 1500)
"""

import sys
import time

import numpy as np

from telescope_assets.ml.evaluate import evaluate
from telescope_assets.ml.labels import FLAG_NAMES
from telescope_assets.ml.train import fit
from telescope_assets.simulate.training import quality_examples

TRAIN = ("standard", "gaussian", "broad_moffat", "astigmatic")
HELD_OUT = ("very_broad_moffat", "coma", "oversampled", "undersampled")
KEYS = ("x", "scalars", "y", "flags")


def _examples(n, seed, families):
    data = quality_examples(n, seed=seed, families=families)
    return {k: data[k] for k in KEYS}


def main(argv: list[str]) -> int:
    n_train = int(argv[0]) if argv else 6000
    n_eval = int(argv[1]) if len(argv) > 1 else 1500
    t0 = time.perf_counter()
    sets = {
        "in-family": _examples(n_eval, 2, TRAIN),
        "held-out": _examples(n_eval, 3, HELD_OUT),
        **{f"  {f}": _examples(n_eval // 4, 10 + i, (f,)) for i, f in enumerate(HELD_OUT)},
    }
    print(f"evaluation sets made in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    rows = []
    for name, families in (("standard", None), ("families", TRAIN)):
        t0 = time.perf_counter()
        net, _ = fit("frame_quality", _examples(n_train, 1, families), seed=0)
        print(f"{name}: trained in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        for set_name, arrays in sets.items():
            metrics, _ = evaluate("frame_quality", net, arrays)
            rows.append((name, set_name, metrics))
    flags = ("satellite_trail", "hot_pixels", "tracking", "focus", "clouds", "poor_seeing")
    assert set(flags) == set(FLAG_NAMES)
    header = f"{'trained on':10s} {'evaluated on':22s} {'accuracy':>8s} " + " ".join(
        f"{f[:11]:>11s}" for f in flags
    )
    print(f"\nframe_quality, {n_train} training / {n_eval} evaluation examples")
    print(f"training families: {', '.join(TRAIN)}; held out: {', '.join(HELD_OUT)}")
    print("target: accuracy 0.970; satellite_trail and hot_pixels recall 0.950\n")
    print(header)
    for name, set_name, m in rows:
        recalls = " ".join(f"{m.get(f'flag_recall_{f}', np.nan):11.3f}" for f in flags)
        print(f"{name:10s} {set_name:22s} {m['accuracy']:8.3f} {recalls}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
