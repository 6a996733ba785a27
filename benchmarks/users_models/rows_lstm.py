"""Sequential MNIST, one row per time step: a 2-layer LSTM over the 28 rows of a digit.

The classic "MNIST with an RNN" tutorial model, seq-first as PyTorch's nn.LSTM defaults to:
input (28, N, 28) = (time, batch, pixels of one row, 0-1), output (N, 10) class scores.
"""

import torch
from torch import nn


class RowLSTM(nn.Module):
    def __init__(self, input_size: int = 28, hidden_size: int = 128, num_layers: int = 2,
                 num_classes: int = 10):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers)  # batch_first=False
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # (T, N, H)
        return self.fc(out[-1])  # the last step
