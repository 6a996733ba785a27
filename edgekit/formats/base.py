"""The interface every export format implements: one small class per format."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from edgekit.bench.runtime_kit import (  # noqa: F401 - formats' API
    FixedShapeSession,
    Session,
    as_outputs,
    shape_info,
)
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


@dataclass(frozen=True)
class ExportJob:
    """What one export asks of a format beyond the model and the files: built once by the export
    plan (``Format.job_for``), given to the format when it is made (``get_format(name, job)``), and
    pickled with it to the export workers and Ray's ``--max-drop`` trials, so that every process
    builds the same artefact. Formats never change it."""

    dynamic_batch: bool = False  # axis 0 of every input is symbolic (``--dynamic-batch``)
    dynamic_axes: tuple[DynamicAxis, ...] = ()  # ``--dynamic-axis``: variable axes of the first input
    # Why int8 must be full-integer (a microcontroller target: ``edgekit.mcu.export``); "": the
    # format's own int8 scheme.
    full_integer: str = ""

    def to_dict(self) -> dict:
        return {"dynamic_batch": self.dynamic_batch, "dynamic_axes": [a.to_dict() for a in self.dynamic_axes],
                **({"full_integer": self.full_integer} if self.full_integer else {})}


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


class Opened:
    """An artefact opened in its format's runtime session (``runtime.py``), as edgekit uses it:
    ``run`` takes and returns float32 arrays; the kit's problems become edgekit's one-line errors
    (an input that does not fit: ``DataError``; a runtime not installed: ``MissingDependencyError``)."""

    def __init__(self, fmt: type[Format], spec: dict, session=None):  # session: another runtime's class
        self.format = fmt
        with _as_edgekit_errors(fmt):
            self.session = (session or fmt.runtime_module().Session)(spec)
        self.runtime = self.session.runtime
        self.runtime_version = self.session.runtime_version
        self.device = self.session.device

    def run(self, x):
        with _as_edgekit_errors(self.format):
            return self.session.run(x)

    def input_info(self) -> dict:
        return self.session.input_info()

    def __getattr__(self, name: str):  # the session's own facts (input_dtype, input_shapes, ...)
        return getattr(self.session, name)


@contextmanager
def _as_edgekit_errors(fmt: type[Format]):
    from edgekit.errors import DataError, MissingDependencyError

    try:
        yield
    except Exception as exc:
        if type(exc).__name__ != "RuntimeProblem":  # the kit's (loaded by the runner too: by name)
            raise
        if exc.kind == "bad_input":
            raise DataError(str(exc)) from None
        if exc.kind == "no_runtime":
            raise MissingDependencyError(fmt.runtimes[0] if fmt.runtimes else fmt.name, fmt.extra) from None
        raise


class Format:
    """One export target. Everything the rest of edgekit needs to know about a format is here.

    The class attributes are the format's facts: the registry (``edgekit.formats``), the manifest,
    the CLI and recipe defaults, target profiles, the bench runner's spec and the report's plots
    all read them, so adding a format is this class plus one registration line.
    """

    name: str = ""
    extension: str = ""  # the main file's suffix (".onnx", ".tflite", ".xml", ".pte")
    companions: tuple[str, ...] = ()  # suffixes of files that travel beside the main one (".bin")
    files_note: str = ""  # what its files are, for the error when a companion is missing
    default: bool = True  # written by `export` when --to is not given
    export_last: bool = False  # export after the others (its converter starts threads that a fork dislikes)
    export_cost: float = 1.0  # relative time of its export; edgekit.export.jobs balances processes by it
    extra: str = ""  # the pip extra that installs this format's tools
    requires: tuple[tuple[str, str], ...] = ()  # (module to import, package that provides it)
    tools: tuple[str, ...] = ()  # distributions whose versions the manifest records
    # The runtimes the device runner tries, in order (distribution names; a target profile may
    # narrow them); its runtime module opens the first installed one.
    runtimes: tuple[str, ...] = ()
    colour: str = "grey"  # the format's colour in the report's plots
    # What a target profile may set in this format's table (``[onnx] providers = [...]``):
    # profile key -> (the key the device runner reads in its spec, the default value).
    target_settings: dict[str, tuple[str, Any]] = {}
    # What the probe (edgekit/compat/probe.py, run on the device) looks for, per runtime of
    # ``runtimes``: (the module to find, the distributions that provide it, in order).
    probe: dict[str, tuple[str, tuple[str, ...]]] = {}
    runtime_labels: dict[str, str] = {}  # short names of its runtimes in bench's table ("ort")
    # What a Linux board pip-installs to run it (the emulated Pi's image installs these for aarch64).
    device_packages: tuple[str, ...] = ()
    takes_onnx: bool = False  # made from an ONNX file itself (a model given as .onnx); else PyTorch
    # Its modules, by name inside the format's package ("" where it has none): the one session
    # (standard library, numpy and the runtime only: it is copied to devices with the runner),
    # edgekit check's verdicts (``needs``/``summary``/``verdict``) and edgekit inspect's
    # per-layer errors (``errors``).
    runtime: str = "runtime"
    convert: str = "convert"  # export_fp32(model, path, job)
    quantize: str = "quantize"  # export_int8(model, fp32_path, calib, path, options)
    compat: str = ""
    inspect: str = ""

    @classmethod
    def target_device(cls, settings: dict) -> str | None:
        """How ``edgekit targets`` names where this format runs under a profile's ``settings``."""
        return None
    validated_methods: tuple[str, ...] = ()  # int8 methods that need Int8Options.validation
    # Why this format's artefacts keep a fixed batch under --dynamic-batch ("": it can make them).
    fixed_batch_reason: str = ""
    # Why this format's artefacts keep a fixed size under --dynamic-axis ("": it can make them).
    fixed_axes_reason: str = ""

    def __init__(self, job: ExportJob | None = None) -> None:
        self.job = job or ExportJob()

    @classmethod
    def job_for(cls, dynamic_batch: bool = False,
                axes: tuple[DynamicAxis, ...] = ()) -> tuple[ExportJob, list[str]]:
        """This format's job for an export asking for a dynamic batch and ``axes``, and a note for
        each it cannot honour (its artefacts then keep batch 1 or the sizes of --input-shape, as
        the manifest records)."""
        notes = []
        if dynamic_batch and cls.fixed_batch_reason:
            notes.append(cls.fixed_batch_reason)
        if axes and cls.fixed_axes_reason:
            notes.append(cls.fixed_axes_reason)
        job = ExportJob(dynamic_batch and not cls.fixed_batch_reason,
                        tuple(axes) if not cls.fixed_axes_reason else ())
        return job, notes

    @property
    def dynamic_batch(self) -> bool:
        """This export writes a dynamic batch axis (its job's)."""
        return self.job.dynamic_batch

    @property
    def dynamic_axes(self) -> tuple[DynamicAxis, ...]:
        """This export's variable axes (its job's)."""
        return self.job.dynamic_axes

    def written_axes(self) -> tuple[DynamicAxis, ...]:
        """The variable axes its artefacts really have (ExecuTorch: none where torch.export fixed
        them in this model); verify checks each at a second size."""
        return self.dynamic_axes

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

    def export_fp32(self, model: LoadedModel, path: Path) -> Path:
        """Write the fp32 artefact at ``path`` (companion files beside it); return ``path``: its
        ``convert`` module's ``export_fp32(model, path, job)``."""
        return self.module("convert").export_fp32(model, Path(path), self.job)

    def export_int8(
        self,
        model: LoadedModel,
        fp32_path: Path,
        calib: np.ndarray,
        path: Path,
        options: Int8Options | None = None,
    ) -> Int8Result:
        """Write the int8 artefact at ``path`` using calibration samples ``calib`` (N, ...): its
        ``quantize`` module's ``export_int8(model, fp32_path, calib, path, options)``.

        ``options`` None is the format's default; otherwise its method and excluded layers. The
        fp32 artefact at ``fp32_path`` is only read, never written.
        """
        return self.module("quantize").export_int8(model, Path(fp32_path), calib, Path(path), options)

    def remedies(self, model: LoadedModel) -> list[Int8Options]:
        """Other calibration methods this format's toolchain offers, cheapest first."""
        return []

    def can_exclude(self, options: Int8Options) -> bool:
        """Whether ``options``' method can keep named layers in float."""
        return True

    def open(self, path: Path, threads: int | None = None) -> Opened:
        """Load an artefact in this format's runtime session (``threads``: intra-op threads, None =
        the runtime's default), the one the device runner uses too."""
        return Opened(type(self), {"path": str(path), "threads": threads})

    def open_exact(self, path: Path, threads: int | None = None) -> Opened:
        """Open with settings that keep fp32 numerics exact (verify's and eval's fp32: OpenVINO
        would pick bf16 on some CPUs); the session says what precision ran."""
        return Opened(type(self), {"path": str(path), "threads": threads, "exact": True})

    @classmethod
    def module(cls, which: str) -> ModuleType | None:
        """The format's ``runtime``, ``convert``, ``quantize``, ``compat`` or ``inspect`` module; None
        where it has none."""
        import importlib

        name = cls._module_name(which)
        return importlib.import_module(name) if name else None

    @classmethod
    def _module_name(cls, which: str) -> str | None:
        """``<its package>.<name>``: the package of the class, or of the first base class that
        has one (a subclass written elsewhere, as a test does, keeps its format's modules)."""
        import importlib.util

        name = getattr(cls, which)
        if not name:
            return None
        for klass in cls.__mro__:
            if klass is Format or not (isinstance(klass, type) and issubclass(klass, Format)):
                continue
            try:
                if importlib.util.find_spec(f"{klass.__module__}.{name}") is not None:
                    return f"{klass.__module__}.{name}"
            except ModuleNotFoundError:  # its module is not a package
                continue
        raise ModuleNotFoundError(f"format {cls.name!r} declares a {which} module {name!r}, but its package "
                                  "has none")

    @classmethod
    def runtime_module(cls) -> ModuleType:
        return cls.module("runtime")

    @classmethod
    def runtime_file(cls) -> Path:
        """The runtime module's file: the device runner loads it (copied beside it on a device)."""
        import importlib.util

        return Path(importlib.util.find_spec(cls._module_name("runtime")).origin)

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
