"""Where int8 loses accuracy: per-layer error of each int8 artefact against its fp32 artefact.

For every layer the quantizer touched, the int8 artefact's output of that layer is compared with
the fp32 artefact's output of the same layer on the same samples (SQNR in dB and cosine). The
error accumulates through the network, so a layer's number is "how far off the int8 model is by
the time it leaves this layer". Each format uses its own toolchain's debugging hooks:

- ONNX: ``onnxruntime.quantization.qdq_loss_debug`` (intermediate outputs added to both models,
  activations matched by tensor name; the int8 value is the one after its QuantizeLinear ->
  DequantizeLinear pair). The reference is the fp32 file after ``quant_pre_process``, made as
  ``edgekit/formats/onnx.py`` makes it, because quantize_static quantized that graph: node names
  come from it, and they are what ``quantize_static(nodes_to_exclude=...)`` takes. For the dynamo
  exporter's graphs pre-processing renames nothing (BatchNorm is already folded into Conv), so
  the names are also those of ``onnx/model.fp32.onnx``.
- OpenVINO: ``Model.add_outputs`` on both IRs, ops matched by friendly name (NNCF keeps the
  names of the ops it quantizes and only inserts FakeQuantize/Convert/Multiply around them),
  fp32 run pinned to f32, int8 as the CPU plugin runs it by default. The int8 value is taken
  after the op's output FakeQuantize where there is one. Names are what
  ``nncf.IgnoredScope(names=[...])`` takes.
- TFLite: both flatbuffers run in ai-edge-litert with ``experimental_preserve_all_tensors`` and
  no default delegate (XNNPACK would hide intermediate tensors); int8 tensors are dequantized
  with their own scale and zero point. litert-torch names each op's output tensor after the
  module locations it came from ("pkg.Class/pkg.Class_attr/..."), so an int8 op is paired with
  the fp32 op of the same type, first location and shape (k-th with k-th where that repeats), and
  its name is the PyTorch module path rebuilt from that location, the handle a PT2E quantizer
  filters on (see ``LayerError.name``).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgekit.errors import UsageError
from edgekit.runs import manifest as mf

DEFAULT_SAMPLES = 32
PLOT_LAYERS = 20
CONV_OPS = frozenset({"Conv", "ConvTranspose", "Convolution", "GroupConvolution", "ConvolutionBackpropData",
                      "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "CONV_3D"})
LINEAR_OPS = frozenset({"Gemm", "MatMul", "FULLY_CONNECTED", "BATCH_MATMUL"})


@dataclass(frozen=True)
class LayerError:
    """One layer's int8 error. ``name`` is the handle the format's quantizer excludes by:
    onnx: the node name (``quantize_static(nodes_to_exclude=[...])``); openvino: the op's friendly
    name (``nncf.IgnoredScope(names=[...])``); tflite: the PyTorch module path (PT2E module-name
    filters; litert-torch 0.10's ``set_module_name(name, None)`` asserts, so a caller drops the
    annotations of nodes whose ``nn_module_stack`` paths are or lie under ``name``)."""

    name: str
    op: str  # op type as the toolchain names it: Conv, Convolution, CONV_2D, ...
    torch_name: str | None  # module path in the PyTorch model, where it can be traced
    sqnr_db: float  # int8 output of this layer vs the fp32 one, same samples
    cosine: float

    def to_dict(self) -> dict:
        return asdict(self)


class _Stats:
    """Running sums for SQNR and cosine of ``out`` against ``ref`` over many samples."""

    def __init__(self):
        self.signal = self.noise = self.dot = self.out2 = 0.0

    def add(self, ref: np.ndarray, out: np.ndarray) -> None:
        r, o = np.asarray(ref, np.float64).ravel(), np.asarray(out, np.float64).ravel()
        keep = np.isfinite(r) & np.isfinite(o)  # fp32 max-pool padding is -inf
        r, o = r[keep], o[keep]
        self.signal += float(r @ r)
        self.noise += float((r - o) @ (r - o))
        self.dot += float(r @ o)
        self.out2 += float(o @ o)

    def error(self, name: str, op: str, torch_name: str | None) -> LayerError:
        sqnr = float("inf") if self.noise == 0 else 10.0 * np.log10(max(self.signal, 1e-30) / self.noise)
        denom = float(np.sqrt(self.signal * self.out2))
        cosine = self.dot / denom if denom else (1.0 if self.noise == 0 else 0.0)
        return LayerError(name, op, torch_name, float(sqnr), float(cosine))


def layer_errors(
    fmt_name: str, model, fp32_path: Path, int8_path: Path, samples: np.ndarray
) -> list[LayerError]:
    """Per-layer error of ``int8_path`` against ``fp32_path`` on ``samples``; worst (lowest SQNR) first."""
    if fmt_name not in _inspectable():
        raise UsageError(f"edgekit inspect does not know the format {fmt_name!r}; "
                         f"known: {', '.join(_inspectable())}")
    x = np.ascontiguousarray(samples, dtype=np.float32)
    if len(x) == 0:
        raise UsageError("edgekit inspect needs at least one sample")
    errors = _errors_of(fmt_name)(model, Path(fp32_path), Path(int8_path), x)
    return sorted(errors, key=lambda e: (e.sqnr_db, e.name))


def _errors_of(fmt_name: str) -> Callable:
    """The per-layer error function of a format (its ``inspect`` module, imported lazily)."""
    from edgekit.formats import format_class

    return format_class(fmt_name).module("inspect").errors


def _inspectable() -> tuple[str, ...]:
    """Registered formats that declare a per-layer module (``Format.inspect``)."""
    from edgekit.formats import FORMATS

    return tuple(n for n, cls in FORMATS.items() if cls.inspect)



def inspect_run(run_dir: Path, samples: int = DEFAULT_SAMPLES, formats: tuple[str, ...] | None = None,
                report: Callable[[str], None] = print, accept_changed: bool = False) -> dict:
    """Per-layer errors of every int8 artefact of a run (or of ``formats``); store and return them.

    The samples come from the run's recorded calibration source with the run's seed (see
    ``inspect_samples``). Each format also gets ``report/inspect_<format>.png``, a bar chart of
    its worst layers. The result is stored as ``manifest["inspect"]`` (the one it replaces moves to
    ``history``). Both artefacts of each pair are checked against their sha256 first
    (``manifest.check_artefacts``: a changed one stops it unless ``accept_changed``); a format with one
    missing is reported missing and the others are inspected.
    """
    from edgekit.models.resolve import load_run_model

    run_dir = Path(run_dir)
    manifest = mf.read_manifest(run_dir)
    pairs = _int8_pairs(manifest, formats)
    found = mf.check_artefacts(run_dir, [a for pair in pairs.values() for a in pair], accept_changed)
    states = {fmt: found[2 * n:2 * n + 2] for n, fmt in enumerate(pairs)}
    model = load_run_model(manifest, run_dir)
    if model.multi_io or model.input_spec.batch_axis:
        raise UsageError(f"inspect compares layers of models with one batch-first input and one output; "
                         f"{model.name} is not one")
    x, source = inspect_samples(manifest, model, samples)
    results = {}
    not_stored = None
    for fmt, (fp32, int8) in pairs.items():
        gone = [f for f in states[fmt] if f.status == "missing"]
        if gone:
            results[fmt] = {"status": "missing", "error": gone[0].row(run_dir)["error"]}
            report(f"FAILED inspect {fmt}: {results[fmt]['error']}")
            continue
        accepted = [f.row(run_dir)["accepted_changed"] for f in states[fmt] if f.status == "changed"]
        start = time.perf_counter()
        try:
            errors = layer_errors(fmt, model, run_dir / fp32["path"], run_dir / int8["path"], x)
        except Exception as exc:  # noqa: BLE001 - one format's tool failing must not lose the others
            text = " ".join(str(exc).split())[:300]
            results[fmt] = {"status": "failed", "error": f"{type(exc).__name__}: {text}"}
            report(f"FAILED inspect {fmt}: {results[fmt]['error']}")
            continue
        plot = None
        if not_stored is None:
            try:
                with mf.storing(run_dir):
                    plot = write_plot(errors, f"{fmt} int8: worst layers",
                                      run_dir / "report" / f"inspect_{fmt}.png")
            except mf.NotStoredError as exc:  # the figures are printed, then this line
                not_stored = exc.message
        results[fmt] = {"status": "ok", "artefact": int8["path"], "reference": fp32["path"],
                        "plot": plot and str(plot.relative_to(run_dir)),
                        "layers": [e.to_dict() for e in errors],
                        "seconds": round(time.perf_counter() - start, 2),
                        **({"accepted_changed": accepted} if accepted else {})}
        report(_summary_line(fmt, errors, results[fmt]["seconds"]))
    result = {"created": mf.utc_now(), "samples": int(len(x)), "source": source, "formats": results}
    if not_stored:
        result["not_stored"] = not_stored
    else:  # keeps others' records, and the inspect it replaces in the history
        mf.update_or_note(run_dir, lambda fresh: mf.keep_record(fresh, "inspect", result), result)
    return result


def _int8_pairs(manifest: dict, formats: tuple[str, ...] | None) -> dict[str, tuple[dict, dict]]:
    """{format: (fp32 artefact, int8 artefact)} for the formats with both exported ok; an int8
    artefact that failed its verdict and was kept aside (``kept``) is inspected where it was kept."""
    ok = {(a["format"], a["precision"]): a for a in manifest["artefacts"] if a.get("status") == "ok"}
    for a in manifest["artefacts"]:
        if a.get("kept") and (a["format"], a["precision"]) not in ok:
            ok[(a["format"], a["precision"])] = {**a, "path": a["kept"]["path"],
                                                 "files": a["kept"].get("files")}
    pairs = {f: (ok[(f, "fp32")], ok[(f, "int8")]) for f, p in ok if p == "int8" and (f, "fp32") in ok}
    if formats:
        unknown = [f for f in formats if f not in pairs]
        if unknown:
            raise UsageError(f"the run has no int8 {', '.join(unknown)} artefact with its fp32 one; "
                             f"it has: {', '.join(pairs) or 'none'}")
        pairs = {f: pairs[f] for f in formats}
    if not pairs:
        raise UsageError("the run has no int8 artefact with its fp32 one to compare; "
                         "export with --int8 first")
    return pairs


def inspect_samples(manifest: dict, model, n: int) -> tuple[np.ndarray, str]:
    """``n`` samples from the run's calibration source, drawn with the run's seed.

    A labelled source (calibrated from its train split) gives its val split. Otherwise as many
    as calibration + verification + ``n`` are loaded and the last ``n`` kept, so that for
    sources that list samples in a fixed order they are not the ones the calibrator saw. Where
    the source has fewer, the last ``n`` it has (possibly calibration samples) are used.
    """
    from edgekit.data.calibration import load_samples

    if n < 1:
        raise UsageError(f"--samples must be at least 1, got {n}")
    recorded = (manifest.get("calibration") or {}).get("source")
    source = None
    if recorded:
        kind, _, where = recorded.partition(":")
        source = recorded if kind == "builtin" else where
    seed = int(manifest["settings"].get("seed", 0))
    if (manifest.get("calibration") or {}).get("split") == "train":  # labelled: its val split
        from edgekit.data.datasets import load_dataset

        data = load_dataset(source, model, "val", n, seed)
        return data.x, f"{recorded} (val split)"
    seen = int((manifest.get("calibration") or {}).get("samples", 0))
    seen += int((manifest.get("verification") or {}).get("samples", 0))
    loaded = load_samples(source, model, seen + n, seed=seed)
    return loaded.x[-n:], loaded.source


def write_plot(errors: list[LayerError], title: str, path: Path, top: int = PLOT_LAYERS) -> Path:
    """Horizontal bars of the worst ``top`` layers' SQNR (worst at the top); returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    worst = errors[:top]
    values = [min(e.sqnr_db, 100.0) for e in worst]  # an exact layer (inf dB) drawn at 100 dB
    labels = [f"{_short(e.torch_name or e.name)} ({e.op})" for e in worst]
    fig = Figure(figsize=(8, 1.2 + 0.3 * max(len(worst), 1)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.barh(range(len(worst)), values, color="tab:red")
    ax.set_yticks(range(len(worst)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("SQNR vs fp32 (dB, higher is better)")
    ax.set_title(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    path.parent.mkdir(parents=True, exist_ok=True)
    return mf.write_atomic(path, buffer.getvalue())


def _short(name: str, width: int = 48) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]


def _summary_line(fmt: str, errors: list[LayerError], seconds: float) -> str:
    if not errors:
        return f"ok {fmt:<8} no quantized layers found  ({seconds}s)"
    w = errors[0]
    return (f"ok {fmt:<8} {len(errors)} layers; worst {w.torch_name or w.name} ({w.op}) "
            f"SQNR {w.sqnr_db:.1f} dB, cosine {w.cosine:.4f}  ({seconds}s)")


def table_rows(result: dict, top: int = 10) -> tuple[list[str], list[list[str]]]:
    """Columns and formatted rows for printing an inspect result: each format's ``top`` worst layers."""
    head = ["format", "rank", "layer", "op", "torch module", "SQNR (dB)", "cosine"]
    rows = []
    for fmt, r in result["formats"].items():
        if r.get("status") != "ok":
            rows.append([fmt, "-", f"failed: {r.get('error', '')}"[:80], "-", "-", "-", "-"])
            continue
        for rank, e in enumerate(r["layers"][:top], 1):
            sqnr = float(e["sqnr_db"])  # "inf" once read back from the manifest
            rows.append([fmt, str(rank), _short(e["name"]), e["op"], e["torch_name"] or "-",
                         f"{sqnr:.1f}", f"{float(e['cosine']):.4f}"])
    return head, rows
