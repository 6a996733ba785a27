"""Two small batch-first recurrent classifiers over MNIST rows: (N, 28, 28) -> (N, 10)."""

import torch
from torch import nn


class GRUNet(nn.Module):
    def __init__(self, input_size: int = 28, hidden_size: int = 64, num_classes: int = 10):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(x)
        return self.fc(out[:, -1])


class RNNNet(nn.Module):
    """An Elman RNN (tanh) over the rows."""

    def __init__(self, input_size: int = 28, hidden_size: int = 64, num_classes: int = 10):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])
