"""The interface every export format implements: one small class per format."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.formats.share import INT8_WEIGHTS_FLOOR, Int8Share, percent  # noqa: F401 - formats' API

if TYPE_CHECKING:
    import numpy as np

    from edgekit.models.spec import LoadedModel


@dataclass(frozen=True)
class Int8Result:
    """What ``export_int8`` did. ``scheme`` is recorded verbatim in the manifest."""

    path: Path
    scheme: dict  # e.g. {"type": "static", "weights": "int8 per-channel symmetric", ...}


@dataclass(frozen=True)
class Int8Options:
    """How to quantize, when the format's default is not good enough (``edgekit.export.search`` tries these).

    ``method`` names one of the format's calibration methods ("default" is what ``export_int8``
    does without options; each format lists the others in ``remedies``). ``exclude`` keeps the named
    layers in float: ONNX node names of the pre-processed graph, OpenVINO friendly names, PyTorch
    module paths for TFLite (``inspect.layer_errors`` gives them in that form).
    """

    method: str = "default"
    exclude: tuple[str, ...] = ()
    note: str = field(default="", compare=False)  # what the method does, for people reading the manifest
    # For methods that measure accuracy themselves (``Format.validated_methods``): the budget in
    # points and the labelled held-out set with its metric, as (LabelledSet, "top1"); the search
    # fills them in.
    max_drop_pp: float | None = None
    validation: Any = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        d = {"method": self.method, "exclude": list(self.exclude)}
        if self.max_drop_pp is not None:
            d["max_drop_pp"] = self.max_drop_pp
        return {**d, "note": self.note} if self.note else d


def scheme_options(options: Int8Options) -> dict:
    """The scheme keys every format records about the options it quantized with."""
    return {"method": options.method, "excluded": list(options.exclude)}


@dataclass(frozen=True)
class DynamicAxis:
    """``export --dynamic-axis NAME=AXIS:MIN..MAX``: axis AXIS of the (first) input, counted in
    ``--input-shape`` (the batch included), takes any size from MIN to MAX (a sequence length)."""

    name: str
    axis: int
    min: int
    max: int

    @classmethod
    def parse(cls, text: str) -> DynamicAxis:
        import re

        from edgekit.errors import UsageError

        m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(\d+)\s*:\s*(\d+)\s*\.\.\s*(\d+)\s*", text)
        if not m:
            raise UsageError(f"--dynamic-axis {text!r}: expected NAME=AXIS:MIN..MAX, e.g. seq=1:4..64 "
                             "(axis 1 of --input-shape takes 4 to 64)")
        name, axis, low, high = m.group(1), *(int(g) for g in m.groups()[1:])
        if not 1 <= low <= high:
            raise UsageError(f"--dynamic-axis {text!r}: MIN..MAX must satisfy 1 <= MIN <= MAX")
        return cls(name, axis, low, high)

    def to_dict(self) -> dict:
        return {"name": self.name, "axis": self.axis, "min": self.min, "max": self.max}

    def torch_dim(self):
        import torch

        # torch.export treats sizes 0 and 1 as special; a symbolic size starts at 2
        return torch.export.Dim(self.name, min=max(self.min, 2), max=self.max)


# ``export --dynamic-batch``: the batch axis (0) is symbolic; where the format needs a bound
# (ExecuTorch plans its memory for the largest batch) it is this. Tracing uses an example of batch
# 2: torch.export specialises a dimension of size 1 to a constant.
DYNAMIC_BATCH_MAX = 64
TRACE_BATCH = 2


def batch_example(example: Any) -> Any:
    """A batch-1 example input (a tensor, or a tuple of them one per input) repeated to
    ``TRACE_BATCH`` along the batch axis (0)."""
    if isinstance(example, tuple):
        return tuple(batch_example(e) for e in example)
    return example.repeat(TRACE_BATCH, *([1] * (example.dim() - 1)))


def batch_shapes(examples: tuple, bounded: bool = False) -> tuple:
    """``dynamic_shapes`` for ``torch.export`` of ``module(*examples)``: axis 0 of every input is
    the one batch dimension (the same ``Dim``, so the inputs' batches are equal)."""
    dim = batch_dim(bounded)
    return tuple({0: dim} for _ in examples)


def export_shapes(examples: tuple, dynamic_batch: bool, axes: tuple[DynamicAxis, ...] = (),
                  bounded: bool = False) -> tuple | None:
    """``dynamic_shapes`` for ``torch.export`` of ``module(*examples)``: axis 0 of every input when
    ``dynamic_batch`` (``batch_shapes``), and each ``--dynamic-axis`` of the first input; None when
    every shape is fixed."""
    if not dynamic_batch and not axes:
        return None
    shapes = [dict(s) for s in batch_shapes(examples, bounded)] if dynamic_batch else [{} for _ in examples]
    for a in axes:
        shapes[0][a.axis] = a.torch_dim()
    return tuple(shapes)


def batch_dim(bounded: bool = False) -> Any:
    """The ``torch.export.Dim`` of a dynamic batch (at most ``DYNAMIC_BATCH_MAX`` when ``bounded``)."""
    import torch

    return torch.export.Dim("batch", min=1, max=DYNAMIC_BATCH_MAX if bounded else None)


def shape_info(shape: list, max_batch: int | None = None, inputs: list | None = None) -> dict:
    """What the manifest records of an artefact's input: its (first input's) shape, "batch" where
    dynamic; for several inputs also ``inputs``: [{"name", "shape"}, ...] of them all."""
    dynamic = bool(shape) and not isinstance(shape[0], int)
    info: dict = {"input_shape": ["batch", *shape[1:]] if dynamic else list(shape), "dynamic_batch": dynamic}
    if inputs and len(inputs) > 1:
        info["inputs"] = [{"name": name, "shape": ["batch", *s[1:]] if dynamic else list(s)}
                          for name, s in inputs]
    return {**info, "max_batch": max_batch} if dynamic and max_batch else info


def as_outputs(outputs: list) -> Any:
    """A runtime's outputs as ``Session.run`` returns them: the float32 array of a one-output
    artefact, else a tuple of float32 arrays in the artefact's output order."""
    import numpy as np

    arrays = tuple(np.asarray(o, dtype=np.float32) for o in outputs)
    return arrays[0] if len(arrays) == 1 else arrays


class Session(ABC):
    """A loaded artefact in its own runtime. ``run`` takes and returns float32 numpy arrays.

    Several inputs: ``run`` takes a tuple of arrays, one per input in ``LoadedModel.inputs`` order,
    each batch-first; several outputs: it returns a tuple in ``LoadedModel.output_names`` order.
    """

    runtime: str = ""
    runtime_version: str = ""
    device: str = "CPU"

    @abstractmethod
    def run(self, x: np.ndarray | tuple) -> np.ndarray | tuple:
        """Run one batch (float32, the model's input layout); return the float32 output(s)."""

    def input_info(self) -> dict:
        """The artefact's input as the manifest records it (``shape_info``)."""
        return {}


class FixedShapeSession(Session):
    """A session whose artefact has fixed input shapes (``input_shapes``, one per input;
    ``input_shape`` is the first). With a fixed batch, a batch that differs from a batch-1
    artefact's runs one sample at a time; with ``dynamic_batch`` any batch up to ``input_shape[0]``
    (the bound) runs at once, larger ones in chunks of the bound. Subclasses define ``_invoke``."""

    input_shape: tuple[int, ...] = ()
    input_shapes: tuple[tuple[int, ...], ...] = ()  # all inputs (empty: the one ``input_shape``)
    input_names: tuple[str, ...] = ()
    dynamic_batch: bool = False
    what: str = "model"  # for the error: "the TFLite model", "the ExecuTorch program"

    def input_info(self) -> dict:
        shape = ["batch" if self.dynamic_batch else self.input_shape[0], *self.input_shape[1:]]
        inputs = list(zip(self.input_names, self.input_shapes))
        return shape_info(shape, self.input_shape[0], inputs)

    def run(self, x):
        import numpy as np

        from edgekit.errors import DataError
        from edgekit.layout import concat, take

        several = isinstance(x, tuple)
        xs = tuple(np.ascontiguousarray(a, dtype=np.float32) for a in (x if several else (x,)))
        shapes = self.input_shapes or (self.input_shape,)
        packed = xs if several else xs[0]
        if len(xs) == len(shapes) and all(a.shape == s for a, s in zip(xs, shapes)):
            return self._invoke(packed)
        if self.dynamic_batch and len(xs) == len(shapes) and all(
                a.ndim == len(s) and all(d <= b for d, b in zip(a.shape, s)) for a, s in zip(xs, shapes)):
            return self._invoke(packed)  # a bounded dynamic shape (batch or --dynamic-axis) takes it
        n, bound = len(xs[0]), shapes[0][0]
        fits = len(xs) == len(shapes) and all(a.shape[1:] == s[1:] and len(a) == n
                                              for a, s in zip(xs, shapes))
        if fits and self.dynamic_batch and n <= bound:
            return self._invoke(packed)
        if fits and (self.dynamic_batch or bound == 1):
            return concat([self._invoke(take(packed, slice(i, i + bound))) for i in range(0, n, bound)])
        got = " and ".join(str(list(a.shape)) for a in xs)
        want = " and ".join(str(list(s)) for s in shapes)
        raise DataError(f"input of shape {got} does not fit {self.what}'s input {want}")

    @abstractmethod
    def _invoke(self, x):
        """Run ``x`` (``input_shapes``, or any batch up to the bound when dynamic; a tuple for
        several inputs); the float32 output (a tuple for several outputs)."""


class Format(ABC):
    """One export target. Everything the rest of edgekit needs to know about a format is here.

    The class attributes are the format's facts: the registry (``edgekit.formats``), the manifest,
    the CLI and recipe defaults, target profiles, the bench runner's spec and the report's plots
    all read them, so adding a format is this class plus one registration line.
    """

    name: str = ""
    extension: str = ""  # the main file's suffix (".onnx", ".tflite", ".xml", ".pte")
    companions: tuple[str, ...] = ()  # suffixes of files that travel beside the main one (".bin")
    default: bool = True  # written by `export` when --to is not given
    export_last: bool = False  # export after the others (its converter starts threads that a fork dislikes)
    export_cost: float = 1.0  # relative time of its export; edgekit.export.jobs balances processes by it
    extra: str = ""  # the pip extra that installs this format's tools
    requires: tuple[tuple[str, str], ...] = ()  # (module to import, package that provides it)
    tools: tuple[str, ...] = ()  # distributions whose versions the manifest records
    # The runtimes the device runner tries, in order (distribution names; a target profile may
    # narrow them); the runner's own table (edgekit/bench/runner.py SESSIONS) must agree.
    runtimes: tuple[str, ...] = ()
    colour: str = "grey"  # the format's colour in the report's plots
    # What a target profile may set in this format's table (``[onnx] providers = [...]``):
    # profile key -> (the key the device runner reads in its spec, the default value).
    target_settings: dict[str, tuple[str, Any]] = {}

    @classmethod
    def target_device(cls, settings: dict) -> str | None:
        """How ``edgekit targets`` names where this format runs under a profile's ``settings``."""
        return None
    validated_methods: tuple[str, ...] = ()  # int8 methods that need Int8Options.validation
    # Why this format's artefacts keep a fixed batch under --dynamic-batch ("": it can make them).
    fixed_batch_reason: str = ""
    dynamic_batch: bool = False  # this export writes a dynamic batch axis (``use_dynamic_batch``)

    # Why this format's artefacts keep a fixed size under --dynamic-axis ("": it can make them).
    fixed_axes_reason: str = ""
    dynamic_axes: tuple[DynamicAxis, ...] = ()  # this export's variable axes (``use_dynamic_axes``)

    def use_dynamic_axes(self, axes: tuple[DynamicAxis, ...]) -> str | None:
        """Write this export's artefacts with ``axes`` variable; the reason when the format cannot
        (its artefacts then keep the sizes of --input-shape, as the manifest records)."""
        if self.fixed_axes_reason:
            return self.fixed_axes_reason
        self.dynamic_axes = tuple(axes)
        return None

    def use_dynamic_batch(self) -> str | None:
        """Write this export's artefacts with a dynamic batch axis (0); the reason when the format
        cannot (its artefacts then keep batch 1, as the manifest records)."""
        if self.fixed_batch_reason:
            return self.fixed_batch_reason
        self.dynamic_batch = True
        return None

    def input_info(self, path: Path) -> dict:
        """The written artefact's input shape for the manifest (``shape_info``), read back from it."""
        from edgekit.formats._util import quiet

        with quiet():
            return self.open(path).input_info()

    def check_available(self) -> None:
        """Raise MissingDependencyError (naming the extra) before any work starts."""
        from edgekit.errors import require
        from edgekit.formats._util import quiet

        with quiet():  # some runtimes log from C++ while they load
            for module, package in self.requires:
                require(module, package, self.extra)

    @abstractmethod
    def export_fp32(self, model: LoadedModel, path: Path) -> Path:
        """Write the fp32 artefact at ``path`` (companion files beside it); return ``path``."""

    @abstractmethod
    def export_int8(
        self,
        model: LoadedModel,
        fp32_path: Path,
        calib: np.ndarray,
        path: Path,
        options: Int8Options | None = None,
    ) -> Int8Result:
        """Write the int8 artefact at ``path`` using calibration samples ``calib`` (N, ...).

        ``options`` None is the format's default; otherwise its method and excluded layers. The
        fp32 artefact at ``fp32_path`` is only read, never written.
        """

    def remedies(self, model: LoadedModel) -> list[Int8Options]:
        """Other calibration methods this format's toolchain offers, cheapest first."""
        return []

    def can_exclude(self, options: Int8Options) -> bool:
        """Whether ``options``' method can keep named layers in float."""
        return True

    @abstractmethod
    def open(self, path: Path, threads: int | None = None) -> Session:
        """Load an artefact in this format's runtime (``threads``: intra-op threads, None = default)."""

    def open_exact(self, path: Path) -> Session:
        """Open with settings that keep fp32 numerics exact (used to verify fp32 artefacts)."""
        return self.open(path)

    def tool_versions(self) -> dict[str, str]:
        """Versions of the converters and runtimes this format uses (those installed)."""
        from edgekit.formats._util import versions

        return versions(*self.tools)

    def int8_share(self, path: Path) -> Int8Share | None:
        """What the artefact at ``path`` stores and computes in 8 bits, read back from the file
        (``Int8Share``); None when the format cannot tell."""
        return None

    def details(self, path: Path) -> dict:
        """Facts about the artefact just written at ``path`` that the manifest records beside it
        (ExecuTorch: which ops its backend took). A ``"summary"`` key is shown after the artefact's
        line in the export output and in the report. {} when the format has none."""
        return {}

    def files(self, path: Path) -> list[Path]:
        """All files that make up the artefact at ``path`` (OpenVINO has a .bin beside the .xml)."""
        return [path, *(path.with_suffix(s) for s in self.companions)]
