"""Transient typing against the simulator's truth, on a lake the pipeline has processed.

Every typed alert object (``transient_types`` manifests) is matched to what the simulator
put there: a transient on a galaxy (truth ``supernova_like``), a hostless transient
(``unknown``: nothing the pipeline can see tells it from an orphan), a variable star
(``variable_star``), an asteroid (``moving_object``); anything else is a false alert.
Prints the confusion of truth against type and the recall per true class present.

    python bench/transient_typing.py [LAKE TRUTH]     (defaults: data/lake data/truth: the demo's)

The demo's sky holds no flares or nuclear transients, and only 2–3 transients a field:
the model's recall is measured on held-out simulated populations (docs/transients.md);
this checks that the pipeline's own context and light curves give the same answers.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from transient_accuracy import _asteroids_by_frame, _near

from telescope_assets.lake import Lake
from telescope_assets.science.typing import TYPE_CLASSES


def truth_class(row, transients, variables, asteroids, alerts) -> str:
    """What the simulator put at a typed object's place."""
    hit = _near(row.ra, row.dec, transients.ra, transients.dec)
    if hit.any():
        host = str(transients[hit].host.iloc[0])
        return "supernova_like" if host else "unknown"
    if _near(row.ra, row.dec, variables.ra, variables.dec).any():
        return "variable_star"
    alert = alerts.get(row.alert_id)
    if alert is not None and alert["frame_id"] in asteroids:
        rows = asteroids[alert["frame_id"]]
        if (np.hypot(rows.x - alert["x"], rows.y - alert["y"]) < 2.5).any():
            return "moving_object"
    return "false"


def main(argv: list[str]) -> int:
    lake_root, truth_root = (argv + ["data/lake", "data/truth"][len(argv) :])[:2]
    lake, truth = Lake(lake_root), Path(truth_root)
    rels = lake.list(lake.manifests_folder("transient_types"), ".parquet", recursive=True)
    if not rels:
        print("no transient_types manifests: run the demo (or followup_job) first")
        return 1
    types = pd.concat([lake.read_parquet(r) for r in rels], ignore_index=True)
    alert_rels = lake.list(lake.manifests_folder("alerts"), ".parquet", recursive=True)
    all_alerts = pd.concat([lake.read_parquet(r) for r in alert_rels], ignore_index=True)
    alerts = {r["alert_id"]: r for r in all_alerts.to_dict("records")}
    transients = pd.read_parquet(truth / "transients.parquet")
    stars = pd.read_parquet(truth / "stars.parquet")
    variables = stars[stars.var_type != "constant"]
    asteroids = _asteroids_by_frame(truth)
    types["truth"] = [
        truth_class(r, transients, variables, asteroids, alerts) for r in types.itertuples()
    ]
    table = pd.crosstab(types.truth, types.type_class).reindex(
        columns=list(TYPE_CLASSES), fill_value=0
    )
    print(f"{len(types)} typed objects in {len(rels)} partitions; rows: truth, columns: type")
    print(table.to_string())
    for cls in [c for c in table.index if c in TYPE_CLASSES]:
        n = int(table.loc[cls].sum())
        print(f"recall {cls:15s} {table.loc[cls, cls] / n:.3f} of {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
