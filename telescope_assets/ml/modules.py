"""LightningModules: losses, metrics and optimisers around the networks."""

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics

from telescope_assets.ml.networks import ConvAutoencoder, QualityNet, RealBogusNet, TypeNet

__all__ = ["AutoencoderModule", "QualityModule", "RealBogusModule", "TypeModule"]


def augment(x: torch.Tensor) -> torch.Tensor:
    """Random flips and right-angle rotations: the sky has no preferred orientation."""
    if torch.rand(()) < 0.5:
        x = torch.flip(x, dims=(-1,))
    if torch.rand(()) < 0.5:
        x = torch.flip(x, dims=(-2,))
    if torch.rand(()) < 0.5:
        x = torch.transpose(x, -1, -2)
    return x


class _Base(L.LightningModule):
    def __init__(self, lr: float):
        super().__init__()
        self.lr = lr

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=1e-3)
        steps = self.trainer.estimated_stepping_batches
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=self.lr, total_steps=steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class QualityModule(_Base):
    """Cross-entropy on the class, binary cross-entropy on the defect flags."""

    def __init__(self, net: QualityNet | None = None, lr: float = 2e-3, n_classes: int = 3):
        super().__init__(lr)
        self.save_hyperparameters(ignore=["net"])
        self.net = net or QualityNet(n_classes=n_classes)
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=n_classes)

    def _loss(self, batch, train: bool = False):
        image, scalars, y, flags = batch
        out = self.net(augment(image) if train else image, scalars)
        k = self.net.n_classes
        loss = F.cross_entropy(out[:, :k], y) + F.binary_cross_entropy_with_logits(
            out[:, k:], flags
        )
        return loss, out[:, :k], y

    def training_step(self, batch, batch_idx):
        loss, _, _ = self._loss(batch, train=True)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, logits, y = self._loss(batch)
        self.val_acc(logits, y)
        self.log("val_loss", loss, on_epoch=True)
        self.log("val_accuracy", self.val_acc, on_epoch=True)


class RealBogusModule(_Base):
    """Five-class cross-entropy."""

    def __init__(self, net: RealBogusNet | None = None, lr: float = 2e-3, n_classes: int = 5):
        super().__init__(lr)
        self.save_hyperparameters(ignore=["net"])
        self.net = net or RealBogusNet(n_classes=n_classes)
        self.val_acc = torchmetrics.Accuracy(task="multiclass", num_classes=n_classes)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(augment(x)), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.val_acc(logits, y)
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True)
        self.log("val_accuracy", self.val_acc, on_epoch=True)


class AutoencoderModule(_Base):
    """Mean squared reconstruction error, trained on normal frames only."""

    def __init__(self, net: ConvAutoencoder | None = None, lr: float = 2e-3):
        super().__init__(lr)
        self.save_hyperparameters(ignore=["net"])
        self.net = net or ConvAutoencoder()

    def training_step(self, batch, batch_idx):
        (x,) = batch
        x = augment(x)
        loss = F.mse_loss(self.net(x), x)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        (x,) = batch
        self.log("val_loss", F.mse_loss(self.net(x), x), on_epoch=True)


class TypeModule(_Base):
    """Six-class cross-entropy on feature vectors (not augmented: features have no orientation)."""

    def __init__(self, net: TypeNet | None = None, lr: float = 3e-3, n_classes: int = 6):
        super().__init__(lr)
        self.save_hyperparameters(ignore=["net"])
        self.net = net or TypeNet(n_classes=n_classes)
        self.val_recall = torchmetrics.Recall(
            task="multiclass", num_classes=n_classes, average="macro"
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self.net(x), y)
        self.log("train_loss", loss, on_epoch=True, on_step=False)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.val_recall(logits, y)
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True)
        self.log("val_macro_recall", self.val_recall, on_epoch=True)
