"""ExecuTorch through the real CLI like any format: export (verified), eval, bench, gate, report."""

from __future__ import annotations

import json

import pytest

from tests.conftest import read_manifest, run_cli

pytest.importorskip("executorch.runtime")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("et") / "run"
    r = run_cli("export", "lenet5", "--to", "executorch", "--int8", "--calib-size", "16", "--out", out)
    assert r.code == 0, r.stderr
    return out, r


def test_export_verifies_and_records_the_delegation(run):
    out, r = run
    m = read_manifest(out)
    arts = {a["precision"]: a for a in m["artefacts"]}
    assert set(arts) == {"fp32", "int8"} and all(a["format"] == "executorch" for a in arts.values())
    assert arts["fp32"]["path"] == "executorch/model.fp32.pte" and arts["fp32"]["verify"]["passed"]
    assert arts["int8"]["scheme"]["type"] == "static" and arts["int8"]["verify"]["cosine"] > 0.99
    assert arts["int8"]["bytes"] < arts["fp32"]["bytes"] / 2
    for a in arts.values():
        assert a["verify"]["runtime"] == "executorch" and a["details"]["delegated_share"] == 1.0
        assert a["details"]["portable_kernels"] == {}
    assert m["tools"]["executorch"] and m["tools"]["torchao"]
    assert "XNNPACK runs 100% of" in r.stdout  # the export output says what was delegated


def test_eval_bench_gate_and_report_cover_it(run):
    out, _ = run
    r = run_cli("eval", out, "--dataset", "digits", "--json")
    assert r.code == 0, r.stderr
    rows = {(x["format"], x["precision"]): x for x in json.loads(r.stdout)["results"]}
    assert rows[("executorch", "fp32")]["top1"] == rows[("pytorch", "fp32")]["top1"]
    r = run_cli("bench", out, "--iters", "5", "--warmup", "1", "--json")
    assert r.code == 0, r.stderr
    results = {(x["format"], x["precision"]): x for x in json.loads(r.stdout)["results"]}
    for precision in ("fp32", "int8"):
        row = results[("executorch", precision)]
        assert row["status"] == "ok" and row["runtime"] == "executorch" and row["p50_ms"] > 0
    r = run_cli("gate", out, "--max-drop", "5", "--max-size-mb", "0.2", "--formats", "executorch")
    assert r.code == 4, r.stdout  # the 0.25 MB fp32 file breaks the size rule; the rest holds
    summary = (out / "gate" / "summary.md").read_text()
    assert "executorch" in summary
    r = run_cli("report", out)
    assert r.code == 0, r.stderr
    report = (out / "report" / "report.md").read_text()
    assert "executorch int8" in report and "XNNPACK runs 100% of" in report
