"""Scoring trained networks on the fixed evaluation split, and the plots of it."""

import io

import numpy as np

__all__ = ["evaluate", "predict"]


def predict(
    kind: str, net, arrays: dict[str, np.ndarray], batch: int = 512
) -> dict[str, np.ndarray]:
    """Run a network (an ``nn.Module`` or a loaded exported program) on arrays.

    Returns class probabilities (and flag probabilities) for the classifiers, and the
    per-example reconstruction error for the autoencoder.
    """
    import torch

    out: dict[str, list] = {}
    n = len(arrays["x"])
    with torch.no_grad():
        for i in range(0, n, batch):
            x = torch.as_tensor(arrays["x"][i : i + batch])
            if kind == "frame_quality":
                logits = net(x, torch.as_tensor(arrays["scalars"][i : i + batch]))
                out.setdefault("probs", []).append(torch.softmax(logits[:, :3], 1).numpy())
                out.setdefault("flag_probs", []).append(torch.sigmoid(logits[:, 3:]).numpy())
            elif kind in ("real_bogus", "transient_type"):
                out.setdefault("probs", []).append(torch.softmax(net(x), 1).numpy())
            else:
                err = ((net(x) - x) ** 2).mean(dim=(1, 2, 3))
                out.setdefault("score", []).append(err.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def evaluate(
    kind: str, net, arrays: dict[str, np.ndarray]
) -> tuple[dict[str, float], dict[str, bytes]]:
    """Metrics and PNG plots of a network on the evaluation arrays."""
    pred = predict(kind, net, arrays)
    if kind == "frame_quality":
        return _quality(pred, arrays)
    if kind == "real_bogus":
        return _real_bogus(pred, arrays)
    if kind == "transient_type":
        return _typing(pred, arrays)
    return _anomaly(pred, arrays)


def _confusion(y, yhat, k):
    m = np.zeros((k, k), int)
    np.add.at(m, (y, yhat), 1)
    return m


def _quality(pred, arrays):
    from telescope_assets.ml.labels import FLAG_NAMES, QUALITY_CLASSES

    y, yhat = arrays["y"], pred["probs"].argmax(1)
    metrics = {"accuracy": float(np.mean(y == yhat)), "n_eval": len(y)}
    flags_hat = pred["flag_probs"] > 0.5
    for j, name in enumerate(FLAG_NAMES):
        t, p = arrays["flags"][:, j] > 0.5, flags_hat[:, j]
        tp = np.sum(t & p)
        metrics[f"flag_f1_{name}"] = float(2 * tp / max(1, np.sum(t) + np.sum(p)))
        if np.sum(t):  # recall where the split holds examples of the flag
            metrics[f"flag_recall_{name}"] = float(tp / np.sum(t))
    plots = {"confusion_matrix.png": _plot_confusion(_confusion(y, yhat, 3), QUALITY_CLASSES)}
    return metrics, plots


def _real_bogus(pred, arrays):
    from telescope_assets.ml.labels import RB_CLASSES

    y = arrays["y"]
    real = y == 0
    p_real = pred["probs"][:, 0]
    # The threshold that keeps the false-negative rate at 1 %: the real scores' 1st percentile.
    threshold = float(np.quantile(p_real[real], 0.01))
    fpr = float(np.mean(p_real[~real] >= threshold))
    thresholds = np.linspace(0, 1, 201)
    fprs = np.array([np.mean(p_real[~real] >= t) for t in thresholds])
    fnrs = np.array([np.mean(p_real[real] < t) for t in thresholds])
    auc = float(np.trapezoid(1 - fnrs[::-1], fprs[::-1]))
    metrics = {
        "fpr_at_fnr_1pct": fpr,
        "threshold_at_fnr_1pct": threshold,
        "fnr_at_0p5": float(np.mean(p_real[real] < 0.5)),
        "fpr_at_0p5": float(np.mean(p_real[~real] >= 0.5)),
        "roc_auc": auc,
        "accuracy_5class": float(np.mean(pred["probs"].argmax(1) == y)),
        "n_eval": len(y),
    }
    plots = {
        "confusion_matrix.png": _plot_confusion(
            _confusion(y, pred["probs"].argmax(1), 5), RB_CLASSES
        ),
        "roc.png": _plot_xy(
            fprs, 1 - fnrs, "false-positive rate", "true-positive rate", "ROC", log_x=True
        ),
        "fpr_fnr_vs_threshold.png": _plot_rates(thresholds, fprs, fnrs, threshold),
    }
    return metrics, plots


def _typing(pred, arrays):
    """Macro-averaged recall (the gate), per-class recall, and the two confusions that matter.

    ``sn_as_moving_p90``/``moving_as_sn_p90``: supernovae called moving objects, and moving
    objects called supernovae, at probability ≥ 0.9 (an asteroid must never be followed up
    as a supernova, nor a supernova dropped as an asteroid).
    """
    from telescope_assets.ml.labels import TYPE_CLASSES

    y, probs = arrays["y"], pred["probs"]
    yhat = probs.argmax(1)
    k = len(TYPE_CLASSES)
    m = _confusion(y, yhat, k)
    recall = np.diag(m) / np.maximum(m.sum(1), 1)
    sn, moving = TYPE_CLASSES.index("supernova_like"), TYPE_CLASSES.index("moving_object")
    metrics = {
        "macro_recall": float(recall.mean()),
        "accuracy": float(np.mean(yhat == y)),
        **{f"recall_{name}": float(r) for name, r in zip(TYPE_CLASSES, recall, strict=True)},
        "sn_as_moving_p90": int(np.sum((y == sn) & (probs[:, moving] >= 0.9))),
        "moving_as_sn_p90": int(np.sum((y == moving) & (probs[:, sn] >= 0.9))),
        "n_eval": len(y),
    }
    return metrics, {"confusion_matrix.png": _plot_confusion(m, TYPE_CLASSES)}


def _anomaly(pred, arrays):
    score, anomalous = pred["score"], arrays["anomalous"] > 0
    threshold = float(np.quantile(score[~anomalous], 0.99))
    tpr = float(np.mean(score[anomalous] > threshold))
    metrics = {
        "tpr_at_fpr_1pct": tpr,
        "threshold_at_fpr_1pct": threshold,
        "n_normal": int((~anomalous).sum()),
        "n_anomalous": int(anomalous.sum()),
    }
    thresholds = np.quantile(score, np.linspace(0, 1, 101))
    fprs = np.array([np.mean(score[~anomalous] > t) for t in thresholds])
    tprs = np.array([np.mean(score[anomalous] > t) for t in thresholds])
    plots = {
        "roc.png": _plot_xy(
            fprs,
            tprs,
            "false-alarm rate (normal frames)",
            "anomalous frames flagged",
            "ROC",
            log_x=True,
        )
    }
    return metrics, plots


def _fig():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    _fig().close(fig)
    return buf.getvalue()


def _plot_confusion(m, labels) -> bytes:
    plt = _fig()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    return _png(fig)


def _plot_xy(x, y, xlabel, ylabel, title, log_x=False) -> bytes:
    plt = _fig()
    fig, ax = plt.subplots(figsize=(4, 3.5))
    ax.plot(np.clip(x, 1e-4, 1) if log_x else x, y)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.tight_layout()
    return _png(fig)


def _plot_rates(thresholds, fprs, fnrs, chosen) -> bytes:
    plt = _fig()
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot(thresholds, fprs, label="false-positive rate")
    ax.plot(thresholds, fnrs, label="false-negative rate")
    ax.axvline(chosen, color="k", ls=":", label="threshold at FNR 1 %")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("real score threshold")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)
