"""VGG-16 (Simonyan & Zisserman 2014), configuration D, with torchvision's module layout.

State-dict keys and shapes are torchvision's ``vgg16()`` (``features.N``, ``classifier.N``), so a
torchvision checkpoint loads unchanged. 138,357,544 parameters at 1000 classes.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from edgekit.models.complexity import scale_channels
from edgekit.models.spec import ModelOptions

# Configuration D: conv 3x3 output channels, "M" = 2x2 max-pool.
CONFIG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def make_features(width: float) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    channels = 3
    for v in CONFIG_D:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            out = scale_channels(int(v), width)
            layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = out
    return nn.Sequential(*layers), channels


class VGG16(nn.Module):
    def __init__(self, num_classes: int = 1000, width: float = 1.0, dropout: float = 0.5):
        super().__init__()
        self.features, channels = make_features(width)
        hidden = scale_channels(4096, width)
        # Any input size >= 32 works: the adaptive pool always hands 7x7 maps to the classifier.
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:  # torchvision's initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def build(options: ModelOptions) -> nn.Module:
    return VGG16(options.num_classes or 1000, options.width)
