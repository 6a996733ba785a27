"""CNN + LSTM: a small conv feature extractor over the image, then an LSTM over its rows.

Input (N, 1, 28, 28) grey digits (0-1); output (N, 10) class scores.
"""

import torch
from torch import nn


class CNNLSTM(nn.Module):
    def __init__(self, channels: int = 16, hidden_size: int = 64, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d((1, 2)),  # keep the 28 rows, halve the width: (N, C, 28, 14)
        )
        self.lstm = nn.LSTM(channels * 14, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # (N, C, 28, 14)
        n, c, h, w = f.shape
        seq = f.permute(0, 2, 1, 3).reshape(n, h, c * w)  # one step per row
        out, _ = self.lstm(seq)
        return self.fc(out[:, -1])
