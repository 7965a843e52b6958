"""``fit()``: train one model kind on arrays and return the network and its metrics."""

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = ["MODELS", "ModelSpec", "fit"]


@dataclass(frozen=True)
class ModelSpec:
    """How a model kind is trained, judged and gated."""

    name: str
    keys: tuple[str, ...]
    epochs: int
    metric: str  # the evaluation metric that decides promotion
    higher_is_better: bool
    target: float

    def meets_target(self, value: float) -> bool:
        """Whether an evaluation value meets the production target."""
        return value >= self.target if self.higher_is_better else value <= self.target

    def better(self, new: float, old: float) -> bool:
        """Whether ``new`` beats ``old`` (strictly)."""
        return new > old if self.higher_is_better else new < old


MODELS = {
    "frame_quality": ModelSpec(
        "frame_quality", ("x", "scalars", "y", "flags"), 14, "accuracy", True, 0.97
    ),
    "real_bogus": ModelSpec("real_bogus", ("x", "y"), 12, "fpr_at_fnr_1pct", False, 0.005),
    "anomaly": ModelSpec("anomaly", ("x",), 20, "tpr_at_fpr_1pct", True, 0.90),
    "transient_type": ModelSpec("transient_type", ("x", "y"), 30, "macro_recall", True, 0.90),
}


def _module(kind: str):
    from telescope_assets.ml import modules

    return {
        "frame_quality": modules.QualityModule,
        "real_bogus": modules.RealBogusModule,
        "anomaly": modules.AutoencoderModule,
        "transient_type": modules.TypeModule,
    }[kind]()


def fit(
    kind: str,
    arrays: dict[str, np.ndarray],
    *,
    max_epochs: int | None = None,
    seed: int = 0,
    logger=None,
    fast_dev_run: bool = False,
    init: dict | None = None,
    lr: float | None = None,
):
    """Train a model of ``kind`` on ``arrays``.

    Parameters
    ----------
    kind : str
        ``frame_quality``, ``real_bogus``, ``anomaly`` (the autoencoder: give it normal
        examples only) or ``transient_type``.
    arrays : dict
        The training arrays named by the kind's ``keys``.
    max_epochs : int, optional
        Defaults to the kind's.
    seed : int
        Weights, shuffling and the validation split depend on it only.
    logger : lightning logger, optional
        E.g. ``MLFlowLogger`` (metrics per epoch).
    fast_dev_run : bool
        One batch of each loop, for tests.
    init : dict, optional
        A ``state_dict`` to start from (fine-tuning a champion) instead of random weights.
    lr : float, optional
        Peak learning rate; defaults to the module's (lower it to fine-tune).

    Returns
    -------
    net : torch.nn.Module
        The trained network in eval mode.
    metrics : dict
        Last epoch's training/validation metrics.
    """
    import lightning as L
    import torch

    from telescope_assets.ml.data import ArrayDataModule

    spec = MODELS[kind]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    L.seed_everything(seed, workers=True, verbose=False)
    module = _module(kind)
    if init is not None:
        module.net.load_state_dict(init)
    if lr is not None:
        module.lr = lr
    data = ArrayDataModule(arrays, list(spec.keys), seed=seed)
    trainer = L.Trainer(
        max_epochs=max_epochs or spec.epochs,
        accelerator="cpu",
        devices=1,
        logger=logger if logger is not None else False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        fast_dev_run=fast_dev_run,
        deterministic=True,
    )
    with warnings.catch_warnings():
        # Lightning suggests more dataloader workers; in-memory tensors need none.
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LightningDataModule.*")
        trainer.fit(module, datamodule=data)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return module.net.eval(), metrics
