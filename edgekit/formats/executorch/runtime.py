"""The ExecuTorch session: verify, eval, the ``--max-drop`` search and the device runner all run
``.pte`` programs through this one class (standard library, numpy and ExecuTorch's Python runtime,
which exchanges torch tensors, so torch comes with it; see ``edgekit/bench/runtime_kit.py``).

Float32 in and out, batch as exported: a program with a bounded dynamic batch takes any batch up
to its bound, a fixed one runs larger batches sample by sample. ``threads`` resets XNNPACK's thread
pool, which is one per process.
"""

from __future__ import annotations

try:
    import edgekit_runtime_kit as kit  # beside the device runner
except ImportError:
    from edgekit.bench import runtime_kit as kit

DTYPES = {0: "uint8", 1: "int8", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
          11: "bool"}  # ExecuTorch ScalarType codes


def input_is_dynamic(path) -> bool:
    """Whether the ``.pte``'s input has a bounded dynamic shape (the runtime's meta gives only
    sizes; the program's own serialisation says), False where exir is not installed (a device)."""
    try:
        from executorch.exir._serialize._program import deserialize_pte_binary
    except ImportError:
        return False
    with open(path, "rb") as f:
        pte = deserialize_pte_binary(f.read())
    plan = getattr(pte, "program", pte).execution_plan[0]
    tensor = plan.values[plan.inputs[0]].val
    return int(getattr(tensor, "shape_dynamism", 0)) != 0  # 0: STATIC


class Session(kit.FixedShapeSession):
    runtime = "executorch"
    device = "CPU XNNPACK"
    what = "the ExecuTorch program"

    def __init__(self, spec: dict):
        if spec.get("require_accelerator"):
            raise kit.RuntimeProblem("no_device", "edgekit runs ExecuTorch programs on the CPU (XNNPACK) "
                                     "only")
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        if spec.get("threads"):  # XNNPACK's thread pool (one per process)
            portable_lib._unsafe_reset_threadpool(int(spec["threads"]))
        self.torch = torch
        self.runtime_version = kit.version("executorch") or ""
        self.threads_used = portable_lib._threadpool_get_thread_count()
        from pathlib import Path

        self.method = Runtime.get().load_program(Path(spec["path"])).load_method("forward")
        meta = self.method.metadata
        self.metas = [meta.input_tensor_meta(i) for i in range(meta.num_inputs())]
        # the shapes, or their bounds where the batch is dynamic; inputs are positional (no names)
        self.fixed_shapes = tuple(tuple(int(d) for d in t.sizes()) for t in self.metas)
        self.input_names = tuple(f"input_{i}" for i in range(len(self.fixed_shapes)))
        if spec.get("batch"):
            self._at_batch(int(spec["batch"]), int(spec.get("batch_axis") or 0))
        else:
            self.dynamic_batch = input_is_dynamic(spec["path"])

    @property
    def info(self) -> dict:
        return {**super().info, "threads_used": self.threads_used}

    def _at_batch(self, batch: int, axis: int) -> None:
        """The runner: inputs of ``batch``. sizes() is the shape, or its bound where the program
        takes a dynamic batch: a smaller batch runs only there, so one trial run tells them apart."""
        self.batch = batch
        self.shapes = [[*s[:axis], batch, *s[axis + 1:]] if s else [] for s in self.fixed_shapes]
        bound = min((s[axis] for s in self.fixed_shapes if s), default=batch)
        if bound == 1 and batch != 1:
            raise kit.RuntimeProblem("bad_model", "this ExecuTorch program has a fixed batch of 1; bench "
                                     "it with --batch 1 or export it with --dynamic-batch")
        if batch > bound:
            raise kit.RuntimeProblem("bad_model", f"this ExecuTorch program takes at most batch {bound}; "
                                     f"bench it with --batch {bound} or less")
        if batch != bound:
            self.make_inputs(None)
            try:
                self.infer()
            except Exception as exc:
                raise kit.RuntimeProblem("bad_model", f"this ExecuTorch program has a fixed batch of "
                                         f"{bound}; bench it with --batch {bound}") from exc

    # ------------------------------------------------------------ edgekit's face

    def _invoke(self, x):
        xs = x if isinstance(x, tuple) else (x,)
        outputs = self.method.execute([self.torch.from_numpy(a) for a in xs])
        return kit.as_outputs([o.detach().numpy() for o in outputs])

    # ------------------------------------------------------------ the runner's face

    def make_inputs(self, rng) -> None:
        """Random inputs of the batch asked for (zeros when ``rng`` is None: the trial run)."""
        import numpy as np

        self.input_shapes = self.shapes
        self.inputs = []
        for tensor, shape in zip(self.metas, self.input_shapes):
            dtype = DTYPES.get(int(tensor.dtype()))
            if dtype is None:
                raise kit.RuntimeProblem("bad_model", "an input has ExecuTorch scalar type "
                                         f"{tensor.dtype()}, not supported")
            x = np.zeros(shape, dtype) if rng is None else kit.random_input(shape, dtype, rng)
            self.inputs.append(self.torch.from_numpy(x))

    def infer(self) -> None:
        self.method.execute(self.inputs)

    def run_once(self, arrays):
        if arrays is not None:
            self.inputs = [self.torch.from_numpy(a) for a in arrays]
        return [o.numpy().copy() for o in self.method.execute(self.inputs)], [t.numpy() for t in self.inputs]
