"""Train, evaluate, log, register and (maybe) promote one model: the MLflow side of ``fit()``."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from telescope_assets.ml import model_registry
from telescope_assets.ml.evaluate import evaluate
from telescope_assets.ml.train import MODELS, fit

__all__ = ["example_inputs", "load_arrays", "model_arrays", "save_arrays", "train_and_register"]


def save_arrays(lake, rel: str, arrays: dict[str, np.ndarray]) -> str:
    """Write named arrays as one compressed ``.npz`` in the lake; return its digest."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    data = buf.getvalue()
    lake.write_bytes(rel, data)
    return hashlib.sha256(data).hexdigest()[:16]


def load_arrays(lake, rel: str) -> dict[str, np.ndarray]:
    """Named arrays from an ``.npz`` in the lake (no pickled objects)."""
    with np.load(io.BytesIO(lake.read_bytes(rel)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def model_arrays(kind: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of a training set that ``kind`` sees, under the names it expects.

    The autoencoder shares the frame-quality training set but reads its own
    representation (``anomaly_x``: PSF stack and line sinogram) as ``x``.
    """
    if kind == "anomaly" and "anomaly_x" in arrays:
        return {"x": arrays["anomaly_x"], "anomalous": arrays["anomalous"]}
    return arrays


def example_inputs(kind: str, arrays: dict[str, np.ndarray], n: int = 2):
    """The model's input example: what ``forward`` takes, as numpy arrays."""
    arrays = model_arrays(kind, arrays)
    if kind == "frame_quality":
        return [arrays["x"][:n], arrays["scalars"][:n]]
    return arrays["x"][:n]


def _log_run(tracking_uri, run_id, params, metrics, seconds, plots, log_model):
    """Log a training run's parameters, evaluation metrics and plots, then its model."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params(params)
        mlflow.log_metrics({f"eval_{k}": float(v) for k, v in metrics.items()})
        mlflow.log_metric("train_seconds", seconds)
        with tempfile.TemporaryDirectory() as tmp:
            for name, png in plots.items():
                Path(tmp, name).write_bytes(png)
                mlflow.log_artifact(str(Path(tmp, name)), artifact_path="evaluation")
        return log_model()


def train_and_register(
    kind: str,
    train: dict[str, np.ndarray],
    evaluation: dict[str, np.ndarray],
    *,
    mlflow_resource,
    tags: dict[str, str],
    seed: int = 0,
    max_epochs: int | None = None,
) -> dict[str, Any]:
    """Train ``kind``, log everything to MLflow, register a version, gate the champion.

    The new version becomes ``champion`` only if it meets the target and beats the
    current champion on the same fixed evaluation set (the first version needs only
    the target). Returns a report: metrics of both, the decision and why.
    """
    from lightning.pytorch.loggers import MLFlowLogger

    spec = MODELS[kind]
    client = mlflow_resource.client()
    experiment_id = mlflow_resource.experiment_id(kind)
    experiment = client.get_experiment(experiment_id)
    logger = MLFlowLogger(
        experiment_name=experiment.name,
        tracking_uri=mlflow_resource.tracking_uri,
        tags=tags,
        run_name=f"{kind}-{time.strftime('%Y%m%dT%H%M%S')}",
    )
    train, evaluation = model_arrays(kind, train), model_arrays(kind, evaluation)
    inputs = dict(train)
    if kind == "anomaly":  # the autoencoder learns what normal frames look like
        inputs = {"x": train["x"][train["anomalous"] == 0]}
    start = time.perf_counter()
    net, fit_metrics = fit(kind, inputs, seed=seed, max_epochs=max_epochs, logger=logger)
    seconds = time.perf_counter() - start
    run_id = logger.run_id
    metrics, plots = evaluate(kind, net, evaluation)
    params = {
        "kind": kind,
        "seed": seed,
        "n_train": len(inputs["x"]),
        "n_eval": len(evaluation["x"]),
        "epochs": max_epochs or spec.epochs,
    }
    info = _log_run(
        mlflow_resource.tracking_uri, run_id, params, metrics, seconds, plots,
        lambda: _log_model(net, kind, example_inputs(kind, evaluation)),
    )  # fmt: skip
    version = str(info.registered_model_version)
    client.set_model_version_tag(kind, version, "training_run", run_id)
    for key, value in tags.items():
        client.set_model_version_tag(kind, version, key, value)
    decision = _gate(kind, spec, metrics, version, evaluation, mlflow_resource)
    client.set_model_version_tag(kind, version, "gate", decision["reason"])
    if decision["promote"]:
        client.set_registered_model_alias(kind, "champion", version)
    champion = mlflow_resource.champion(kind)
    return {
        "kind": kind,
        "version": version,
        "run_id": run_id,
        "metrics": metrics,
        "fit_metrics": fit_metrics,
        "train_seconds": seconds,
        "plots": plots,
        "promoted": decision["promote"],
        "reason": decision["reason"],
        "previous_champion": decision.get("previous_version"),
        "previous_metric": decision.get("previous_metric"),
        "champion_version": str(champion.version) if champion else None,
        "metric": spec.metric,
        "target": spec.target,
    }


#: What MLflow prints to stderr (not logs) on every registration: routine, and shown in
#: the run's metadata and the MLflow UI already.
REGISTRATION_CHATTER = re.compile(
    r"(Successfully registered model |Registered model .* already exists|Created version )"
)


@contextlib.contextmanager
def _without_registration_chatter():
    """Drop :data:`REGISTRATION_CHATTER` lines from stderr; pass every other line on."""
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            yield
    finally:
        for line in said.getvalue().splitlines():
            if line.strip() and not REGISTRATION_CHATTER.match(line):
                print(line, file=sys.stderr)


def _log_model(net, kind: str, example, name: str | None = None):
    """Log in ``pt2`` (torch.export: no pickled objects) with a signature, register, sign."""
    import warnings

    import mlflow.pytorch
    import torch
    from mlflow.models import infer_signature

    with torch.no_grad():
        if isinstance(example, list):
            output = net(*(torch.as_tensor(e) for e in example)).numpy()
            signature = infer_signature({"image": example[0], "scalars": example[1]}, output)
        else:
            output = net(torch.as_tensor(example)).numpy()
            signature = infer_signature(example, output)
    with warnings.catch_warnings(), _without_registration_chatter():
        # MLflow notes it cannot validate the pt2 wrapper's Any-typed predict hints.
        warnings.filterwarnings("ignore", message=".*inferred as AnyType.*")
        info = mlflow.pytorch.log_model(
            net,
            name="model",
            input_example=example,
            signature=signature,
            serialization_format="pt2",
            registered_model_name=name or kind,
            pip_requirements=["torch==2.13.0"],
        )
    # Consumers load only files that match this digest (ml/model_registry.py:verify_artifact).
    model_registry.sign_version(
        mlflow.get_tracking_uri(), name or kind, str(info.registered_model_version)
    )
    return info


def _gate(kind, spec, metrics, version, evaluation, mlflow_resource) -> dict[str, Any]:
    new = metrics[spec.metric]
    if not spec.meets_target(new):
        return {
            "promote": False,
            "reason": f"{spec.metric}={new:.4f} misses the target {spec.target}",
        }
    current = mlflow_resource.champion(kind)
    if current is None:
        return {
            "promote": True,
            "reason": f"first version meeting the target ({spec.metric}={new:.4f})",
        }
    old_net = mlflow_resource.load_version(kind, current.version)
    old = evaluate(kind, old_net, evaluation)[0][spec.metric]
    info = {"previous_version": current.version, "previous_metric": old}
    if spec.better(new, old):
        return info | {
            "promote": True,
            "reason": f"{spec.metric} {new:.4f} beats champion v{current.version} ({old:.4f})",
        }
    return info | {
        "promote": False,
        "reason": f"{spec.metric} {new:.4f} does not beat champion v{current.version} "
        f"({old:.4f}); production unchanged",
    }
