"""A bidirectional GRU binary classifier with one logit, as text/sentiment repos write them.

Input (N, T, 28) batch-first sequences (any T); output (N,) logits: positive when
sigmoid(logit) >= 0.5. Trained here on MNIST rows, "is the digit 5 or more".
"""

import torch
from torch import nn


class BiGRUBinary(nn.Module):
    def __init__(self, input_size: int = 28, hidden_size: int = 64):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x)  # h: (2, N, H), forward and backward final states
        h = torch.cat([h[0], h[1]], dim=1)
        return self.head(h).squeeze(1)  # (N,)
