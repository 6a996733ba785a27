"""What a user installing edgekit meets: a fast --help, and a wheel that carries the recipes."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_help_does_not_import_heavy_libraries():
    code = ("import sys; from edgekit.cli import cli; from edgekit.models import MODELS; "
            "from edgekit.formats import FORMATS; "
            "heavy = [m for m in ('torch', 'openvino', 'onnxruntime', 'litert_torch', 'nncf') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    r = subprocess.run([sys.executable, "-m", "edgekit", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "export" in r.stdout and "models" in r.stdout


def test_wheel_ships_the_calibration_recipes(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(REPO)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("edgekit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for recipe in sorted((REPO / "calibration").glob("*.toml")):
        assert f"edgekit/_calibration/{recipe.name}" in names
    entry = [n for n in names if n.endswith("entry_points.txt")]
    assert entry and "edgekit = edgekit.cli:main" in zipfile.ZipFile(wheel).read(entry[0]).decode()
