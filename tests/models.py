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
