"""OpenVINO IR: openvino.convert_model + save_model (fp32 weights kept), int8 with NNCF."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.errors import require
from edgekit.formats._util import quiet, versions
from edgekit.formats.base import Format, Int8Result, Session


class OpenVinoSession(Session):
    runtime = "openvino"

    def __init__(
        self,
        path: Path,
        threads: int | None = None,
        device: str = "CPU",
        precision: str | None = None,
    ):
        ov = require("openvino", "openvino", "openvino")
        core = ov.Core()
        config: dict = {}
        if precision:
            # On CPUs with AMX/avx512_bf16 OpenVINO runs fp32 IRs in bf16 unless pinned to f32.
            config["INFERENCE_PRECISION_HINT"] = precision
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.compiled = core.compile_model(core.read_model(str(path)), device, config)
        self.request = self.compiled.create_infer_request()
        self.runtime_version = ov.get_version()
        self.device = device
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)

    def run(self, x: np.ndarray) -> np.ndarray:
        out = self.request.infer({0: np.ascontiguousarray(x, np.float32)})
        return np.asarray(out[self.compiled.output(0)], dtype=np.float32)


class OpenVinoFormat(Format):
    name = "openvino"
    extension = ".xml"
    extra = "openvino"
    requires = (("openvino", "openvino"), ("nncf", "nncf"))

    def export_fp32(self, model, path: Path) -> Path:
        ov = require("openvino", "openvino", "openvino")
        import torch

        example = model.example_input()
        with quiet(), torch.no_grad():
            ov_model = ov.convert_model(model.module, example_input=example)
            ov_model.reshape(list(example.shape))
            ov.save_model(ov_model, str(path), compress_to_fp16=False)
        return path

    def export_int8(self, model, fp32_path: Path, calib: np.ndarray, path: Path) -> Int8Result:
        ov = require("openvino", "openvino", "openvino")
        nncf = require("nncf", "nncf", "openvino")
        ov_model = ov.Core().read_model(str(fp32_path))
        with quiet():
            if model.static_int8:
                dataset = nncf.Dataset([x[None].astype(np.float32) for x in calib])
                q_model = nncf.quantize(ov_model, dataset, subset_size=len(calib))
                scheme = {
                    "type": "static",
                    "weights": "int8 symmetric per-channel",
                    "activations": "int8 per-tensor (NNCF default preset)",
                    "io": "float32",
                    "calibration_samples": int(len(calib)),
                    "tool": "nncf.quantize",
                }
            else:
                q_model = nncf.compress_weights(ov_model, mode=nncf.CompressWeightsMode.INT8_ASYM)
                scheme = {
                    "type": "weight-only",
                    "weights": "int8 asymmetric per-channel",
                    "activations": "float (weights decompressed at run time)",
                    "io": "float32",
                    "tool": "nncf.compress_weights",
                }
            ov.save_model(q_model, str(path), compress_to_fp16=False)
        return Int8Result(path, scheme)

    def open(self, path: Path, threads: int | None = None, precision: str | None = None) -> Session:
        return OpenVinoSession(path, threads=threads, precision=precision)

    def open_exact(self, path: Path) -> Session:
        return self.open(path, precision="f32")

    def tool_versions(self) -> dict[str, str]:
        return versions("openvino", "nncf")

    def files(self, path: Path) -> list[Path]:
        return [path, path.with_suffix(".bin")]
