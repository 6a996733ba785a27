"""What ONNX files from the wild need before onnxruntime's quantizer takes them, and its errors in
one line. Used by ``OnnxFormat.export_int8`` on the pre-processed graph.

- Graph inputs that are also initializers (files from old exporters list every weight as an input)
  become plain initializers: edgekit feeds only the real inputs, and onnxruntime treats a weight
  that is also an input as a value that may change, so it neither folds nor quantizes it.
- A Gemm bias stored as (1, N) (legal: it broadcasts) becomes (N,): onnxruntime 1.32's int32 bias
  scale check indexes it per output channel and fails with "The truth value of an array with more
  than one element is ambiguous" (the ONNX model zoo's MNIST model, whose MatMul + Add with a
  (1, 10) bias the pre-processing fuses into such a Gemm).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from edgekit.errors import EdgekitError, ExportError

log = logging.getLogger("edgekit")


def prepare_for_quantizer(path: Path) -> list[str]:
    """Rewrite ``path`` in place as above; what was changed, for the scheme record ([] if nothing)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    done = []
    as_inputs = [i for i in graph.input if i.name in weights]
    if as_inputs:
        keep = [i for i in graph.input if i.name not in weights]
        del graph.input[:]
        graph.input.extend(keep)
        done.append(f"{len(as_inputs)} initializers listed as graph inputs made constants")
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    flattened = []
    for node in graph.node:
        bias = weights.get(node.input[2]) if node.op_type == "Gemm" and len(node.input) > 2 else None
        if bias is None or len(bias.dims) != 2 or bias.dims[0] != 1:
            continue
        if uses[bias.name] > 1:  # shared with another node: give this Gemm its own copy
            copy = onnx.TensorProto()
            copy.CopyFrom(bias)
            copy.name = f"{bias.name}_{node.name or len(flattened)}_1d"
            graph.initializer.append(copy)
            node.input[2] = copy.name
            bias = copy
        bias.dims[:] = [bias.dims[1]]
        flattened.append(node.name or node.output[0])
    if flattened:
        done.append(f"Gemm bias (1, N) made (N,) in {', '.join(flattened)}")
    if done:
        onnx.save(model, str(path))
    return done


@contextlib.contextmanager
def quantizer_errors(graph: Path, opset: dict | None = None) -> Iterator[None]:
    """Around a call into onnxruntime.quantization on ``graph``: its errors become ``quantizer_error``."""
    try:
        yield
    except EdgekitError:  # edgekit's own (the calibration reader's): already one line
        raise
    except Exception as exc:  # noqa: BLE001 - anything raised inside onnxruntime's quantizer
        raise quantizer_error(exc, graph, opset) from exc


def quantizer_error(exc: Exception, graph: Path, opset: dict | None = None) -> ExportError:
    """One line for an error raised inside onnxruntime.quantization: the node it was working on
    (from the traceback's frames, where one names it), the error, and what to try."""
    log.debug("onnxruntime.quantization failed", exc_info=exc)
    node = _node_of(exc, graph)
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}"
    where = f" at node {node}" if node else ""
    if opset and opset.get("converted_to") is None and opset.get("source") is not None \
            and opset["source"] < 13:
        hint = (f"the file is at opset {opset['source']}, which onnx's version converter could not "
                "upgrade; export your model again at opset 13 or newer")
    else:
        hint = ("OpenVINO quantizes the same file (--to openvino); or export your model again with a "
                "current exporter (torch.onnx.export, opset 13 or newer)")
    return ExportError(f"onnxruntime's quantizer failed{where}: {text}; {hint}")


def _node_of(exc: Exception, graph: Path) -> str | None:
    """"'name' (OpType)" of the node the quantizer was at: a NodeProto or a node name in a frame's
    locals (innermost first), else the node that consumes a tensor named there."""
    try:
        import onnx

        nodes = onnx.load(str(graph), load_external_data=False).graph.node
    except Exception:  # noqa: BLE001 - the graph itself is what failed: no node to name
        return None
    by_name = {n.name: n for n in nodes if n.name}
    consumer = {}
    for n in nodes:
        for name in n.input:
            consumer.setdefault(name, n)
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_locals)
        tb = tb.tb_next
    for local in reversed(frames):
        found = _node_in(local, by_name, consumer)
        if found is not None:
            return f"{found.name or found.output[0]!r} ({found.op_type})"
    return None


def _node_in(local: dict, by_name: dict, consumer: dict):
    node = local.get("node")
    if node is not None and hasattr(node, "op_type"):
        return node
    for key in ("node_name", "bias_info"):
        value = local.get(key)
        name = getattr(value, "node_name", value)
        if isinstance(name, str) and name in by_name:
            return by_name[name]
    for key in ("weight_name", "bias_name", "tensor_name", "input_name"):
        value = local.get(key)
        if isinstance(value, str) and value in consumer:
            return consumer[value]
    return None
