"""Model specs: how to build a zoo model, what it eats, and the reference numbers from its paper."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported lazily
    import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# What a model's (first) output means, as LoadedModel.task and the manifest's model.task record it:
# "classification": logits (batch, classes), the argmax decides; "sequence": (batch, time, classes),
# one argmax per step; "binary": one logit per sample, (batch,) or (batch, 1), decided by
# sigmoid(logit) >= 0.5, i.e. logit >= 0; "regression": real values compared with real targets.
TASKS = ("classification", "sequence", "binary", "regression")
# --task (export, eval, recipes) -> the task it sets; "classify" keeps a per-step model a sequence one.
TASK_OPTIONS = {"classify": "classification", "binary": "binary", "regress": "regression"}


@dataclass(frozen=True)
class ModelOptions:
    """User-facing options shared by every zoo model (None means the spec's default)."""

    num_classes: int | None = None
    width: float = 1.0  # channel multiplier (hidden-size multiplier for the LSTM)
    input_size: int | None = None  # image side in pixels; sequence length for the LSTM


@dataclass(frozen=True)
class InputSpec:
    """The tensor a model takes. ``shape`` includes the batch dimension (1) at ``batch_axis``.

    Inside edgekit samples are stacked batch-first, (N, *sample_shape); ``edgekit.layout`` moves
    the batch to ``batch_axis`` where a batch meets the model or an artefact (e.g. a seq-first
    LSTM: shape (28, 1, 28), batch_axis 1, layout "TNC").
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    layout: str = "NCHW"  # "NCHW" for images, "NTC" (batch, time, features) for sequences
    batch_axis: int = 0
    name: str = "input"  # the input's name in exported graphs (a multi-input model's forward arguments)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One sample's shape: ``shape`` without the batch axis."""
        return self.shape[: self.batch_axis] + self.shape[self.batch_axis + 1 :]

    def to_dict(self) -> dict:
        d = {"shape": list(self.shape), "dtype": self.dtype, "layout": self.layout}
        if self.name != "input":
            d["name"] = self.name
        return {**d, "batch_axis": self.batch_axis} if self.batch_axis else d


RESIZE_MODES = ("crop", "squash", "pad", "none")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class Preprocessing:
    """How raw data becomes the input tensor, declared once and recorded in every run.

    Images, in torchvision's order: decode (grey or RGB), resize per ``resize``, scale the pixel
    values (``scale``, 1/255 = ToTensor), subtract ``mean`` and divide by ``std`` per channel, and
    lay out as NCHW or NHWC. ``resize``: "crop" = resize the shorter side to size / crop_fraction,
    then centre-crop (the ImageNet evaluation transform; crop_fraction 1 crops without margin);
    "squash" = resize to exactly HxW; "pad" = letterbox: fit inside HxW keeping the aspect, pad
    the rest with ``pad_value``; "none" = images must already be HxW.
    """

    kind: str = "image"  # "image" | "values" (not pictures: scale, mean, std only) | "sequence" | "none"
    size: tuple[int, int] | None = None  # (height, width)
    grayscale: bool = False
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resize: str = "squash"  # the zoo's ImageNet models declare "crop"
    crop_fraction: float = 0.875
    interpolation: str = "bilinear"
    scale: float = 1 / 255
    layout: str = "NCHW"
    pad_value: int = 0

    def __post_init__(self) -> None:
        from edgekit.errors import UsageError

        checks = [
            (self.resize in RESIZE_MODES, f"resize {self.resize!r}: use one of {', '.join(RESIZE_MODES)}"),
            (self.interpolation in INTERPOLATIONS,
             f"interpolation {self.interpolation!r}: use one of {', '.join(INTERPOLATIONS)}"),
            (self.layout in LAYOUTS, f"layout {self.layout!r}: use NCHW or NHWC"),
            (0 < self.crop_fraction <= 1, f"crop fraction {self.crop_fraction}: use a value in (0, 1]"),
            (self.scale > 0, f"scale {self.scale}: use a positive value such as 0.00392156862745098 (1/255)"),
            (all(v != 0 for v in self.std), "--std values must not be 0 (they divide)"),
            (len(self.mean) > 0 and len(self.std) > 0, "mean and std need at least one value"),
            (self.size is None or min(self.size) >= 1, f"input size {self.size} must be positive"),
            (0 <= self.pad_value <= 255, f"pad value {self.pad_value}: use 0..255"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(f"preprocessing: {message}")

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "size": list(self.size) if self.size else None,
            "grayscale": self.grayscale,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize": self.resize,
            "crop_fraction": self.crop_fraction,
            "interpolation": self.interpolation,
            "scale": self.scale,
            "layout": self.layout,
            "pad_value": self.pad_value,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        """Inverse of ``to_dict``; records written before a field existed get its default (and
        images the crop resize, which was the only one then)."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if known.get("kind", "image") == "image" and "resize" not in known:
            known["resize"] = "crop"  # recorded before resize modes existed: the crop transform
        for key in ("size", "mean", "std"):
            if known.get(key) is not None:
                known[key] = tuple(known[key])
        return cls(**known)


@dataclass(frozen=True)
class ModelSpec:
    """A zoo entry. ``build`` takes resolved options and returns an ``nn.Module`` in eval mode.

    ``input_spec``/``preprocessing`` are functions of the options, because ``--input-size`` and
    ``--width`` change them. Reference numbers are for the default options (the paper model).
    """

    name: str
    title: str
    paper: str
    task: str  # "classification" (one label per sample) | "sequence" (one label per time step); see TASKS
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

    name: str  # zoo name, or "path/to/file.py:NAME" / "package.module:NAME" for a user's model
    module: nn.Module
    task: str  # one of TASKS (edgekit.models.spec): what the first output means
    input_spec: InputSpec
    preprocessing: Preprocessing
    num_classes: int
    options: dict  # resolved options as recorded in the manifest
    params: int
    macs: int | None
    weights: dict | None  # {"path": str, "sha256": str, "format": "pickle"|"safetensors"} or None
    builtin_calibration: str | None
    static_int8: bool = True
    # Why int8 is dynamic / weight-only rather than static (recorded in every int8 scheme); "" when static.
    int8_reason: str = ""
    recurrent: tuple[str, ...] = ()  # "path (Kind)" of each recurrent layer found in the module
    output_batch_axis: int = 0  # where the batch is in the model's output (found by running it)
    # A model with several inputs and outputs: the inputs after the first (``input_spec``), and the
    # names of all outputs. Samples of such a model are tuples of batch-first arrays, one per input
    # (``edgekit.layout``), and its outputs tuples; the first output is what eval scores.
    extra_inputs: tuple[InputSpec, ...] = ()
    output_names: tuple[str, ...] = ("output",)

    @property
    def inputs(self) -> tuple[InputSpec, ...]:
        return (self.input_spec, *self.extra_inputs)

    @property
    def multi_io(self) -> bool:
        return bool(self.extra_inputs) or len(self.output_names) > 1

    @property
    def axes(self):
        """The model's batch axes (``edgekit.layout.BatchAxes``), to move batch-first samples in and out."""
        from edgekit.layout import BatchAxes

        return BatchAxes(self.input_spec.batch_axis, self.output_batch_axis)

    def example_input(self):
        """A deterministic example tensor of the (first) input's shape (for tracing/export)."""
        return self.example_inputs()[0]

    def example_inputs(self) -> tuple:
        """Deterministic example tensors, one per input (for tracing/export: ``module(*inputs)``)."""
        import torch

        g = torch.Generator().manual_seed(0)
        return tuple(torch.rand(spec.shape, generator=g) for spec in self.inputs)
