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


class SeqFirstLSTM(nn.Module):
    """A user's seq-first two-layer LSTM classifier: input (time 6, batch, features 8)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.LSTM(8, 48, num_layers=2)
        self.head = nn.Linear(48, 4)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[-1]) * 8  # wide logits: random weights still decide clearly


class ConvBiGRU(nn.Module):
    """A convolution over a (1, 6, 8) map, then a bidirectional GRU nested one level down."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.encoder = nn.ModuleDict({"gru": nn.GRU(32, 40, batch_first=True, bidirectional=True)})
        self.head = nn.Linear(80, 4)

    def forward(self, x):
        f = self.features(x).permute(0, 2, 1, 3).flatten(2)  # (N, 6, 4 * 8)
        out, _ = self.encoder["gru"](f)
        return self.head(out[:, -1]) * 8


class OutlierChannel(nn.Module):
    """Static int8 breaks it: one hidden channel spans +-1e4, so per-tensor int8 rounds the
    channels that decide the class to zero."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(16, 16)
        self.fc2 = nn.Linear(16, 4)
        with torch.no_grad():
            self.fc1.weight[0] = 0
            self.fc1.bias[0] = 0
            self.fc1.weight[0, 0] = 2e4
            self.fc2.weight[:, 0] = 0

    def forward(self, x):
        return self.fc2(self.fc1(x - 0.5))


class FloatMask(nn.Module):
    """A third of its weights sit in a subtraction onnxruntime's static int8 leaves in float."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.mask = nn.Parameter(torch.rand(1, 1, 32, 32) + 0.5)
        self.fc = nn.Linear(1024, 2)

    def forward(self, x):
        return self.fc((x - self.mask).flatten(1))


class VariableLengthGRU(nn.Module):
    """A bidirectional GRU with one logit per sequence (a binary classifier, output (N,)) that takes
    any number of time steps: (N, T, 8)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.gru = nn.GRU(8, 24, batch_first=True, bidirectional=True)
        self.head = nn.Linear(48, 1)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.head(out.mean(1)).squeeze(-1) * 8
