"""pyproject allows Python 3.10, which has no tomllib: the TOML readers must fall back to tomli there.

Runs a real Python 3.10 (pyenv's, or python3.10 on PATH) with tomli installed from the package
registry into a temporary folder; skipped with the reason where either is missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _python310() -> str | None:
    check = "import sys; assert sys.version_info[:2] == (3, 10)"
    pyenv = sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python"))
    for candidate in (shutil.which("python3.10"), *pyenv):
        if candidate and subprocess.run([str(candidate), "-c", check], capture_output=True).returncode == 0:
            return str(candidate)
    return None


def test_toml_files_read_on_python_310(tmp_path):
    python = _python310()
    if python is None:
        pytest.skip("no Python 3.10 interpreter on this machine")
    site = tmp_path / "site"
    done = subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target",
                           str(site), "--only-binary", ":all:", "tomli>=2"], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot install tomli for Python 3.10 here: {done.stderr.strip()[-200:]}")
    recipe = tmp_path / "rules.toml"
    recipe.write_text('max-drop = 1.5\nformats = ["onnx"]\n[preprocess]\nmean = [0.5]\n')
    code = (
        "import sys; assert sys.version_info[:2] == (3, 10)\n"
        "import edgekit.ci.gate, edgekit.ci.recipe, edgekit.targets  # each reads TOML files\n"
        "from edgekit.tomlfile import read_toml, tomllib\n"
        "assert tomllib.__name__ == 'tomli', tomllib.__name__\n"
        f"print(read_toml({str(recipe)!r}, 'gate rules'))\n"
        f"try:\n    read_toml({str(tmp_path / 'missing.toml')!r}, 'recipe')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    env.pop("PYTHONHOME", None)
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "{'max-drop': 1.5, 'formats': ['onnx'], 'preprocess': {'mean': [0.5]}}"
    assert lines[1].startswith("UsageError recipe ") and "does not exist" in lines[1]
