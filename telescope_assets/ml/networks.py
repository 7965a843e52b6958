"""The networks (plain ``nn.Module``s): small CNNs that run fast on a CPU."""

import torch
from torch import nn

__all__ = ["ConvAutoencoder", "QualityNet", "RealBogusNet", "TypeNet"]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)
    )


class QualityNet(nn.Module):
    """Frame quality from a 2×64×64 thumbnail and the measured seeing, transparency, ellipticity.

    Returns class logits (good/medium/bad) and defect-flag logits, concatenated.
    """

    def __init__(self, n_classes: int = 3, n_flags: int = 6, n_scalars: int = 3, width: int = 16):
        super().__init__()
        self.n_classes = n_classes
        self.features = nn.Sequential(
            _block(2, width),
            _block(width, 2 * width),
            _block(2 * width, 4 * width),
            _block(4 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        # Seeing (arcsec), transparency and ellipticity brought to order unity.
        self.register_buffer("scalar_offset", torch.tensor([3.0, 0.7, 0.1]))
        self.register_buffer("scalar_scale", torch.tensor([1.0, 0.3, 0.1]))
        self.scalars = nn.Sequential(
            nn.Linear(n_scalars, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU()
        )
        self.head = nn.Sequential(
            nn.Dropout(0.3),
            nn.Linear(4 * width + 32 + n_scalars, 64),
            nn.ReLU(),
            nn.Linear(64, n_classes + n_flags),
        )

    def forward(self, image: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
        s = (scalars - self.scalar_offset) / self.scalar_scale
        return self.head(torch.cat([self.features(image), self.scalars(s), s], dim=1))


class RealBogusNet(nn.Module):
    """Five-class real/bogus classifier of 3×63×63 science/reference/difference triplets."""

    def __init__(self, n_classes: int = 5, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            _block(3, width),
            _block(width, 2 * width),
            _block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * width, 64),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(64, n_classes),
        )

    def forward(self, triplet: torch.Tensor) -> torch.Tensor:
        return self.net(triplet)


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder of 2×32×32 anomaly representations (or any side divisible by 8).

    Its reconstruction error scores oddity.
    """

    def __init__(self, channels: int = 2, width: int = 16):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * width, 2 * width, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(image))


class TypeNet(nn.Module):
    """Transient type logits from an alert object's feature vector (``science/typing.py``).

    A small multilayer perceptron: the features are already of order unity.
    """

    def __init__(self, n_features: int = 19, n_classes: int = 6, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(width, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
