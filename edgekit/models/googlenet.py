"""GoogLeNet / Inception-v1 (Szegedy et al. 2014) with torchvision's module layout.

State-dict keys and shapes are torchvision's ``googlenet()``. Like torchvision, the "5x5" branch of
each Inception module uses a 3x3 conv (a known torchvision quirk kept for checkpoint compatibility)
and every conv is followed by batch norm (the paper predates batch norm).

The two auxiliary classifiers exist only when built with ``aux_logits=True`` (for training) and
only run in training mode; the zoo model has none, so they are never exported. A torchvision
checkpoint's ``aux1.*``/``aux2.*`` keys are dropped on load (see ``edgekit_adapt_state_dict``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgekit.models.complexity import scale_channels
from edgekit.models.spec import ModelOptions

# name: (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj), from the paper's Table 1.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
AUX_PREFIXES = ("aux1.", "aux2.")


class BasicConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int):
        super().__init__()
        self.branch1 = BasicConv2d(cin, c1, kernel_size=1)
        self.branch2 = nn.Sequential(
            BasicConv2d(cin, c3r, kernel_size=1), BasicConv2d(c3r, c3, kernel_size=3, padding=1)
        )
        self.branch3 = nn.Sequential(  # 3x3, not the paper's 5x5: torchvision compatibility
            BasicConv2d(cin, c5r, kernel_size=1), BasicConv2d(c5r, c5, kernel_size=3, padding=1)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(cin, pool, kernel_size=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([b(x) for b in branches], 1)


class InceptionAux(nn.Module):
    """Training-only auxiliary classifier (on 4a and 4d)."""

    def __init__(self, in_channels: int, num_classes: int, width: float):
        super().__init__()
        conv, fc = scale_channels(128, width), scale_channels(1024, width)
        self.conv = BasicConv2d(in_channels, conv, kernel_size=1)
        self.fc1 = nn.Linear(conv * 16, fc)
        self.fc2 = nn.Linear(fc, num_classes)
        self.dropout = nn.Dropout(p=0.7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, (4, 4))), 1)
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class GoogLeNet(nn.Module):
    """In eval mode returns logits; in training mode with aux heads, (logits, aux2, aux1) as
    torchvision does (weight the aux losses by 0.3, as the paper)."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0, aux_logits: bool = False):
        super().__init__()
        s = lambda c: scale_channels(c, width)  # noqa: E731
        self.conv1 = BasicConv2d(3, s(64), kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(s(64), s(64), kernel_size=1)
        self.conv3 = BasicConv2d(s(64), s(192), kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        channels = s(192)
        outs = {}
        for name, (c1, c3r, c3, c5r, c5, pool) in INCEPTION.items():
            widths = [s(c) for c in (c1, c3r, c3, c5r, c5, pool)]
            setattr(self, f"inception{name}", Inception(channels, *widths))
            channels = widths[0] + widths[2] + widths[4] + widths[5]
            outs[name] = channels
            if name == "3b":
                self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif name == "4e":
                self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.aux_logits = aux_logits
        if aux_logits:
            self.aux1 = InceptionAux(outs["4a"], num_classes, width)
            self.aux2 = InceptionAux(outs["4d"], num_classes, width)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=0.2)
        self.fc = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:  # torchvision's initialisation
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)

    def forward(self, x: torch.Tensor):
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux_logits and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux_logits and self.training else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        x = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
        return (x, aux2, aux1) if aux1 is not None else x

    def edgekit_adapt_state_dict(self, state_dict: dict) -> tuple[dict, list[str]]:
        """Reconcile a checkpoint's auxiliary heads with this model's (see the module doc)."""
        has_aux = {k for k in state_dict if k.startswith(AUX_PREFIXES)}
        if not self.aux_logits and has_aux:
            kept = {k: v for k, v in state_dict.items() if k not in has_aux}
            note = f"ignored {len(has_aux)} keys of the training-only auxiliary heads (aux1, aux2)"
            return kept, [note]
        if self.aux_logits and not has_aux:
            own = {k: v for k, v in self.state_dict().items() if k.startswith(AUX_PREFIXES)}
            note = "the weights have no auxiliary heads; aux1/aux2 keep their initialisation"
            return {**state_dict, **own}, [note]
        return state_dict, []


def build(options: ModelOptions) -> nn.Module:
    return GoogLeNet(options.num_classes or 1000, options.width)
