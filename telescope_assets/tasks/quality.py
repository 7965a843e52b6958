"""Frame quality by the learned models: the CNN's class and flags, the autoencoder's score.

Runs as one task on a dask worker, which keeps the models it loaded
(:func:`telescope_assets.ml.model_registry.load_version`): on a standing cluster a run pays
for neither importing torch and MLflow nor loading a model.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

from telescope_assets.lake import Lake
from telescope_assets.ml import model_registry

__all__ = [
    "CLASSICAL_INDICATORS",
    "QUALITY_COLUMNS",
    "apply_models",
    "classical_flags",
    "classify_frames",
    "compare_flags",
    "flag_agreement",
    "quality_table",
    "score_frames",
]

#: The CNN's flags that a classical measurement also indicates, and how (``focus`` has no
#: classical indicator apart from seeing, so it is not compared). The thresholds are
#: those of the classical quality class (``science/quality.py``).
CLASSICAL_INDICATORS = {
    "clouds": "transparency < 0.5",
    "poor_seeing": 'seeing > 2.5"',
    "tracking": "ellipticity > 0.3",
    "hot_pixels": "hot columns > 0",
    "satellite_trail": "trail candidates > 0",
}
#: A CNN flag is raised at this probability.
FLAG_PROBABILITY = 0.5


def classical_flags(row: dict) -> list[str]:
    """The flags a frame's classical measurements raise (names of ``CLASSICAL_INDICATORS``)."""

    def value(key, default):
        v = row.get(key)
        return default if v is None or (isinstance(v, float) and np.isnan(v)) else v

    raised = {
        "clouds": value("transparency", 1.0) < 0.5,
        "poor_seeing": value("seeing_arcsec", 0.0) > 2.5,
        "tracking": value("ellipticity", 0.0) > 0.3,
        "hot_pixels": value("hot_columns", 0) > 0,
        "satellite_trail": value("trail_candidates", 0) > 0,
    }
    return [name for name in CLASSICAL_INDICATORS if raised[name]]


def compare_flags(table: pd.DataFrame) -> pd.DataFrame:
    """Each frame's classical flags, the CNN's, and where they disagree.

    Adds ``classical_flags`` and ``cnn_flags`` (every flag of the CNN at
    ``FLAG_PROBABILITY``), comma-separated, and ``flag_disagreements`` over the flags both
    can raise: ``name:classical`` where only the measurement raises it, ``name:cnn`` where
    only the CNN does. Frames the CNN did not score compare nothing.
    """
    from telescope_assets.ml.labels import FLAG_NAMES

    table = table.copy()
    classical, cnn, disagree = [], [], []
    for row in table.to_dict("records"):
        ours = classical_flags(row)
        probabilities = {n: row.get(f"p_flag_{n}") for n in FLAG_NAMES}
        scored = all(pd.notna(v) for v in probabilities.values())
        theirs = [n for n, v in probabilities.items() if scored and v >= FLAG_PROBABILITY]
        differ = [f"{n}:classical" for n in ours if scored and n not in theirs]
        differ += [f"{n}:cnn" for n in theirs if n in CLASSICAL_INDICATORS and n not in ours]
        classical.append(",".join(ours))
        cnn.append(",".join(theirs))
        disagree.append(",".join(differ))
    table["classical_flags"] = classical
    table["cnn_flags"] = cnn
    table["flag_disagreements"] = disagree
    return table


def flag_agreement(table: pd.DataFrame) -> tuple[dict, list[dict]]:
    """How the CNN's flags and the measurements agree over a night's frames.

    Returns
    -------
    agreement : dict
        Per compared flag: frames it is raised on by the measurement, by the CNN, by both.
    disagreeing : list of dict
        ``{frame_id, disagreements}`` of every frame where they disagree.
    """
    if not len(table) or "flag_disagreements" not in table:
        return {}, []
    agreement = {}
    for name in CLASSICAL_INDICATORS:
        measured = table.classical_flags.str.split(",").apply(lambda f, n=name: n in f)
        cnn = table.cnn_flags.str.split(",").apply(lambda f, n=name: n in f)
        agreement[name] = {
            "measured": int(measured.sum()),
            "cnn": int(cnn.sum()),
            "both": int((measured & cnn).sum()),
        }
    rows = table[table.flag_disagreements != ""]
    disagreeing = [
        {"frame_id": r.frame_id, "disagreements": r.flag_disagreements} for r in rows.itertuples()
    ]
    return agreement, disagreeing


def classify_frames(table: pd.DataFrame) -> pd.DataFrame:
    """The catalogued frames with their classical ``quality_class`` (science/quality.py)."""
    from telescope_assets.science.quality import classify_measured

    if len(table):
        table["quality_class"] = [classify_measured(r) for r in table.to_dict("records")]
    return table


def score_frames(table: pd.DataFrame, lake: Lake, tracking_uri: str) -> dict[str, Any]:
    """Classify and score every catalogued frame with the champions of the registry.

    Returns ``{"table", "cnn_version", "ae_version"}``; ``cnn_version`` is
    ``None`` when ``frame_quality`` has no champion (nothing is scored then), and
    ``ae_version`` ``"none"`` when ``anomaly`` has none (frames get no anomaly score).
    """
    cnn_info = model_registry.champion_info(tracking_uri, "frame_quality")
    if cnn_info is None:
        return {"table": table, "cnn_version": None, "ae_version": "none"}
    ae_info = model_registry.champion_info(tracking_uri, "anomaly")
    cnn = model_registry.load_version(tracking_uri, "frame_quality", cnn_info["version"])
    if ae_info is None:
        ae, ae_version, threshold = None, "none", float("inf")
    else:
        ae_version = ae_info["version"]
        ae = model_registry.load_version(tracking_uri, "anomaly", ae_version)
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


#: The ``frame_quality`` table's main columns (those the UI shows), in order.
QUALITY_COLUMNS = [
    "frame_id",
    "filter",
    "quality_class",
    "cnn_class",
    "p_good",
    "p_medium",
    "p_bad",
    "anomaly_score",
    "anomalous",
    "seeing_arcsec",
    "transparency",
    "ellipticity",
    "background_e",
    "limiting_mag",
    "n_sources",
    "trail_candidates",
    "hot_columns",
    "quality_flags",
    "classical_flags",
    "cnn_flags",
    "flag_disagreements",
]
#: Its other columns; then the CNN's probability of each flag (``p_flag_*``).
MORE_QUALITY_COLUMNS = [
    "date_obs",
    "mjd",
    "object",
    "airmass",
    "sky_mag",
    "zero_point",
    "astrometric_rms_arcsec",
    "cnn_model",
    "anomaly_model",
]


def quality_table(scored: dict[str, Any]) -> pd.DataFrame:
    """The ``frame_quality`` table from :func:`score_frames`' result.

    Names the models that scored each frame and compares the CNN's flags with the
    classical measurements; keeps the columns of :data:`QUALITY_COLUMNS` and
    :data:`MORE_QUALITY_COLUMNS`, then the flag probabilities.
    """
    table = scored["table"]
    if not len(table):  # the declared columns it has (Lake.write_manifest adds the rest)
        return table[[c for c in [*QUALITY_COLUMNS, *MORE_QUALITY_COLUMNS] if c in table]]
    table["cnn_model"] = f"frame_quality/{scored['cnn_version']}"
    table["anomaly_model"] = f"anomaly/{scored['ae_version']}"
    table = compare_flags(table)
    flag_columns = [c for c in table.columns if c.startswith("p_flag_")]
    wanted = [*QUALITY_COLUMNS, *MORE_QUALITY_COLUMNS, *flag_columns]
    return table[[c for c in wanted if c in table]]
