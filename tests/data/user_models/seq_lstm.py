"""An MNIST row-by-row LSTM as public repositories write it: PyTorch's default layout, seq-first
(``batch_first=False``), so it takes (time, batch, features) = (28, N, 28), two stacked layers, and
classifies from the last time step. ``RowTagger`` gives one prediction per time step, (28, N, 10):
its output has the batch at axis 1 too."""

from __future__ import annotations

import torch
from torch import nn


class RowLSTM(nn.Module):
    def __init__(self, features: int = 28, hidden: int = 32, layers: int = 2, classes: int = 10):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=layers)  # batch_first=False
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # (time, batch, hidden)
        return self.head(out[-1])  # (batch, classes)


class RowTagger(RowLSTM):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out)  # (time, batch, classes)
