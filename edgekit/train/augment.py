"""Image augmentation while training: random shifts, rotations and scaling, and flips where the
labels allow them, per dataset (``AUGMENT``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgekit.data.labelled import LabelledSet
    from edgekit.models.spec import LoadedModel

# Image augmentation per dataset: shift (fraction of the side), rotation (degrees), scale (+-
# fraction), a horizontal flip, and "dihedral": any of the 8 flips/quarter turns, exact. Flips
# only where they cannot change the label.
AUGMENT_OTHER = {"shift": 0.0625, "rotate": 0.0, "scale": 0.0, "flip": False, "dihedral": False}
AUGMENT: dict[str, dict] = {
    "digits": {"shift": 0.1, "rotate": 15.0, "scale": 0.15},  # a mirrored 2 is no 2
    # Shapes come at every position, size and angle already; each class is symmetric, so exact
    # flips and quarter turns keep the label (a warp here cost ResNet-50 2.5 points).
    "shapes": {"shift": 0.0, "dihedral": True},
}


def _augmenter(data: LabelledSet, model: LoadedModel):
    """A function (x, generator) -> x that augments a batch of images (None: no augmentation).

    With rotation or scaling, a random affine warp per image (bilinear, so it also blurs a
    little); otherwise exact whole-pixel shifts. Then flips, where the labels allow them.
    """
    if data.x.ndim != 4:
        return None
    s = {**AUGMENT_OTHER, **AUGMENT.get(data.name, {})}
    if s["rotate"] or s["scale"]:
        move = lambda x, gen: _affine(x, gen, s["shift"], s["rotate"], s["scale"])  # noqa: E731
    else:
        move = lambda x, gen: _shift(x, gen, s["shift"])  # noqa: E731

    def augment(x, gen):
        x = move(x, gen)
        if s["dihedral"] and x.shape[2] == x.shape[3]:
            x = _maybe(x, gen, lambda t: t.transpose(2, 3))
            x = _maybe(x, gen, lambda t: t.flip(2))
        if s["flip"] or s["dihedral"]:
            x = _maybe(x, gen, lambda t: t.flip(3))
        return x

    return augment


def _maybe(x, gen, op):
    """``op`` applied to a random half of the batch."""
    import torch

    pick = torch.rand(len(x), generator=gen) < 0.5
    return torch.where(pick[:, None, None, None], op(x), x)


def _affine(x, gen, shift: float, rotate: float, scale: float):
    """Per image: shift by up to ``shift`` of the side, turn by up to ``rotate`` degrees, scale
    by 1 +- ``scale``; the border pixels fill in."""
    import torch
    import torch.nn.functional as F

    n = len(x)
    u = lambda: 2 * torch.rand(n, generator=gen) - 1  # noqa: E731  uniform in [-1, 1]
    angle, zoom = math.radians(rotate) * u(), 1 + scale * u()
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    rows = [torch.stack([cos, -sin, 2 * shift * u()], 1), torch.stack([sin, cos, 2 * shift * u()], 1)]
    grid = F.affine_grid(torch.stack(rows, 1), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _shift(x, gen, shift: float):
    """Per image: an exact shift by up to ``shift`` of the side, in whole pixels (edges repeat)."""
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    pad = int(round(shift * min(h, w)))
    if not pad:
        return x
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy, dx = (torch.randint(0, 2 * pad + 1, (n,), generator=gen) for _ in range(2))
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
