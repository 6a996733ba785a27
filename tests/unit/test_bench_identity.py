"""What a bench row says it measured: the PyTorch baseline's source file (bench.core.baseline_source)."""

from __future__ import annotations

from edgekit.bench.core import baseline_source
from edgekit.runs.manifest import sha256_file


def test_the_baseline_names_the_file_its_model_was_rebuilt_from(tmp_path):
    assert baseline_source({"settings": {"model": "lenet5"}, "model": {"weights": None}}) == {
        "path": None, "sha256": None}  # a zoo model with random weights
    weights = {"path": "/data/lenet5.pt", "sha256": "ab" * 32, "format": "state_dict"}
    assert baseline_source({"settings": {"model": "lenet5"}, "model": {"weights": weights}}) == {
        "path": "/data/lenet5.pt", "sha256": "ab" * 32}
    pruned = {"pruning": {"checkpoint": {"path": "pytorch/model.pruned.pt", "sha256": "cd" * 32}},
              "model": {"weights": weights}}
    assert baseline_source(pruned) == {"path": "pytorch/model.pruned.pt", "sha256": "cd" * 32}
    code = tmp_path / "net.py"
    code.write_text("class Net: ...\n")
    assert baseline_source({"settings": {"model": f"{code}:Net"}, "model": {"weights": None}}) == {
        "path": str(code), "sha256": sha256_file(code)}
