"""LeNet-5 (LeCun et al. 1998), the common modern reading: 61,706 parameters at 32x32.

C1 conv 6@5x5 -> tanh -> S2 avg-pool 2x2 -> C3 conv 16@5x5 (all 6 inputs) -> tanh -> S4 avg-pool
-> C5 conv 120@5x5 -> tanh -> F6 linear 84 -> tanh -> output linear 10 (logits).
S4 gives 5x5 maps at 32x32 input and C5, a 5x5 conv, sees each whole, so 32x32 is the only input
size (the zoo spec refuses others; preprocessing resizes images to 32x32).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from edgekit.models.complexity import scale_channels
from edgekit.models.spec import ModelOptions


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, width: float = 1.0):
        super().__init__()
        c1, c3, c5, f6 = (scale_channels(c, width) for c in (6, 16, 120, 84))
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 5),  # C1
            nn.Tanh(),
            nn.AvgPool2d(2),  # S2
            nn.Conv2d(c1, c3, 5),  # C3
            nn.Tanh(),
            nn.AvgPool2d(2),  # S4
            nn.Conv2d(c3, c5, 5),  # C5
            nn.Tanh(),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c5, f6),  # F6
            nn.Tanh(),
            nn.Linear(f6, num_classes),  # output (logits)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build(options: ModelOptions) -> nn.Module:
    return LeNet5(options.num_classes or 10, options.width)
