"""What every format's runtime module (``edgekit/formats/<name>/runtime.py``) shares; it lives
beside the device runner.

A runtime module holds the one session class of its format: edgekit's verify, eval and
``--max-drop`` search open artefacts with it in this process, and the device runner
(``edgekit/bench/runner.py``) opens them with it on a device. So this file, like the runtime
modules, imports only the standard library and numpy (inside functions): it is copied to devices
beside the runner as ``edgekit_runtime_kit.py``, and the runtime modules import it under that name
there (``import edgekit_runtime_kit as kit``) or as ``edgekit.bench.runtime_kit`` here.

A session is built from a spec (a dict, the runner's JSON spec): ``path``; ``threads`` (None: the
runtime's default); ``exact`` (keep fp32 numerics exact: verify's fp32 check); for the runner also
``batch``, ``batch_axis``, ``runtime_options``, ``require_accelerator``, ``runtimes`` and the
format's target settings. Its two faces:

- edgekit's: ``run(x)`` takes and returns float32 arrays (a tuple for several inputs or outputs,
  in the model's order; int8 inputs and outputs quantized with each tensor's own scale and zero
  point), ``input_info()`` for the manifest;
- the runner's: ``info`` (runtime, version, device), ``make_inputs(rng)`` (random inputs of the
  spec's batch, kept in ``input_shapes``), ``infer()`` (the timed call) and ``run_once(arrays)``
  ((outputs, inputs) of one more run, in the runtime's own dtypes).
"""

from __future__ import annotations

import os


class RuntimeProblem(Exception):
    """Why an artefact cannot be opened or run; ``kind`` is "no_runtime", "no_device", "bad_model"
    or "bad_input" (the device runner reports it as its result's kind)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def version(dist: str) -> str | None:
    try:
        from importlib.metadata import version as _version

        return _version(dist)
    except Exception:
        return None


def env_default(name: str, value: str) -> None:
    os.environ.setdefault(name, value)


def random_input(shape, dtype_name: str, rng, quant=None):
    """An input of ``shape``: N(0, 1) for floats (quantized for an int8 input with ``quant`` =
    (scale, zero point)), zeros for integers and booleans."""
    import numpy as np

    dtype = np.dtype(dtype_name)
    if quant and quant[0]:
        scale, zero = quant
        info = np.iinfo(dtype)
        q = np.round(rng.standard_normal(shape) / scale + zero)
        return np.clip(q, info.min, info.max).astype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind in "iub":
        return np.zeros(shape, dtype)
    raise RuntimeProblem("bad_model", f"cannot make inputs of type {dtype_name}")


def fix_shape(name: str, shape, batch: int, fmt: str, axis: int = 0) -> list[int]:
    """A concrete input shape: the batch dimension (``axis``) set to ``batch``; other dims must be static."""
    out = []
    for i, dim in enumerate(shape):
        if i == axis:
            out.append(batch)
        elif isinstance(dim, int) and dim > 0:
            out.append(dim)
        else:
            raise RuntimeProblem("bad_model", f"input {name!r} of this {fmt} file has a dynamic dimension "
                                 f"{i} ({dim}); export it with a fixed input shape")
    return out


def shape_info(shape: list, max_batch: int | None = None, inputs: list | None = None) -> dict:
    """What the manifest records of an artefact's input: its (first input's) shape, "batch" where
    dynamic; for several inputs also ``inputs``: [{"name", "shape"}, ...] of them all."""
    dynamic = bool(shape) and not isinstance(shape[0], int)
    info: dict = {"input_shape": ["batch", *shape[1:]] if dynamic else list(shape), "dynamic_batch": dynamic}
    if inputs and len(inputs) > 1:
        info["inputs"] = [{"name": name, "shape": ["batch", *s[1:]] if dynamic else list(s)}
                          for name, s in inputs]
    return {**info, "max_batch": max_batch} if dynamic and max_batch else info


def as_outputs(outputs: list):
    """A runtime's outputs as ``run`` returns them: the float32 array of a one-output artefact,
    else a tuple of float32 arrays in the artefact's output order."""
    import numpy as np

    arrays = tuple(np.asarray(o, dtype=np.float32) for o in outputs)
    return arrays[0] if len(arrays) == 1 else arrays


def as_inputs(x) -> tuple:
    """``run``'s argument as a tuple of contiguous float32 arrays."""
    import numpy as np

    return tuple(np.ascontiguousarray(a, dtype=np.float32) for a in (x if isinstance(x, tuple) else (x,)))


def quantize(x, dtype_name: str, quant):
    """float32 -> ``dtype_name`` with the tensor's (scale, zero point); a cast where not quantized."""
    import numpy as np

    dtype = np.dtype(dtype_name)
    scale, zero_point = quant or (0.0, 0)
    if dtype.kind == "f" or scale == 0:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    q = np.round(x / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(y, quant):
    import numpy as np

    scale, zero_point = quant or (0.0, 0)
    if y.dtype.kind == "f" or scale == 0:
        return y.astype(np.float32)
    return ((y.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)


# edgekit.layout's take and concat, repeated here: this file must run without edgekit on a device
def _take(x, index):
    return tuple(a[index] for a in x) if isinstance(x, tuple) else x[index]


def _concat(parts: list):
    import numpy as np

    if parts and isinstance(parts[0], tuple):
        return tuple(np.concatenate([p[i] for p in parts], axis=0) for i in range(len(parts[0])))
    return np.concatenate(parts, axis=0)


class Session:
    """The base of every format's session (see the module's docstring)."""

    runtime: str = ""
    runtime_version: str = ""
    device: str = "CPU"
    input_shapes: list = []

    def run(self, x):
        raise NotImplementedError

    def input_info(self) -> dict:
        return {}

    @property
    def info(self) -> dict:
        return {"runtime": self.runtime, "runtime_version": self.runtime_version, "device": self.device}


class FixedShapeSession(Session):
    """A session whose artefact has fixed input shapes (``fixed_shapes``, one per input). With a
    fixed batch, a batch that differs from a batch-1 artefact's runs one sample at a time; with
    ``dynamic_batch`` any batch up to the first dimension (the bound) runs at once, larger ones in
    chunks of the bound. Subclasses define ``_invoke``."""

    fixed_shapes: tuple = ()
    input_names: tuple = ()
    dynamic_batch: bool = False
    what: str = "model"  # for the error: "the TFLite model", "the ExecuTorch program"

    @property
    def input_shape(self) -> tuple:
        """The first input's shape (its bound where the batch is dynamic)."""
        return tuple(self.fixed_shapes[0])

    def input_info(self) -> dict:
        first = self.fixed_shapes[0]
        shape = ["batch" if self.dynamic_batch else first[0], *first[1:]]
        return shape_info(shape, first[0], list(zip(self.input_names, self.fixed_shapes)))

    def run(self, x):
        xs = as_inputs(x)
        shapes = self.fixed_shapes
        packed = xs if isinstance(x, tuple) else xs[0]
        if len(xs) == len(shapes) and all(a.shape == tuple(s) for a, s in zip(xs, shapes)):
            return self._invoke(packed)
        if self.dynamic_batch and len(xs) == len(shapes) and all(
                a.ndim == len(s) and all(d <= b for d, b in zip(a.shape, s)) for a, s in zip(xs, shapes)):
            return self._invoke(packed)  # a bounded dynamic shape (batch or --dynamic-axis) takes it
        n, bound = len(xs[0]), shapes[0][0]
        fits = len(xs) == len(shapes) and all(tuple(a.shape[1:]) == tuple(s[1:]) and len(a) == n
                                              for a, s in zip(xs, shapes))
        if fits and self.dynamic_batch and n <= bound:
            return self._invoke(packed)
        if fits and (self.dynamic_batch or bound == 1):
            return _concat([self._invoke(_take(packed, slice(i, i + bound))) for i in range(0, n, bound)])
        got = " and ".join(str(list(a.shape)) for a in xs)
        want = " and ".join(str(list(s)) for s in shapes)
        raise RuntimeProblem("bad_input", f"input of shape {got} does not fit {self.what}'s input {want}")

    def _invoke(self, x):
        raise NotImplementedError
