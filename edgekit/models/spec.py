"""Model specs: how to build a zoo model, what it eats, and the reference numbers from its paper."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily
    import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelOptions:
    """User-facing options shared by every zoo model (None means the spec's default)."""

    num_classes: int | None = None
    width: float = 1.0  # channel multiplier (hidden-size multiplier for the LSTM)
    input_size: int | None = None  # image side in pixels; sequence length for the LSTM


@dataclass(frozen=True)
class InputSpec:
    """The tensor a model takes. ``shape`` includes the batch dimension (1)."""

    shape: tuple[int, ...]
    dtype: str = "float32"
    layout: str = "NCHW"  # "NCHW" for images, "NTC" (batch, time, features) for sequences

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.dtype, "layout": self.layout}


@dataclass(frozen=True)
class Preprocessing:
    """How raw data becomes the input tensor. Images: resize, grey/RGB, scale to [0,1], mean/std."""

    kind: str = "image"  # "image" | "sequence" | "none"
    size: tuple[int, int] | None = None  # (height, width)
    grayscale: bool = False
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "size": list(self.size) if self.size else None,
            "grayscale": self.grayscale,
            "mean": list(self.mean),
            "std": list(self.std),
        }


@dataclass(frozen=True)
class ModelSpec:
    """A zoo entry. ``build`` takes resolved options and returns an ``nn.Module`` in eval mode.

    ``input_spec``/``preprocessing`` are functions of the options, because ``--input-size`` and
    ``--width`` change them. Reference numbers are for the default options (the paper model).
    """

    name: str
    title: str
    paper: str
    task: str  # "classification" (one label per sample) | "sequence" (one label per time step)
    default_num_classes: int
    default_input_size: int
    build: Callable[[ModelOptions], nn.Module]
    input_spec: Callable[[ModelOptions], InputSpec]
    preprocessing: Callable[[ModelOptions], Preprocessing]
    reference_params: int
    reference_macs: int | None  # None where the paper gives no figure
    builtin_calibration: str  # name of the built-in calibration source for this model
    static_int8: bool = True  # False: use dynamic / weight-only int8 (e.g. the LSTM)
    notes: tuple[str, ...] = field(default_factory=tuple)

    def resolve(self, options: ModelOptions) -> ModelOptions:
        """Fill in defaults so the options record exactly what was built."""
        return ModelOptions(
            num_classes=options.num_classes or self.default_num_classes,
            width=options.width,
            input_size=options.input_size or self.default_input_size,
        )


@dataclass
class LoadedModel:
    """A built model ready for the pipeline: the module (eval mode) and everything about it."""

    name: str  # zoo name, or "path/to/file.py:ClassName" for a user's model
    module: nn.Module
    task: str
    input_spec: InputSpec
    preprocessing: Preprocessing
    num_classes: int
    options: dict  # resolved options as recorded in the manifest
    params: int
    macs: int | None
    weights: dict | None  # {"path": str, "sha256": str, "format": "pickle"|"safetensors"} or None
    builtin_calibration: str | None
    static_int8: bool = True

    def example_input(self):
        """A deterministic example tensor of the input shape (for tracing/export)."""
        import torch

        g = torch.Generator().manual_seed(0)
        return torch.rand(self.input_spec.shape, generator=g)
