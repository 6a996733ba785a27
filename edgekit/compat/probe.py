"""Ask a device which runtimes it has: edgekit's device probe, one short process, one JSON line.

Copied as it is to where the artefacts would run and run there with the device's Python:

    python3 - --runtimes JSON [--executorch-ops] < probe.py   (over SSH: the script comes in on stdin)

It needs only the standard library (Python 3.9 or newer) and imports nothing from edgekit. It
prints one line that starts with PROBE_MARKER, then a JSON object: the Python version, the
machine, numpy's version (None when numpy is missing) and, for each runtime it finds, its version
and what can be read cheaply. Which runtimes to look for comes from edgekit's formats (each
declares its ``probe``): ``--runtimes`` maps each to (its module, its distributions). Versions come
from the installed distributions' metadata, so no
runtime is imported, except ExecuTorch with ``--executorch-ops``: its registered operators and
backends can only be read from its Python runtime (which imports torch, seconds).

- openvino: the operation sets its Python package ships (``openvino/opsetN`` folders);
- executorch: the ``.pte`` file identifier its schema reads (``program.fbs``), and with
  ``--executorch-ops`` its registered operator names and backends.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys

PROBE_MARKER = "EDGEKIT_PROBE "
PROBE_VERSION = 1


def dist_version(names):
    from importlib.metadata import PackageNotFoundError, version

    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
        except Exception:  # a broken distribution's metadata
            continue
    return None


def package_dir(module):
    """The folder of an installed top-level package, found without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    return locations[0] if locations else ""


def openvino_opsets(folder):
    found = set()
    for sub in (folder, os.path.join(folder, "runtime")):
        try:
            names = os.listdir(sub)
        except OSError:
            continue
        found.update(int(m.group(1)) for m in map(re.compile(r"opset(\d+)$").match, names) if m)
    return sorted(found)


def executorch_identifier(folder):
    for rel in (("schema", "program.fbs"), ("exir", "_serialize", "program.fbs")):
        try:
            with open(os.path.join(folder, *rel)) as f:
                m = re.search(r'file_identifier\s+"(\w{4})"', f.read())
        except OSError:
            continue
        if m:
            return m.group(1)
    return None


def executorch_kernels():
    """Registered operator names and backends, or the reason they could not be read."""
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            from executorch.extension.pybindings import portable_lib
        found = {}
        if hasattr(portable_lib, "_get_operator_names"):
            found["operators"] = sorted(str(n) for n in portable_lib._get_operator_names())
        if hasattr(portable_lib, "_get_registered_backend_names"):
            found["backends"] = sorted(str(n) for n in portable_lib._get_registered_backend_names())
        return found
    except Exception as exc:  # an import that fails is the device's answer, not the probe's crash
        return {"kernels_error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def runtime(name, module, dists, want_ops):
    folder = package_dir(module)
    version = dist_version(dists)
    if version is None and folder is None:
        return None
    info = {"version": version or "unknown"}
    if folder and name == "openvino":
        info["opsets"] = openvino_opsets(folder)
    if folder and name == "executorch":
        info["program_identifier"] = executorch_identifier(folder)
        if want_ops:
            info.update(executorch_kernels())
    return info


def runtimes_asked(argv):
    """``--runtimes JSON``: {runtime: [module, [distributions...]]}, from edgekit's formats."""
    if "--runtimes" in argv and argv.index("--runtimes") + 1 < len(argv):
        return json.loads(argv[argv.index("--runtimes") + 1])
    return {}


def probe(argv):
    want_ops = "--executorch-ops" in argv
    found = {}
    for name, (module, dists) in runtimes_asked(argv).items():
        info = runtime(name, module, tuple(dists), want_ops)
        if info is not None:
            found[name] = info
    return {
        "probe": PROBE_VERSION,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "numpy": dist_version(("numpy",)) if package_dir("numpy") is not None else None,
        "runtimes": found,
    }


def main(argv):
    # The script's own folder (or the working folder, for a script on stdin) is first on sys.path: a
    # file there named like a runtime (a module named openvino.py beside this one) must not hide it.
    here = os.path.dirname(os.path.abspath(sys.argv[0])) if sys.argv[0] not in ("", "-", "-c") else ""
    if sys.path and sys.path[0] in ("", here):
        sys.path.pop(0)
    print(PROBE_MARKER + json.dumps(probe(argv)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
