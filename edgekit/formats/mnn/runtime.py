"""The MNN session: verify, eval, the ``--max-drop`` search and the device runner all run ``.mnn``
files through this one class (standard library, numpy and MNN's Python runtime only; see
``edgekit/bench/runtime_kit.py``).

MNN's Express module API (``MNN.nn.load_module_from_file``) with a runtime manager of
``numThread`` threads and a ``precision``: "high" keeps fp32 arithmetic (verify's ``exact`` and the
default); a target profile's ``[mnn] precision = "low"`` lets MNN compute in fp16 where the CPU has
fp16 arithmetic (ARMv8.2 and later; a CPU without it computes in fp32). MNN stores the batch the
graph was converted at (1), and a graph whose reshapes were traced at that batch fails at another
one, where MNN crashes the process instead of raising: so inputs are checked against the stored
shapes first and a larger batch runs one sample at a time (``kit.FixedShapeSession``). MNN prints
a banner of the CPU's features on file descriptor 1 when it is imported: the import is done with
fd 1 pointed at /dev/null.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

try:
    import edgekit_runtime_kit as kit  # beside the device runner
except ImportError:
    from edgekit.bench import runtime_kit as kit


@contextmanager
def quiet_fd1():
    """C++ writes to file descriptor 1 go to /dev/null (MNN's banner, "MNN use high precision")."""
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a closed stdout: nothing to flush
        pass
    saved, null = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)


def mnn():
    """(MNN, MNN.nn, MNN.expr), imported without the banner."""
    if "MNN" not in sys.modules:
        with quiet_fd1():
            import MNN  # noqa: F401
            import MNN.expr  # noqa: F401
            import MNN.nn  # noqa: F401
    import MNN
    import MNN.expr as expr
    import MNN.nn as nn

    return MNN, nn, expr


class Session(kit.FixedShapeSession):
    runtime = "MNN"
    what = "the MNN model"

    def __init__(self, spec: dict):
        if spec.get("require_accelerator"):
            raise kit.RuntimeProblem("no_device", "edgekit runs MNN on the CPU only")
        _, nn, expr = mnn()
        self.expr = expr
        self.runtime_version = kit.version("MNN") or ""
        self.precision = "high" if spec.get("exact") else (spec.get("mnn_precision") or "high")
        self.threads = int(spec.get("threads") or os.cpu_count() or 1)  # none given: one per core
        path = str(spec["path"])
        with quiet_fd1():
            graph = expr.load_as_dict(path)
            inputs, outputs = expr.get_inputs_and_outputs(graph)
            self.input_names = list(inputs)
            self.fixed_shapes = tuple(tuple(int(d) for d in v.shape) for v in inputs.values())
            self.dtypes = [_dtype_name(v) for v in inputs.values()]
            manager = nn.create_runtime_manager(({"backend": "CPU", "numThread": self.threads,
                                                  "precision": self.precision},))
            self.module = nn.load_module_from_file(path, self.input_names, [], runtime_manager=manager)
        self.output_names = list(self.module.get_info().get("outputNames") or list(outputs))
        self.device = f"CPU ({self.threads} threads, precision {self.precision})"
        self.input_names = tuple(self.input_names)
        self.batch = int(spec.get("batch") or 1)
        self.axis = int(spec.get("batch_axis") or 0)
        stored = self.fixed_shapes[0][self.axis] if self.fixed_shapes and self.fixed_shapes[0] else 1
        if self.batch != stored:
            raise kit.RuntimeProblem("bad_model", f"this MNN file has a fixed batch of {stored}; bench it "
                                     f"with --batch {stored}")

    @property
    def info(self) -> dict:
        return {**super().info, "inference_precision": self.precision, "threads_used": self.threads}

    def _forward(self, arrays):
        expr = self.expr
        xs = [expr.const(a, list(a.shape), expr.NCHW) for a in arrays]  # copies the buffers
        ys = self.module.forward(xs if len(xs) > 1 else xs[0])
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        out = []
        for y in ys:
            if y.data_format == expr.NC4HW4:
                y = expr.convert(y, expr.NCHW)
            out.append(y.read().copy())
        return out

    # ------------------------------------------------------------ edgekit's face

    def _invoke(self, x):  # shapes checked by FixedShapeSession.run
        return kit.as_outputs(self._forward(x if isinstance(x, tuple) else (x,)))

    # ------------------------------------------------------------ the runner's face

    def make_inputs(self, rng) -> None:
        self.inputs = []
        for shape, dtype in zip(self.fixed_shapes, self.dtypes):
            self.inputs.append(kit.random_input(list(shape), dtype, rng))
        self.input_shapes = [list(a.shape) for a in self.inputs]

    def infer(self) -> None:
        self._forward(self.inputs)

    def run_once(self, arrays):
        if arrays is not None:
            self.inputs = list(arrays)
        return self._forward(self.inputs), list(self.inputs)


def _dtype_name(var) -> str:
    text = str(getattr(var, "dtype", "float")).lower()
    return "int32" if "int" in text else "float32"
