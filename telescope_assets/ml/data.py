"""Lightning data modules over in-memory arrays (the training-set assets' contents)."""

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["ArrayDataModule"]


class ArrayDataModule(L.LightningDataModule):
    """Train/validation split of named arrays, deterministic for a seed.

    The fixed evaluation split is *not* here: it is a separate set that training never
    sees, scored after training by :mod:`telescope_assets.ml.evaluate`.
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        keys: list[str],
        batch_size: int = 128,
        val_fraction: float = 0.15,
        seed: int = 0,
    ):
        super().__init__()
        self.arrays, self.keys = arrays, keys
        self.batch_size, self.val_fraction, self.seed = batch_size, val_fraction, seed

    def setup(self, stage: str | None = None) -> None:
        n = len(self.arrays[self.keys[0]])
        order = np.random.default_rng(self.seed).permutation(n)
        n_val = max(1, int(self.val_fraction * n))
        tensors = [torch.as_tensor(self.arrays[k]) for k in self.keys]
        self.train_set = TensorDataset(*(t[order[n_val:]] for t in tensors))
        self.val_set = TensorDataset(*(t[order[:n_val]] for t in tensors))

    def train_dataloader(self) -> DataLoader:
        g = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True, generator=g)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=512)
