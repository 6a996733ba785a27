"""Three run directories for looking at the report's accuracy-against-latency plot (report_plot.md).

Usage: python make_fixtures.py REAL_RUN OUT_DIR. REAL_RUN: a run exported with the four formats,
--int8, eval and bench (the main job's own run, `make gate` -> runs/ci-gate). Writes
OUT_DIR/lenet5-9 (the real run's manifest unchanged: nine artefacts whose latencies lie within a
factor 3 and whose accuracies are all equal), OUT_DIR/resnet50-9 (the same manifest with the
latencies of benchmarks/results/latency.md's ResNet-50 row and ImageNet-like accuracies, the int8
ones 0.1-0.6 point lower) and OUT_DIR/resnet50-4 (PyTorch, ONNX fp32/int8, OpenVINO int8).
Only the manifest is copied: the report reads nothing else.
"""

import json
import sys
from pathlib import Path

RESNET = {  # (format, precision): (p50 ms, top-1)
    ("pytorch", "fp32"): (67.54, 0.7613), ("onnx", "fp32"): (42.62, 0.7613), ("onnx", "int8"): (34.46, 0.7589),
    ("tflite", "fp32"): (43.13, 0.7613), ("tflite", "int8"): (12.20, 0.7552),
    ("openvino", "fp32"): (22.74, 0.7612), ("openvino", "int8"): (11.55, 0.7601),
    ("executorch", "fp32"): (41.36, 0.7613), ("executorch", "int8"): (15.20, 0.7570),
}


def write(manifest: dict, folder: Path, keep=None) -> None:
    m = json.loads(json.dumps(manifest))
    if keep is not None:
        m["artefacts"] = [a for a in m["artefacts"] if (a["format"], a["precision"]) in keep]
        m["eval"]["results"] = [r for r in m["eval"]["results"] if (r["format"], r["precision"]) in keep]
        for b in m["bench"].values():
            b["results"] = [r for r in b["results"] if (r["format"], r["precision"]) in keep]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps(m, indent=1))


def main(real: Path, out: Path) -> None:
    m = json.loads((real / "manifest.json").read_text())
    write(m, out / "lenet5-9")
    m["model"]["name"] = "resnet50"
    key = m["eval"]["metric"]
    for r in m["eval"]["results"]:
        r[key] = RESNET[(r["format"], r["precision"])][1]
        r["drop_pp"] = 100 * (RESNET[("pytorch", "fp32")][1] - r[key])
    for b in m["bench"].values():
        for r in b["results"]:
            r["p50_ms"] = RESNET[(r["format"], r["precision"])][0]
            r["p99_ms"] = 1.1 * r["p50_ms"]
    write(m, out / "resnet50-9")
    write(m, out / "resnet50-4", keep={("pytorch", "fp32"), ("onnx", "fp32"), ("onnx", "int8"),
                                       ("openvino", "int8")})


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
