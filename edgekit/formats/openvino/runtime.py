"""The OpenVINO session: verify, eval, the ``--max-drop`` search and the device runner all run IRs
(``.xml`` + ``.bin``) through this one class (standard library, numpy and openvino only; see
``edgekit/bench/runtime_kit.py``).

Compiled with ``PERFORMANCE_HINT=LATENCY`` on the spec's ``openvino_device`` (CPU by default) and
``INFERENCE_NUM_THREADS`` when threads are given; ``exact`` (verify's and eval's fp32) instead pins
``INFERENCE_PRECISION_HINT=f32`` alone (on CPUs with AMX or avx512_bf16 OpenVINO otherwise runs
fp32 IRs in bf16). The runner's spec
(with a ``batch``) reshapes the IR to that batch; edgekit's own use keeps the IR's shapes.
"""

from __future__ import annotations

try:
    import edgekit_runtime_kit as kit  # beside the device runner
except ImportError:
    from edgekit.bench import runtime_kit as kit


def dimension(d) -> int | str:
    """A dimension as the manifest records it: its size, "MIN..MAX" where bounded, "?" where not."""
    if d.is_static:
        return d.get_length()
    return f"{d.get_min_length()}..{d.get_max_length()}" if d.get_max_length() >= 0 else "?"


class Session(kit.Session):
    runtime = "openvino"

    def __init__(self, spec: dict):
        import openvino as ov

        core = ov.Core()
        device = spec.get("openvino_device") or "CPU"
        devices = core.available_devices
        if device.split(".")[0].split(":")[0] not in {d.split(".")[0] for d in devices} and device != "AUTO":
            raise kit.RuntimeProblem("no_device", f"OpenVINO {ov.__version__} sees devices "
                                     f"{', '.join(devices)}, not {device}")
        model = core.read_model(str(spec["path"]))
        self.shapes = {}
        if spec.get("batch"):  # the runner: every input at the spec's batch
            self.batch = int(spec["batch"])
            for port in model.inputs:
                dims = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
                self.shapes[port.any_name] = kit.fix_shape(port.any_name, dims, self.batch, "OpenVINO",
                                                           int(spec.get("batch_axis") or 0))
            static = {p.any_name: list(p.get_partial_shape().to_shape()) for p in model.inputs
                      if p.get_partial_shape().is_static}
            if static != self.shapes:
                model.reshape({name: ov.PartialShape(s) for name, s in self.shapes.items()})
        # exact: only the f32 pin, the plugin's defaults otherwise (as verify always ran; the latency
        # hint changes how a recurrent op's work is split, and with it the last bits of its outputs)
        config = {"INFERENCE_PRECISION_HINT": "f32"} if spec.get("exact") else {"PERFORMANCE_HINT": "LATENCY"}
        if spec.get("threads") and device.startswith("CPU"):
            config["INFERENCE_NUM_THREADS"] = int(spec["threads"])
        config.update(spec.get("runtime_options") or {})
        self.compiled = core.compile_model(model, device, config)
        self.request = self.compiled.create_infer_request()
        self.runtime_version = ov.__version__
        try:
            self.device = ",".join(self.compiled.get_property("EXECUTION_DEVICES"))
        except Exception:
            self.device = device
        self._device = device

    @property
    def info(self) -> dict:
        found = {**super().info, "inference_precision": self.precision}
        try:
            found["streams"] = int(self.compiled.get_property("NUM_STREAMS"))
            if self._device.startswith("CPU"):
                found["threads_used"] = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        except Exception:
            pass
        return found

    @property
    def precision(self) -> str | None:
        try:
            hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
            return hint.to_string() if hasattr(hint, "to_string") else str(hint)
        except Exception:
            return None

    # ------------------------------------------------------------ edgekit's face

    def run(self, x):
        out = self.request.infer(dict(enumerate(kit.as_inputs(x))))
        return kit.as_outputs([out[port] for port in self.compiled.outputs])

    def input_info(self) -> dict:
        shapes = [[dimension(d) for d in port.get_partial_shape()] for port in self.compiled.inputs]
        names = [port.any_name for port in self.compiled.inputs]
        return kit.shape_info(shapes[0], inputs=list(zip(names, shapes)))

    # ------------------------------------------------------------ the runner's face

    def make_inputs(self, rng) -> None:
        import openvino as ov

        self.input_shapes = []
        for i, port in enumerate(self.compiled.inputs):
            shape = self.shapes[port.any_name]
            dtype = port.get_element_type().to_dtype().name
            self.request.set_input_tensor(i, ov.Tensor(kit.random_input(shape, dtype, rng)))
            self.input_shapes.append(shape)

    def infer(self) -> None:
        self.request.infer()

    def run_once(self, arrays):
        import openvino as ov

        for i, array in enumerate(arrays or []):
            self.request.set_input_tensor(i, ov.Tensor(array))
        self.request.infer()
        inputs = [self.request.get_input_tensor(i).data.copy() for i in range(len(self.compiled.inputs))]
        outputs = [self.request.get_output_tensor(i).data.copy() for i in range(len(self.compiled.outputs))]
        return outputs, inputs
