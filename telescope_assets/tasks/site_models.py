"""A site's own real/bogus champion: fine-tuned on its examples, gated on its held-out frames.

Every site is judged by the same gate on its own held-out frames
(:mod:`telescope_assets.tasks.site_learning`), in the terms of the alert stream's targets:
at the alert threshold, at most :data:`GATE_FNR` of its recovered fakes of S/N ≥ 10
missed, and at most :data:`GATE_FALSE_PER_FRAME` of its bogus candidates passed per
held-out frame (one false alert per 10 frames). Two contenders are judged: the network
champion as it is, and the network champion fine-tuned on the site's training examples
(mixed 1:1 with the network's simulated set, so that what the simulator taught is not
forgotten). The better one that passes becomes version *n* of the registered model
``real_bogus_<site>`` with alias ``champion``; a site with that alias is *qualified* and
its candidates are scored by it. A site without one — too few examples yet, or no
contender passing — keeps the network champion and its alerts are *provisional*
(held to a higher threshold, marked in the packets and the UI).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from telescope_assets.tasks.alerts import AlertThresholds

__all__ = [
    "ALERT_THRESHOLD",
    "GATE_FALSE_PER_FRAME",
    "GATE_FNR",
    "GATE_NETWORK_FPR",
    "MIN_EVAL_FRAMES",
    "MIN_EVAL_REAL",
    "enough_examples",
    "learn_site",
    "loss",
    "p_real",
    "passes_gate",
    "scoring_model",
    "site_figures",
    "site_model_name",
]

#: p(real) at which a qualified site's candidate becomes an alert (the alerts' default).
ALERT_THRESHOLD = AlertThresholds.min_real_score
#: The gate on a site's held-out frames at :data:`ALERT_THRESHOLD`: missed fakes of
#: S/N >= 10, and bogus candidates passed per frame.
GATE_FNR = 0.05
GATE_FALSE_PER_FRAME = 0.1
#: ... and on the network's own evaluation set (simulated bogus of every kind).
GATE_NETWORK_FPR = 0.01
#: Held-out fakes and frames a site needs before it is judged (fewer: it stays
#: provisional). Bogus candidates need no minimum: a site that makes few is a good one.
MIN_EVAL_REAL = 60
MIN_EVAL_FRAMES = 2
#: Fine-tuning: epochs and peak learning rate (a tenth of training from scratch).
FINE_TUNE_EPOCHS = 6
FINE_TUNE_LR = 5e-4


def scoring_model(tracking_uri: str, site: str) -> dict[str, Any] | None:
    """Which model scores a site's candidates: its own champion, else the network's.

    Returns ``{"name", "version", "provisional"}`` (provisional: the network champion on a
    site not yet qualified), or ``None`` when there is no champion at all.
    """
    from telescope_assets.ml import model_registry

    own = model_registry.champion(tracking_uri, site_model_name(site))
    if own is not None:
        return {"name": site_model_name(site), "version": str(own.version), "provisional": False}
    network = model_registry.champion(tracking_uri, "real_bogus")
    if network is None:
        return None
    return {"name": "real_bogus", "version": str(network.version), "provisional": True}


def site_model_name(site: str) -> str:
    """The registered model of a site's own real/bogus champion."""
    return f"real_bogus_{site}"


def p_real(net, evaluation: dict[str, np.ndarray]) -> np.ndarray:
    """p(real) of every example."""
    from telescope_assets.ml.evaluate import predict

    if not len(evaluation["x"]):
        return np.zeros(0)
    return predict("real_bogus", net, evaluation)["probs"][:, 0]


def site_figures(
    scores: np.ndarray, evaluation: dict[str, np.ndarray], threshold: float = ALERT_THRESHOLD
) -> dict:
    """FNR and FPR of p(real) ``scores`` on a site's held-out examples at ``threshold``."""
    real = evaluation["y"] == 0
    bright = real & (evaluation["snr"] >= 10)
    n_frames = len(set(evaluation["frame_id"].tolist()))
    passed = int(np.sum(scores[~real] >= threshold))
    nan = float("nan")
    return {
        "n_real": int(real.sum()),
        "n_bogus": int((~real).sum()),
        "n_frames": n_frames,
        "fnr": float(np.mean(scores[real] < threshold)) if real.any() else nan,
        "fnr_snr10": float(np.mean(scores[bright] < threshold)) if bright.any() else nan,
        "fpr": float(np.mean(scores[~real] >= threshold)) if (~real).any() else nan,
        "n_bogus_passed": passed,
        "false_per_frame": passed / n_frames if n_frames else nan,
    }


def enough_examples(figures: dict) -> bool:
    """Whether a site's held-out set is large enough to be judged."""
    return figures["n_real"] >= MIN_EVAL_REAL and figures["n_frames"] >= MIN_EVAL_FRAMES


def passes_gate(figures: dict) -> bool:
    """The gate every site's champion passes on that site's held-out frames.

    And, where the network's evaluation set is at hand (``network_fpr``), at most
    :data:`GATE_NETWORK_FPR` of its simulated bogus examples passed: a site with few
    candidates cannot show a model that calls everything real, this can.
    """
    forgets = figures.get("network_fpr", 0.0) > GATE_NETWORK_FPR
    return bool(
        figures["fnr_snr10"] <= GATE_FNR
        and figures["false_per_frame"] <= GATE_FALSE_PER_FRAME
        and not forgets
    )


def loss(figures: dict) -> float:
    """Both gate quantities in units of their limits (lower is better; ≤ 2 when passing)."""
    return figures["fnr_snr10"] / GATE_FNR + figures["false_per_frame"] / GATE_FALSE_PER_FRAME


#: Fine-tuning set: this many examples, real ones in the network training set's share.
FINE_TUNE_SIZE = 3000
REAL_SHARE = 0.2
#: A site's bogus examples fill at most this share of the bogus part (the rest: the
#: network's simulated bogus, so that a site with few candidates is not taught that
#: everything is real).
SITE_BOGUS_SHARE = 0.5


def _mix(train: dict, network: dict | None, rng) -> dict[str, np.ndarray]:
    """The fine-tuning set: the site's real examples, its bogus ones and the network's.

    Real examples (``REAL_SHARE`` of the set: the prior the network was trained with) are
    half the site's fakes, half the network's simulated real sources; the bogus part is
    the site's candidates repeated up to ``SITE_BOGUS_SHARE`` of it, and the network's
    simulated bogus examples for the rest.
    Without the network's set, the site's examples as they are.
    """
    real = np.flatnonzero(train["y"] == 0)
    bogus = np.flatnonzero(train["y"] != 0)
    if network is None or not len(network["y"]) or not len(real):
        return {k: train[k] for k in ("x", "y")}
    n_real = round(REAL_SHARE * FINE_TUNE_SIZE)
    n_bogus = FINE_TUNE_SIZE - n_real
    # Each site candidate at most ten times, together at most SITE_BOGUS_SHARE of the bogus.
    site_bogus = np.resize(bogus, min(round(SITE_BOGUS_SHARE * n_bogus), 10 * len(bogus)))
    net_bogus = np.flatnonzero(network["y"] != 0)
    pick = rng.choice(net_bogus, min(n_bogus - len(site_bogus), len(net_bogus)), replace=False)
    # Half the real examples stay the network's (on stars, on galaxies, of every kind):
    # what it knew about real sources is kept, the site's PSF is added to it.
    net_reals = np.flatnonzero(network["y"] == 0)
    net_real = rng.choice(net_reals, n_real // 2, replace=len(net_reals) < n_real // 2)
    site_real = rng.choice(real, n_real - n_real // 2)
    site_pick = np.concatenate([site_real, site_bogus]).astype(int)
    pick = np.concatenate([pick, net_real])
    return {k: np.concatenate([train[k][site_pick], network[k][pick]]) for k in ("x", "y")}


def fine_tune(net, train: dict, network: dict | None, seed: int = 0):
    """The network champion fine-tuned on a site's examples (a new ``nn.Module``)."""
    from telescope_assets.ml.train import fit

    arrays = _mix(train, network, np.random.default_rng(seed))
    tuned, _ = fit(
        "real_bogus",
        arrays,
        init=net.state_dict(),
        lr=FINE_TUNE_LR,
        max_epochs=FINE_TUNE_EPOCHS,
        seed=seed,
    )
    return tuned


def learn_site(
    site: str,
    train: dict[str, np.ndarray],
    evaluation: dict[str, np.ndarray],
    network_train: dict[str, np.ndarray] | None,
    mlflow_resource,
    tags: dict[str, str],
    seed: int = 0,
    network_eval: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Judge the network champion and its fine-tuned copy on a site; register the better.

    Returns a report: the figures of each contender on the site's held-out examples,
    the decision and why, and the site's champion version after it (``None``: the site
    stays provisional).
    """
    from telescope_assets.ml.networks import RealBogusNet

    name = site_model_name(site)
    current = mlflow_resource.champion("real_bogus")
    if current is None:
        raise mlflow_resource.no_champion("real_bogus")
    network = RealBogusNet()
    network.load_state_dict(
        mlflow_resource.load_version("real_bogus", current.version).state_dict()
    )
    network.eval()
    report: dict[str, Any] = {
        "site": site,
        "model": name,
        "network_version": str(current.version),
        "n_train": len(train["y"]),
        "n_train_real": int(np.sum(train["y"] == 0)),
        "n_eval": len(evaluation["y"]),
        "scores": {"y": evaluation["y"], "network": p_real(network, evaluation)},
        "registered_version": None,
        "promoted": False,
    }
    report["network"] = site_figures(report["scores"]["network"], evaluation)
    report["network"] |= _forgetting(network, network_eval)
    if not enough_examples(report["network"]):
        fig = report["network"]
        return report | {
            "reason": f"too few held-out examples ({fig['n_real']} fakes recovered on "
            f"{fig['n_frames']} frames; {MIN_EVAL_REAL} and {MIN_EVAL_FRAMES} needed): the "
            "site stays provisional until more nights are processed",
            "site_champion": _champion_version(mlflow_resource, name),
        }
    start = time.perf_counter()
    tuned = fine_tune(network, train, network_train, seed=seed)
    report["fine_tune_seconds"] = time.perf_counter() - start
    report["scores"]["fine_tuned"] = p_real(tuned, evaluation)
    report["fine_tuned"] = site_figures(report["scores"]["fine_tuned"], evaluation)
    report["fine_tuned"] |= _forgetting(tuned, network_eval)
    contenders = [
        ("fine_tuned", tuned, report["fine_tuned"]),
        ("network", network, report["network"]),
    ]
    passing = [c for c in contenders if passes_gate(c[2])]
    label, chosen, figures = min(passing, key=lambda c: loss(c[2])) if passing else contenders[0]
    version = _register(chosen, name, label, figures, report, evaluation, mlflow_resource, tags)
    report["registered_version"] = version
    report["registered_from"] = label
    decision = _promote(name, version, label, figures, evaluation, mlflow_resource)
    return report | decision | {"site_champion": _champion_version(mlflow_resource, name)}


def _forgetting(net, network_eval: dict | None) -> dict[str, float]:
    """``network_fpr``: the share of the network's simulated bogus a model passes."""
    if network_eval is None:
        return {}
    bogus = {"x": network_eval["x"][network_eval["y"] != 0]}
    return {"network_fpr": float(np.mean(p_real(net, bogus) >= ALERT_THRESHOLD))}


def _summary(figures: dict) -> str:
    extra = (
        f", {figures['network_fpr']:.3f} of the network's bogus passed"
        if "network_fpr" in figures
        else ""
    )
    return (
        f"FNR at S/N >= 10 {figures['fnr_snr10']:.3f}, "
        f"{figures['false_per_frame']:.2f} false per frame{extra}"
    )


def _champion_version(mlflow_resource, name: str) -> str | None:
    current = mlflow_resource.champion(name)
    return str(current.version) if current is not None else None


def _register(net, name, label, figures, report, evaluation, mlflow_resource, tags) -> str:
    """Log the chosen contender as a run of the site's experiment; register it."""
    import mlflow

    from telescope_assets.tasks.models import _log_model

    experiment = mlflow_resource.experiment_id(name)
    mlflow.set_tracking_uri(mlflow_resource.tracking_uri)
    mlflow.set_registry_uri(mlflow_resource.tracking_uri)
    with mlflow.start_run(
        experiment_id=experiment, run_name=f"{name}-{time.strftime('%Y%m%dT%H%M%S')}", tags=tags
    ):
        mlflow.log_params(
            {
                "site": report["site"],
                "from": label,
                "network_version": report["network_version"],
                "n_train": report["n_train"],
                "n_eval": report["n_eval"],
                "fine_tune_epochs": FINE_TUNE_EPOCHS,
                "fine_tune_lr": FINE_TUNE_LR,
            }
        )
        for who in ("network", "fine_tuned"):
            if who in report:
                mlflow.log_metrics({f"{who}_{k}": float(v) for k, v in report[who].items()})
        info = _log_model(net, "real_bogus", evaluation["x"][:2], name=name)
    version = str(info.registered_model_version)
    client = mlflow_resource.client()
    for key, value in {
        **tags,
        "from": label,
        "network_version": report["network_version"],
        "site_fnr": f"{figures['fnr']:.4f}",
        "site_fnr_snr10": f"{figures['fnr_snr10']:.4f}",
        "site_false_per_frame": f"{figures['false_per_frame']:.4f}",
    }.items():
        client.set_model_version_tag(name, version, key, str(value))
    return version


def _promote(name, version, label, figures, evaluation, mlflow_resource) -> dict[str, Any]:
    """Promote the new version if it passes the gate and ties or beats the site's champion.

    Both are judged on the same held-out examples (FNR + FPR).
    """
    client = mlflow_resource.client()
    summary = _summary(figures)
    if not passes_gate(figures):
        reason = (
            f"{label} misses the site gate ({summary}; FNR at S/N >= 10 <= {GATE_FNR}, "
            f"false per frame <= {GATE_FALSE_PER_FRAME}, network bogus passed <= "
            f"{GATE_NETWORK_FPR}): the site stays provisional"
        )
        client.set_model_version_tag(name, version, "gate", reason)
        return {"promoted": False, "reason": reason}
    current = mlflow_resource.champion(name)
    if current is not None:
        old_net = mlflow_resource.load_version(name, current.version)
        old = site_figures(p_real(old_net, evaluation), evaluation)
        if loss(old) < loss(figures):
            reason = (
                f"{label} passes the gate ({summary}) but v{current.version} does "
                f"better on the same examples ({_summary(old)})"
            )
            client.set_model_version_tag(name, version, "gate", reason)
            return {"promoted": False, "reason": reason}
    reason = f"{label} passes the site gate ({summary})"
    client.set_model_version_tag(name, version, "gate", reason)
    client.set_registered_model_alias(name, "champion", version)
    return {"promoted": True, "reason": reason}
