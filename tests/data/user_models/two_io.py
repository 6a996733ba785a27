"""A model with two inputs and two outputs, as multi-task repositories write it: an image and a
vector of side features in, class logits and a regression head out."""

from __future__ import annotations

import torch
from torch import nn


class TwoTower(nn.Module):
    def __init__(self, classes: int = 10, features: int = 6, targets: int = 3):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.side = nn.Sequential(nn.Linear(features, 16), nn.ReLU())
        self.classify = nn.Linear(32, classes)
        self.regress = nn.Linear(16, targets)

    def forward(self, image: torch.Tensor, side: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = self.conv(image), self.side(side)
        return self.classify(torch.cat([a, b], dim=1)), self.regress(b)


def two_tower(**kwargs) -> TwoTower:
    return TwoTower(**kwargs)
