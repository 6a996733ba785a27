"""`edgekit prune` and `edgekit export --prune` through the real CLI: smaller artefacts that verify
against the pruned model, fine-tuning that recovers accuracy, eval and bench on a pruned run."""

from __future__ import annotations

import torch

from tests.conftest import read_manifest, run_cli


def test_export_prune_writes_smaller_verified_artefacts_and_bench_eval_follow(tmp_path, lenet5_run):
    plain, pruned = lenet5_run.path, tmp_path / "pruned"  # plain: the session's unpruned lenet5 run
    r = run_cli("export", "lenet5", "--int8", "--to", "onnx,openvino", "--calib-size", "16",
                "--out", pruned, "--prune", "0.5")
    assert r.code == 0, r.stderr
    m, base = read_manifest(pruned), read_manifest(plain)
    p = m["pruning"]
    assert p["settings"]["ratio"] == 0.5 and p["settings"]["method"] == "structured"
    assert p["params_before"] == base["model"]["parameters"] == 61706
    assert p["params_after"] == m["model"]["parameters"] < 0.4 * 61706
    assert p["macs_after"] == m["model"]["macs"] < 0.4 * base["model"]["macs"]
    assert (pruned / p["checkpoint"]["path"]).is_file()
    size = {(a["format"], a["precision"]): a["bytes"] for a in base["artefacts"]}
    for art in m["artefacts"]:
        assert art["status"] == "ok"
        assert art["bytes"] < 0.7 * size[(art["format"], art["precision"])]  # int8: + scales, graph
        if art["precision"] == "fp32":  # verified against the pruned PyTorch model
            assert art["verify"]["passed"] and art["verify"]["top1_mismatches"] == 0
    r = run_cli("bench", pruned, "--iters", "5")
    assert r.code == 0, r.stderr
    rows = {(x["format"], x["precision"]): x for x in read_manifest(pruned)["bench"]["local-cpu"]["results"]}
    assert rows[("pytorch", "fp32")]["status"] == "ok"  # the pruned model, rebuilt from the run
    r = run_cli("eval", pruned, "--dataset", "digits", "--limit", "64", "--json")
    assert r.code == 0, r.stderr


def test_prune_a_trained_checkpoint_fine_tune_and_export_with_accuracy(tmp_path, lenet5_ckpt):
    ckpt, small = lenet5_ckpt.path, tmp_path / "lenet5-pruned.pt"  # the session's trained LeNet-5
    r = run_cli("prune", ckpt, "--ratio", "0.4", "--finetune-epochs", "3", "--dataset", "digits",
                "--out", small)
    assert r.code == 0, r.stderr
    assert "pruned structured 0.4 (uniform): parameters 61,706 ->" in r.stdout
    assert "test after fine-tuning: top1" in r.stderr + r.stdout
    record = torch.load(small, weights_only=True)["edgekit"]
    assert record["model"] == "lenet5" and record["pruning"]["finetune"]["epochs_run"] == 3
    assert record["dataset"] == "digits" and record["metrics"]["test"]["top1"] > 0.8
    assert "history" in record["metrics"]["before_pruning"]  # the unpruned model's training, kept apart
    out = tmp_path / "run"
    r = run_cli("export", small, "--int8", "--to", "onnx", "--eval", "digits", "--out", out)
    assert r.code == 0, r.stderr
    m = read_manifest(out)
    assert m["model"]["parameters"] == record["pruning"]["params_after"]
    assert m["calibration"]["source"] == "builtin:digits"  # what it was fine-tuned on
    rows = {(x["format"], x["precision"]): x for x in m["eval"]["results"]}
    assert rows[("pytorch", "fp32")]["top1"] == record["metrics"]["test"]["top1"]
    assert rows[("onnx", "fp32")]["top1"] == rows[("pytorch", "fp32")]["top1"]


def test_pruning_mistakes_are_one_line_errors(tmp_path):
    for args, text in [
        (("export", "lenet5", "--keep", "features.0", "--out", tmp_path / "a"), "apply with --prune RATIO"),
        (("export", "lenet5", "--prune", "1.5", "--out", tmp_path / "b"), "between 0 and 1"),
        (("prune", "lenet5", "--ratio", "0.3", "--finetune-epochs", "2", "--out", tmp_path / "c.pt"),
         "needs --dataset"),
        (("prune", "lenet5", "--ratio", "0.3", "--keep", "features.9", "--out", tmp_path / "d.pt"),
         "no layer of this model"),
        (("prune", "lenet5", "--ratio", "0.3", "--dataset", "digits", "--out", tmp_path / "e.pt"),
         "add --finetune-epochs N"),
    ]:
        r = run_cli(*args)
        assert r.code == 2 and len(r.error_lines) == 1 and text in r.error_lines[0], (args, r.stderr)
        assert "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())  # nothing written
