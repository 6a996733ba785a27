"""An LSTM next-symbol predictor for the Embedded Reber grammar (Hochreiter & Schmidhuber 1997).

Input: (1, T, 7) one-hot symbols (batch first). Output: (1, T, 7) logits for the next symbol at
every time step. One ``nn.LSTM`` layer (hidden 32 by default) and a linear read-out: 5,479
parameters. This is the modern LSTM (with the forget gate of Gers et al. 2000), not the 1997
network, which had input and output gates only and 4 memory-cell blocks of 2 cells each.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from edgekit.models.complexity import scale_channels
from edgekit.models.spec import ModelOptions

SYMBOLS = 7  # B T P S X V E
HIDDEN = 32


class ReberLSTM(nn.Module):
    def __init__(self, num_classes: int = SYMBOLS, width: float = 1.0, num_symbols: int = SYMBOLS):
        super().__init__()
        hidden = scale_channels(HIDDEN, width)
        self.lstm = nn.LSTM(num_symbols, hidden, num_layers=1, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x)
        return self.head(y)


def build(options: ModelOptions) -> nn.Module:
    return ReberLSTM(options.num_classes or SYMBOLS, options.width)
