"""A LeNet-like digit CNN on 28x28 MNIST, and the same network taking raw 0-255 pixels.

Net: input (N, 1, 28, 28) in 0-1. RawNet: input 0-255 (as the ONNX model zoo's MNIST model),
scaled inside forward. Both give (N, 10) class scores.
"""

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5, padding=2)
        self.conv2 = nn.Conv2d(8, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)  # 28 -> 14
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)  # 10 -> 5
        x = torch.flatten(x, 1)
        return self.fc2(torch.relu(self.fc1(x)))


class RawNet(Net):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x / 255.0)
