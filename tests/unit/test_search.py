"""The int8 search on a trained LeNet-5 in the real runtimes: a calibration set of black images spoils
the default int8 artefact; a remedy brings it within the budget, and an impossible budget keeps the
best artefact, says why, and leaves the fp32 file alone."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from edgekit.data.datasets import load_dataset
from edgekit.export.search import SearchSettings, search_int8, summary_lines
from edgekit.export.verify import run_session
from edgekit.formats import get_format
from edgekit.measure.metrics import metrics, predict
from edgekit.train import TrainConfig, train


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    import torch

    from edgekit.models import load_model

    torch.manual_seed(0)
    model = load_model("lenet5")
    train_set = load_dataset("digits", model, split="train")
    train(model, train_set, None, TrainConfig(epochs=12, lr=5e-3, threads=1, augment=False))
    held_out = load_dataset("digits", model, split="test")
    # The first 8 calibration samples are black images (the background value); the source holds
    # real digits after them, which only a larger calibration set reaches.
    black = np.full_like(train_set.x[:8], train_set.x.min())
    source = np.concatenate([black, train_set.x[:120]])
    return model, held_out, source


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fp32(fmt, model, folder):
    folder.mkdir(parents=True, exist_ok=True)
    path = fmt.export_fp32(model, folder / f"model.fp32{fmt.extension}")
    return path, {p: _sha(p) for p in fmt.files(path)}


def _drop(fmt, model, path, held_out):
    ref = metrics(predict(model.module, held_out.x), held_out)["top1"]
    return 100 * (ref - metrics(run_session(fmt.open(path), held_out.x), held_out)["top1"])


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_more_calibration_brings_a_spoilt_int8_model_within_budget(tmp_path, lenet):
    model, held_out, source = lenet
    fmt = get_format("onnx")
    fp32, before = _fp32(fmt, model, tmp_path / "onnx")
    path = tmp_path / "onnx" / "model.int8.onnx"
    lines = []
    result, record = search_int8(fmt, model, fp32, path, source[:8], held_out, SearchSettings(budget_pp=1.0),
                                 more_calib=lambda n: source[:n], progress=lines.append)

    first, chosen = record["attempts"][0], record["attempts"][record["chosen"]]
    assert first["drop_pp"] > 1.0, "the black calibration must spoil the default artefact"
    assert record["met"] and "reason" not in record
    assert chosen["stage"] == "more-calibration" and chosen["settings"]["calibration_samples"] == 32
    assert chosen["drop_pp"] <= 1.0 and len(record["attempts"]) == 2  # stopped at the first success
    assert result.path == path and result.scheme["calibration_samples"] == 32
    assert _drop(fmt, model, path, held_out) == pytest.approx(chosen["drop_pp"], abs=1e-6)
    assert all(a["latency_p50_ms"] > 0 and a["seconds"] >= 0 for a in record["attempts"])
    assert {p: _sha(p) for p in before} == before  # the fp32 artefact is untouched
    assert _leftovers(path.parent) == []
    assert len(lines) == 2 and "within 1" in lines[1]


@pytest.mark.parametrize("fmt_name", ["onnx", "openvino", "tflite"])
def test_an_impossible_budget_keeps_the_best_artefact_and_says_why(tmp_path, lenet, fmt_name):
    model, held_out, source = lenet
    fmt = get_format(fmt_name)
    fp32, before = _fp32(fmt, model, tmp_path / fmt_name)
    path = tmp_path / fmt_name / f"model.int8{fmt.extension}"
    settings = SearchSettings(budget_pp=-50.0, exclude_steps=(1, 2), latency_runs=5)
    result, record = search_int8(fmt, model, fp32, path, source[:8], held_out, settings,
                                 more_calib=lambda n: source[:n])

    attempts = record["attempts"]
    assert not record["met"] and record["reason"].startswith("best drop")
    assert "-50" in record["reason"]
    methods = [a["settings"]["method"] for a in attempts if a["stage"] == "method"]
    assert methods == [r.method for r in fmt.remedies(model)] and methods  # every remedy was tried
    assert [a["stage"] for a in attempts[:2]] == ["default", "more-calibration"]
    validated = [a for a in attempts if a["settings"]["method"] in fmt.validated_methods]
    assert all(a["settings"]["max_drop_pp"] == -50.0 and a["status"] == "ok" for a in validated)
    assert bool(validated) == (fmt_name == "openvino")  # nncf.quantize_with_accuracy_control
    ok = [a for a in attempts if a["status"] == "ok"]
    best = min(ok, key=lambda a: (a["drop_pp"], a["index"]))
    assert record["chosen"] == best["index"]
    # the best artefact is written where the pipeline expects it, loads, and is the one recorded
    assert all(p.exists() for p in fmt.files(path))
    assert _drop(fmt, model, path, held_out) == pytest.approx(best["drop_pp"], abs=1e-6)
    assert result.scheme["method"] == best["settings"]["method"]
    assert {p: _sha(p) for p in before} == before
    assert _leftovers(path.parent) == []
    lines = summary_lines(fmt_name, record)
    assert len(lines) == len(attempts) + 1 and lines[-1].startswith(f"warning: {fmt_name} int8 misses")


def test_a_failing_remedy_is_recorded_and_skipped(tmp_path, lenet):
    from edgekit.formats.base import Int8Options
    from edgekit.formats.onnx import OnnxFormat

    class Broken(OnnxFormat):  # a remedy whose settings the toolchain rejects
        def remedies(self, model):
            return [Int8Options("no-such-method"), Int8Options("percentile")]

    model, held_out, source = lenet
    fmt = Broken()
    fp32, _ = _fp32(fmt, model, tmp_path)
    path = tmp_path / "model.int8.onnx"
    _, record = search_int8(fmt, model, fp32, path, source[:8], held_out,
                            SearchSettings(budget_pp=-50.0, latency_runs=3))
    failed = record["attempts"][1]
    assert failed["status"] == "failed" and "no-such-method" in failed["error"]
    assert record["attempts"][2]["status"] == "ok"
    assert record["chosen"] != 1 and path.exists() and _leftovers(tmp_path) == []


def test_keeping_the_worst_layers_in_float_brings_it_within_budget(tmp_path, lenet):
    import onnx

    model, held_out, source = lenet
    fmt = get_format("onnx")
    fp32, _ = _fp32(fmt, model, tmp_path)
    path = tmp_path / "model.int8.onnx"
    # no more calibration data: only the other methods and the per-layer exclusion are left
    result, record = search_int8(fmt, model, fp32, path, source[:8], held_out, SearchSettings(budget_pp=5.0))

    chosen = record["attempts"][record["chosen"]]
    assert record["attempts"][0]["drop_pp"] > 5.0 and record["met"]
    assert chosen["stage"] == "exclude" and chosen["drop_pp"] <= 5.0
    excluded = chosen["settings"]["exclude"]
    assert excluded == [r["name"] for r in record["ranking"]][: len(excluded)]  # worst first
    assert result.scheme["excluded"] == excluded
    graph = onnx.load(path).graph
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    weighted = [n for n in graph.node if n.name in excluded and n.op_type in ("Conv", "Gemm", "MatMul")]
    assert weighted and all(n.input[1] in floats for n in weighted)  # their weights stay float
    assert "the calibration source has no more samples" not in str(record.get("notes"))


def test_attempts_are_scored_on_a_stratified_sample_sized_by_the_budget(tmp_path, lenet):
    model, held_out, source = lenet
    fmt = get_format("onnx")
    fp32, _ = _fp32(fmt, model, tmp_path)
    # 4 points: one sample may be worth 0.4 points, so 250 of the split's samples are enough
    _, record = search_int8(fmt, model, fp32, tmp_path / "model.int8.onnx", source[8:40], held_out,
                            SearchSettings(budget_pp=4.0, latency_runs=3))
    sample = record["sample"]
    assert sample["size"] == 250 == record["held_out"]["samples"] and sample["of"] == len(held_out)
    assert "n >= 250" in sample["how"] and sample["seed"] == 0 and sample["stratified"]
    counts = {c: int((held_out.y == i).sum()) for i, c in enumerate(held_out.classes)}
    assert sum(sample["per_class"].values()) == 250 and set(sample["per_class"]) == set(counts)
    assert all(abs(sample["per_class"][c] - 250 * k / len(held_out)) < 1 for c, k in counts.items())
    assert record["held_out"]["sha256"] != held_out.sha256 and record["attempts"][0]["scored"] == 250
    _, again = search_int8(fmt, model, fp32, tmp_path / "again.int8.onnx", source[8:40], held_out,
                           SearchSettings(budget_pp=4.0, latency_runs=3))
    assert again["held_out"] == record["held_out"]  # seeded: the same samples every run


def test_an_attempt_that_cannot_win_stops_early_and_the_choice_is_unchanged(tmp_path, lenet):
    from edgekit.export.sample import SampleSettings

    model, held_out, source = lenet
    fmt = get_format("onnx")
    fp32, _ = _fp32(fmt, model, tmp_path)
    # Good calibration first; "more calibration" is noise a thousand times the data's range, which
    # wrecks the int8 model: it cannot meet the budget nor beat the default, and stops early.
    noise = np.random.default_rng(0).normal(0, 1000, (64, *source.shape[1:])).astype(np.float32)
    records = {}
    for chunk in (50, 10_000):  # 10,000: one chunk, so no stop; the full scoring to compare with
        settings = SearchSettings(budget_pp=-50.0, exclude_steps=(1,), latency_runs=3,
                                  sample=SampleSettings(chunk=chunk))
        _, records[chunk] = search_int8(fmt, model, fp32, tmp_path / f"c{chunk}.int8.onnx", source[8:40],
                                        held_out, settings, more_calib=lambda n: noise[:n])
    early, full = records[50], records[10_000]
    wrecked = early["attempts"][1]
    assert wrecked["stage"] == "more-calibration" and full["attempts"][1]["drop_pp"] > 20
    stop = wrecked["stopped_early"]
    assert stop["after"] == wrecked["scored"] < stop["of"] == len(held_out) and stop["after"] % 50 == 0
    assert full["attempts"][1]["drop_pp"] >= wrecked["drop_pp"] > early["attempts"][0]["drop_pp"]
    assert "stopped_early" not in early["attempts"][0] and early["attempts"][0]["scored"] == len(held_out)
    assert not any("stopped_early" in a for a in full["attempts"])
    assert all(a["agreement"] > 0.9 for a in early["attempts"] if a["index"] != 1)
    assert early["chosen"] == full["chosen"] and early["met"] == full["met"]
    kept = early["chosen"]
    assert early["attempts"][kept]["drop_pp"] == full["attempts"][kept]["drop_pp"]
    lines = summary_lines("onnx", early)
    said = f"drop at least {wrecked['drop_pp']:+.2f} pp (over -50, stopped after {stop['after']} of"
    assert said in lines[1]
