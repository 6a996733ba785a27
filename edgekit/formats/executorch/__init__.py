"""ExecuTorch (``.pte``): PyTorch's own edge runtime, lowered to the XNNPACK backend.

fp32: ``torch.export`` then ``to_edge_transform_and_lower`` with the XNNPACK partitioner. int8:
PT2E with ExecuTorch's ``XNNPACKQuantizer`` on the shared calibration samples (weights int8
symmetric per-channel, activations int8 per-tensor), lowered the same way; inputs and outputs
stay float32 (the quantize/dequantize at the edges run inside the delegate). Models that static
int8 does not fit (the LSTM) get XNNPACK's dynamic int8: int8 per-channel weights of every linear
layer, the LSTM's gates included (the LSTM is decomposed into linear layers first), activations
quantized per inference.

An op XNNPACK does not take runs on ExecuTorch's portable kernels, which are much slower. Each
artefact's ``details`` (recorded in the manifest) therefore counts the ops lowered to XNNPACK at
export and lists the portable kernel calls read back from the ``.pte`` itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekit.errors import DataError, UsageError
from edgekit.formats._util import calibration_batches, check_module_names
from edgekit.formats.base import (
    Format,
    Int8Options,
    Int8Result,
    Int8Share,
    scheme_options,
)
from edgekit.formats.executorch.share import _kernel_calls
from edgekit.layout import count

if TYPE_CHECKING:
    import numpy as np

    from edgekit.models.spec import LoadedModel

BACKEND = "XnnpackBackend"


class ExecuTorchFormat(Format):
    name = "executorch"
    extension = ".pte"
    extra = "executorch"
    requires = (("executorch.exir", "executorch"),)
    tools = ("executorch", "torchao")
    runtimes = ("executorch",)
    colour = "#2ca02c"
    probe = {"executorch": ("executorch", ("executorch",))}
    device_packages = ()  # PyPI's aarch64 torch, which ExecuTorch's runtime needs, is a CUDA build
    compat = "compat"
    export_cost = 4.0  # resnet50 --int8: 47 s against ONNX's 13 s (issue 13)

    def __init__(self, job=None) -> None:
        super().__init__(job)
        # Caches of this process, never pickled (``__getstate__``): what one export learnt that its
        # next step reuses in the same process. A worker or Ray trial without them recomputes them.
        self._lowered: dict[str, dict] = {}  # sha256 of a written .pte -> what lowering delegated
        # (id of the module, dynamic batch) -> (the fp32 capture as a module, capture mode): static
        # int8 quantizes the very graph fp32 lowered, so one torch.export serves both (issue 13)
        self._captured: dict[tuple[int, bool], tuple[Any, str]] = {}
        self.axes_note = ""  # torch.export fixed the job's --dynamic-axis in this model

    def __getstate__(self) -> dict:
        return {"job": self.job}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["job"])

    def written_axes(self) -> tuple:
        """The job's variable axes, none where torch.export fixed them in this model."""
        return () if self.axes_note else self.dynamic_axes

    def export_fp32(self, model: LoadedModel, path: Path) -> Path:
        from edgekit.formats.executorch import convert

        try:
            program, capture = convert._capture(model.module.eval(), model.example_inputs(),
                                                self.dynamic_batch, self.written_axes())
        except Exception as exc:  # noqa: BLE001 - torch.export fixed a --dynamic-axis: keep its size
            if not self.written_axes() or "specialized" not in str(exc):
                raise
            names = ", ".join(a.name for a in self.dynamic_axes)
            self.axes_note = (f"torch.export fixes {names} to the size of --input-shape in this model "
                              "(recurrent layers are unrolled step by step): the ExecuTorch artefacts keep "
                              "it")
            program, capture = convert._capture(model.module.eval(), model.example_inputs(),
                                                self.dynamic_batch)
        if model.static_int8:  # taken before lowering, which may rewrite the program
            self._captured[(id(model.module), self.dynamic_batch)] = (program.module(), capture)
        self._write(program, Path(path))
        return Path(path)

    def export_int8(self, model: LoadedModel, fp32_path: Path, calib: np.ndarray, path: Path,
                    options: Int8Options | None = None) -> Int8Result:
        from edgekit.formats.executorch import quantize

        options = options or Int8Options()
        if options.method not in quantize.METHODS:
            raise UsageError(f"unknown ExecuTorch int8 method {options.method!r}; "
                             f"known: {', '.join(quantize.METHODS)}")
        check_module_names(model, options.exclude)
        dynamic = not model.static_int8
        if not dynamic and count(calib) == 0:
            raise DataError("static int8 needs calibration samples, got none")
        example = model.example_inputs()
        samples = [example] if dynamic else calibration_batches(calib, model)
        captured = self._captured.pop((id(model.module), self.dynamic_batch), None)
        program, capture = quantize._quantize(model.module.eval(), example, samples, options, dynamic,
                                     self.dynamic_batch, captured, self.written_axes())
        self._write(program, Path(path))
        if dynamic:
            scheme = {"type": "dynamic",
                      "weights": "int8 symmetric per-channel (every linear, incl. LSTM gates)",
                      "activations": "float32; quantized to int8 per inference by XNNPACK",
                      "calibration_samples": 0}
        else:
            scheme = {"type": "static", "weights": "int8 symmetric per-channel",
                      "activations": quantize.METHODS[options.method], "calibration_samples": count(calib)}
        tool = "ExecuTorch XNNPACKQuantizer PT2E" + (" (dynamic)" if dynamic else "")
        scheme.update(io="float32", tool=tool, export=capture, **scheme_options(options))
        return Int8Result(path=Path(path), scheme=scheme)

    def remedies(self, model: LoadedModel) -> list[Int8Options]:
        from edgekit.formats.executorch import quantize

        return [Int8Options("minmax", note=quantize.METHODS["minmax"])] if model.static_int8 else []

    def int8_share(self, path: Path) -> Int8Share:
        from edgekit.formats.executorch.share import executorch_int8_share

        return executorch_int8_share(Path(path))

    def details(self, path: Path) -> dict:
        """Ops lowered to XNNPACK (from this export) and portable kernel calls (read from the file)."""
        data = Path(path).read_bytes()
        portable, delegate_calls = _kernel_calls(data)
        found = {"backend": BACKEND, "delegate_calls": delegate_calls, "portable_kernels": portable}
        lowered = self._lowered.get(hashlib.sha256(data).hexdigest())
        if lowered:
            found.update(lowered)
            total = lowered["delegated_ops"] + lowered["portable_ops"]
            share = f"{lowered['delegated_share']:.0%} of {total} ops"
        else:
            share = f"{delegate_calls} delegate calls"
        slow = ", ".join(f"{op} x{n}" for op, n in sorted(portable.items())) or "none"
        found["summary"] = f"XNNPACK runs {share}; portable kernels: {slow}"
        if self.axes_note:
            found["dynamic_axes"] = self.axes_note
            found["summary"] += f"\n   note: {self.axes_note}"
        return found

    def _write(self, program: Any, path: Path) -> None:
        """Lower ``program`` to XNNPACK, write ``path``, remember the delegation (for ``details``)."""
        from edgekit.formats.executorch.convert import lower

        sha, lowered = lower(program, path)
        self._lowered[sha] = lowered



