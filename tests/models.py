"""Small models written in the tests, shared by more than one test module."""

from __future__ import annotations

import torch
import torch.nn as nn


class Cumsum(nn.Module):
    """cumsum has no XNNPACK kernel: its .pte calls the portable kernel aten::cumsum.out, which must
    show up in the delegation record rather than pass silently."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(torch.cumsum(x, dim=-1))


class BinaryGRU(nn.Module):
    """A binary sequence classifier as users write them: a bidirectional GRU over (batch, time,
    features) and one logit per sample, (batch,), decided by sigmoid(logit) >= 0.5."""

    def __init__(self, features: int = 6, hidden: int = 8):
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 1)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.head(out[:, -1]).squeeze(-1)


class TinyRegressor(nn.Module):
    """One real value per sample, (batch, 1): guessed a binary logit unless --task regress says."""

    def __init__(self, features: int = 6):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x)
