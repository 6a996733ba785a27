"""A fifth format is one folder plus one registration line: a toy format written as a contributor
would (a package in a temporary folder: its facts, its one session in ``runtime.py``, a ``compat``
and an ``inspect`` module), registered, and seen by every command: export (in the export worker),
bench on this machine and over SSH (its runtime module shipped beside the runner), check (the
probe asks for the runtime it declares), eval, inspect, report and gate.

Its artefact is an ONNX graph in a ``.toy`` file, int8 by onnxruntime's dynamic quantizer, run by
onnxruntime in its own session: real files and a real runtime, under a name edgekit has never seen.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from edgekit import formats
from edgekit.formats import FORMATS
from tests.conftest import read_manifest, run_cli

PACKAGE = {
    "__init__.py": '''
        from pathlib import Path

        from edgekit.formats.base import Format, Int8Result


        class ToyFormat(Format):
            name = "toy"
            extension = ".toy"
            default = False
            tools = ("onnxruntime",)
            runtimes = ("onnxruntime",)
            probe = {"onnxruntime": ("onnxruntime", ("onnxruntime",))}
            runtime_labels = {"onnxruntime": "toyrt"}
            colour = "#123456"
            compat = "compat"
            inspect = "inspect"

            def export_fp32(self, model, path):
                from edgekit.formats.onnx.convert import export_fp32

                return export_fp32(model, Path(path), self.job)

            def export_int8(self, model, fp32_path, calib, path, options=None):
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantize_dynamic(str(fp32_path), str(path), weight_type=QuantType.QInt8)
                return Int8Result(Path(path), {"type": "dynamic", "tool": "onnxruntime quantize_dynamic"})

            def int8_share(self, path):
                from edgekit.formats.onnx.quantize import onnx_int8_share

                return onnx_int8_share(Path(path))
    ''',
    "runtime.py": '''
        try:
            import edgekit_runtime_kit as kit
        except ImportError:
            from edgekit.bench import runtime_kit as kit


        class Session(kit.FixedShapeSession):
            runtime = "onnxruntime"
            what = "the toy model"

            def __init__(self, spec):
                import onnxruntime as ort

                options = ort.SessionOptions()
                if spec.get("threads"):
                    options.intra_op_num_threads = int(spec["threads"])
                self.session = ort.InferenceSession(str(spec["path"]), options,
                                                    providers=["CPUExecutionProvider"])
                self.runtime_version = ort.__version__
                self.input_names = tuple(i.name for i in self.session.get_inputs())
                self.fixed_shapes = tuple(tuple(i.shape) for i in self.session.get_inputs())

            def _invoke(self, x):
                xs = x if isinstance(x, tuple) else (x,)
                return kit.as_outputs(self.session.run(None, dict(zip(self.input_names, xs))))

            def make_inputs(self, rng):
                self.feed = {n: kit.random_input(list(s), "float32", rng)
                             for n, s in zip(self.input_names, self.fixed_shapes)}
                self.input_shapes = [list(s) for s in self.fixed_shapes]

            def infer(self):
                self.session.run(None, self.feed)

            def run_once(self, arrays):
                feed = dict(zip(self.feed, arrays)) if arrays is not None else self.feed
                return self.session.run(None, feed), list(feed.values())
    ''',
    "compat.py": '''
        from pathlib import Path


        def needs(path, tools=None):
            return {"bytes": Path(path).stat().st_size}


        def summary(needs):
            return f"{needs['bytes']} bytes of toy"


        def verdict(needs, runtime):
            return True, f"onnxruntime {runtime['version']} reads toy files", ""
    ''',
    "inspect.py": '''
        import numpy as np

        from edgekit.formats import get_format
        from edgekit.inspect import LayerError


        def errors(model, fp32_path, int8_path, x):
            """One 'layer': the whole model's output, int8 against fp32."""
            fmt = get_format("toy")
            ref, out = fmt.open(fp32_path).run(x), fmt.open(int8_path).run(x)
            noise = float(np.sum((ref - out) ** 2)) or 1e-30
            sqnr = 10 * np.log10(float(np.sum(ref ** 2)) / noise)
            cosine = float(np.sum(ref * out) / (np.linalg.norm(ref) * np.linalg.norm(out)))
            return [LayerError("output", "Toy", None, sqnr, cosine)]
    ''',
}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The package, importable and registered (a copy of the registry: gone after this module)."""
    folder = tmp_path_factory.mktemp("toy-src")
    (folder / "toyfmt").mkdir()
    for name, text in PACKAGE.items():
        (folder / "toyfmt" / name).write_text(textwrap.dedent(text).lstrip())
    sys.path.insert(0, str(folder))
    saved = dict(FORMATS._items)
    formats.register("toyfmt:ToyFormat")  # the one registration line
    yield folder
    FORMATS._items = saved
    sys.path.remove(str(folder))
    for name in [m for m in sys.modules if m == "toyfmt" or m.startswith("toyfmt.")]:
        sys.modules.pop(name)


@pytest.fixture(scope="module")
def run(toy, tmp_path_factory, lenet5_ckpt):
    out = tmp_path_factory.mktemp("toy") / "run"
    r = run_cli("export", lenet5_ckpt.path, "--to", "toy", "--int8", "--calib-size", "8", "--eval", "digits",
                "--out", out)
    assert r.code == 0, r.stdout + r.stderr
    return out, r


def test_export_writes_verified_toy_artefacts(run):
    out, r = run
    arts = {a["precision"]: a for a in read_manifest(out)["artefacts"]}
    assert arts["fp32"]["path"] == "toy/model.fp32.toy" and arts["fp32"]["verify"]["passed"]
    assert arts["int8"]["verify"]["passed"] and arts["int8"]["int8_share"]["weights"] == 1.0
    rows = read_manifest(out)["eval"]["results"]
    toy = {row["precision"]: row["top1"] for row in rows if row["format"] == "toy"}
    assert toy["int8"] > 0.9
    assert any(line.split()[:3] == ["ok", "toy", "int8"] for line in r.stdout.splitlines())


def test_bench_check_eval_inspect_report_and_gate_see_it(run, tmp_path):
    out, _ = run
    r = run_cli("bench", out, "--iters", "3", "--warmup", "0", "--json")
    assert r.code == 0, r.stderr
    rows = {x["precision"]: x for x in json.loads(r.stdout)["results"]}
    assert rows["int8"]["status"] == "ok" and rows["int8"]["runtime"] == "onnxruntime"
    r = run_cli("bench", out, "--iters", "3", "--warmup", "0")
    assert "toyrt" in r.stdout  # the format's own label for its runtime
    r = run_cli("check", out, "--json")
    assert r.code == 0, r.stderr
    checked = [row for row in json.loads(r.stdout)["results"] if row["format"] == "toy"]
    assert len(checked) == 2, checked
    assert all(row["ok"] and "bytes of toy" in row["summary"] for row in checked), checked
    r = run_cli("eval", out, "--dataset", "digits", "--json")
    assert r.code == 0 and {row["format"] for row in json.loads(r.stdout)["results"]} >= {"toy"}
    r = run_cli("inspect", out, "--formats", "toy", "--samples", "4")
    assert r.code == 0, r.stderr
    assert "output" in r.stdout
    r = run_cli("gate", out, "--max-drop", "5", "--max-size-mb", "1", "--formats", "toy")
    assert r.code == 0, r.stdout + r.stderr
    assert "toy" in (out / "gate" / "summary.md").read_text()
    r = run_cli("report", out)
    assert r.code == 0, r.stderr
    assert "toy int8" in (out / "report" / "report.md").read_text()


def test_bench_over_ssh_ships_its_runtime_module(run, server):
    out, _ = run
    r = run_cli("bench", out, "--target", "raspberrypi", "--host", server.host, "--ssh-config", server.config,
                "--python", sys.executable, "--iters", "3", "--warmup", "0", "--json")
    assert r.code == 0, r.stdout + r.stderr
    rows = {x["precision"]: x for x in json.loads(r.stdout)["results"]}
    assert all(row["status"] == "ok" for row in rows.values()), rows
