"""Write torchvision_shapes.json: state-dict key -> shape for torchvision's vgg16, googlenet, resnet50.

torchvision cannot be installed next to the project's torch, so run this from a throw-away venv:

    python3 -m venv /tmp/tvenv && /tmp/tvenv/bin/pip install torch torchvision
    /tmp/tvenv/bin/python tests/data/make_torchvision_shapes.py

No weights are downloaded: the models are built with random initialisation and only the
shapes are recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torchvision
from torchvision import models


def shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {key: list(t.shape) for key, t in module.state_dict().items()}


def to_json(out: dict) -> str:
    """One key per line: small, and diffs stay readable."""
    lines = ["{", f'"_source": {json.dumps(out["_source"])},']
    models_ = [name for name in out if name != "_source"]
    for i, name in enumerate(models_):
        rows = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in out[name].items()]
        lines += [f'"{name}": {{', ",\n".join(rows), "}" + ("," if i < len(models_) - 1 else "")]
    return "\n".join(lines + ["}"]) + "\n"


def main() -> None:
    out = {
        "_source": f"torchvision {torchvision.__version__}, torch {torch.__version__}",
        "vgg16": shapes(models.vgg16()),
        "googlenet": shapes(models.googlenet(aux_logits=True, init_weights=False)),
        "resnet50": shapes(models.resnet50()),
    }
    path = Path(__file__).with_name("torchvision_shapes.json")
    path.write_text(to_json(out))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
