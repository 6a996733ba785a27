"""An ONNX file's own test data: the ONNX model zoo keeps ``test_data_set_N/input_K.pb`` and
``output_K.pb`` (serialized TensorProtos) beside ``model.onnx``. When such folders are there, the
file is run on them in onnxruntime and its outputs compared with the stored ones: a file that
disagrees with its own test data is broken (or its data is), and everything edgekit verifies
against it would be too. ``check_test_data`` gives what the manifest records
(``model.options.onnx.test_data``); ``test_data_line`` the line export prints, and a mismatch
stops the export (``edgekit.models.onnx_file.check_plan``).
"""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import UsageError

# As the ONNX model zoo's own checker compares outputs (numpy.testing.assert_allclose): the stored
# outputs were often made by another runtime, so float rounding differs a little.
RTOL, ATOL = 1e-3, 1e-4
_CACHE: dict[tuple, dict | None] = {}  # (path, size, mtime) -> result: export loads the model twice


def test_data_sets(path: Path) -> list[Path]:
    """The ``test_data_set_*`` folders beside ``path``, in order (none: an empty list)."""
    folder = Path(path).parent
    return sorted((p for p in folder.glob("test_data_set_*") if p.is_dir()),
                  key=lambda p: (len(p.name), p.name))


def check_test_data(path: Path) -> dict | None:
    """None when the file has no test data; else {"sets", "passed", "max_abs_diff", "rtol", "atol"}
    and, when it fails, "failed": the first set and output that disagree (or cannot be read or run)."""
    path = Path(path)
    sets = test_data_sets(path)
    if not sets:
        return None
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = _run_sets(path, sets)
    return _CACHE[key]


def _run_sets(path: Path, sets: list[Path]) -> dict | None:
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - a file onnxruntime cannot open: loading it says why, in one line
        return None
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    result = {"sets": len(sets), "passed": True, "max_abs_diff": 0.0, "rtol": RTOL, "atol": ATOL}
    for folder in sets:
        try:
            feed = _tensors(folder, "input", inputs)
            expected = _tensors(folder, "output", outputs)
            got = dict(zip(outputs, session.run(None, feed)))
        except Exception as exc:  # noqa: BLE001 - protobuf, shape or onnxruntime errors: one line
            text = " ".join(str(exc).split())[:200]
            return {**result, "passed": False, "failed": f"{folder.name}: {type(exc).__name__}: {text}"}
        for name, want in expected.items():
            have = got[name]
            if have.shape != want.shape:
                return {**result, "passed": False, "failed": f"{folder.name} output {name!r}: shape "
                        f"{tuple(have.shape)}, stored {tuple(want.shape)}"}
            diff = float(np.max(np.abs(have.astype(np.float64) - want))) if want.size else 0.0
            result["max_abs_diff"] = max(result["max_abs_diff"], diff)
            if not np.allclose(have, want, rtol=RTOL, atol=ATOL):
                return {**result, "passed": False, "failed": f"{folder.name} output {name!r}: max abs "
                        f"diff {diff:.3g}"}
    return result


def _tensors(folder: Path, kind: str, names: list[str]) -> dict:
    """{graph name: array} of ``folder/{kind}_K.pb``: by the name each TensorProto holds when it is
    one of ``names``, else by position."""
    import onnx
    from onnx import numpy_helper

    files = sorted(folder.glob(f"{kind}_*.pb"), key=lambda p: (len(p.name), p.name))
    if len(files) != len(names):
        raise ValueError(f"{len(files)} {kind}_*.pb files for {len(names)} {kind}s ({', '.join(names)})")
    found = {}
    for i, file in enumerate(files):
        tensor = onnx.TensorProto()
        tensor.ParseFromString(file.read_bytes())
        name = tensor.name if tensor.name in names else names[i]
        found[name] = numpy_helper.to_array(tensor)
    return found


def test_data_line(path: Path, result: dict) -> str:
    """The line export prints; a mismatch raises (one line: which set, what to do)."""
    name = Path(path).name
    if result["passed"]:
        n = result["sets"]
        return (f"note: {name} matches its own test data ({n} test_data_set folder{'s' if n > 1 else ''}, "
                f"max abs diff {result['max_abs_diff']:.2g})")
    raise UsageError(f"{name} disagrees with its own test data in onnxruntime ({result['failed']}; "
                     f"tolerance rtol {RTOL:g}, atol {ATOL:g}): the file or its test data is broken; "
                     "fix it, or move the test_data_set_* folders away to export it anyway")
