"""The wrapper a user writes by hand when a tool wants (batch, classes): the one-logit bi-GRU of
bigru_binary.py as two logits [0, z], so that softmax gives sigmoid(z) for class 1 and argmax
is "sigmoid(z) >= 0.5". Same weights (same state-dict keys)."""

import torch
from bigru_binary import BiGRUBinary


class BiGRUTwoColumns(BiGRUBinary):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = super().forward(x)
        return torch.stack([torch.zeros_like(z), z], dim=1)
