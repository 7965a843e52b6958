"""Frame quality by the learned models: the CNN's class and flags, the autoencoder's score.

Runs as one task on a dask worker, which keeps the models it loaded
(:func:`telescope_assets.ml.registry.load_version`): on a standing cluster a run pays
for neither importing torch and MLflow nor loading a model.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

from telescope_assets.lake import Lake
from telescope_assets.ml import registry

__all__ = ["apply_models", "score_frames"]


def score_frames(table: pd.DataFrame, lake: Lake, tracking_uri: str) -> dict[str, Any]:
    """Classify and score every catalogued frame with the champions of the registry.

    Returns ``{"table", "cnn_version", "ae_version"}``; ``cnn_version`` is
    ``None`` when ``frame_quality`` has no champion (nothing is scored then), and
    ``ae_version`` ``"none"`` when ``anomaly`` has none (frames get no anomaly score).
    """
    cnn_info = registry.champion_info(tracking_uri, "frame_quality")
    if cnn_info is None:
        return {"table": table, "cnn_version": None, "ae_version": "none"}
    ae_info = registry.champion_info(tracking_uri, "anomaly")
    cnn = registry.load_version(tracking_uri, "frame_quality", cnn_info["version"])
    if ae_info is None:
        ae, ae_version, threshold = None, "none", float("inf")
    else:
        ae_version = ae_info["version"]
        ae = registry.load_version(tracking_uri, "anomaly", ae_version)
        threshold = ae_info["metrics"].get("eval_threshold_at_fpr_1pct", float("inf"))
    if len(table):
        table = apply_models(lake, table, cnn, ae, threshold)
    return {"table": table, "cnn_version": cnn_info["version"], "ae_version": ae_version}


def apply_models(lake: Lake, table: pd.DataFrame, cnn, ae, threshold: float) -> pd.DataFrame:
    """CNN class, probabilities and flags, and the autoencoder's score, for every frame."""
    import torch

    from telescope_assets.ml.labels import FLAG_NAMES

    has = (
        table.thumbnail_path.notna() if "thumbnail_path" in table else pd.Series(False, table.index)
    )
    table = table.copy()
    for name in ("cnn_class", "p_good", "p_medium", "p_bad", "anomaly_score", "anomalous"):
        table[name] = None
    if not has.any():
        return table
    rows = table[has]
    thumbs = np.stack(
        [np.load(io.BytesIO(lake.read_bytes(p)), allow_pickle=False) for p in rows.thumbnail_path]
    )
    # Frames without a measurement (no stars) are described as the worst case.
    scalars = np.column_stack(
        [
            rows.seeing_arcsec.fillna(10.0),
            rows.transparency.fillna(0.0),
            rows.ellipticity.fillna(0.5),
        ]
    ).astype(np.float32)
    with torch.no_grad():
        x = torch.as_tensor(thumbs)
        logits = cnn(x, torch.as_tensor(scalars))
        probs = torch.softmax(logits[:, :3], 1).numpy()
        flags = torch.sigmoid(logits[:, 3:]).numpy()
        score = None
        if ae is not None:
            a = torch.as_tensor(
                np.stack(
                    [
                        np.load(io.BytesIO(lake.read_bytes(p)), allow_pickle=False)
                        for p in rows.anomaly_input_path
                    ]
                )
            )
            score = ((ae(a) - a) ** 2).mean(dim=(1, 2, 3)).numpy()
    classes = np.array(["good", "medium", "bad"])
    table.loc[has, "cnn_class"] = classes[probs.argmax(1)]
    for i, name in enumerate(("p_good", "p_medium", "p_bad")):
        table.loc[has, name] = probs[:, i]
    for j, name in enumerate(FLAG_NAMES):
        table.loc[has, f"p_flag_{name}"] = flags[:, j]
    if score is not None:
        table.loc[has, "anomaly_score"] = score
        table.loc[has, "anomalous"] = score > threshold
    return table
