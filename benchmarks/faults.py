"""Issue 23's fault-injection cases with 20 seeds each (CI runs 3: tests/faults), as a pass matrix.

    .venv/bin/python benchmarks/faults.py [--seeds=20] [--cases=SUBSTRING,...] [--keep-going]

Runs the very functions of tests/faults/cases.py: SIGTERM and SIGINT at seeded points of a lenet5
and an LSTM export (anchored on each format's conversion, the start, the end), a second signal,
SIGKILL of the parent with its worker alive, a full disk at each format's write (a seeded amount
left free on a real tmpfs), a read-only run folder (eval, bench, gate), four commands on one run at
once, swapped and missing artefacts. Needs root for the tmpfs cases (skipped otherwise). Writes
benchmarks/results/faults.md: case, seeds passed / run, and the first failed expectation of each
failing seed. About 20-40 s a seed on 2 cores; the whole matrix takes a few hours.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from tests.faults import cases  # noqa: E402
from tests.faults.procs import Skip, env_for_edgekit  # noqa: E402

RESULTS = HERE / "results" / "faults.md"


def edgekit(*args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], cwd=REPO, env=env_for_edgekit(),
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"`edgekit {' '.join(map(str, args))}` failed: {r.stderr[-800:]}")


def build(base: Path) -> tuple[Path, Path]:
    """What tests/conftest.py's session fixtures give the tests: a trained lenet5's run with every
    format and an eval on digits, and an LSTM's int8 ONNX file to swap into it."""
    ckpt, run, lstm = base / "lenet5.pt", base / "lenet5-run", base / "lstm-run"
    edgekit("train", "lenet5", "--dataset", "digits", "--epochs", "8", "--out", ckpt)
    edgekit("export", ckpt, "--int8", "--calib-size", "16", "--eval", "digits", "--out", run)
    edgekit("export", "lstm", "--to", "onnx", "--int8", "--calib-size", "8", "--out", lstm)
    return run, lstm / cases.SWAPPED


def matrix(run: Path, other: Path) -> dict:
    """case name -> function of (seed, workdir)."""
    found = {}
    for model in ("lenet5", "lstm"):
        for sig in ("SIGTERM", "SIGINT"):
            found[f"{sig} during a {model} export"] = (
                lambda s, w, m=model, g=sig: cases.signal_export(m, g, s, w, run))
    for sig in ("SIGTERM", "SIGINT"):
        found[f"a second {sig} (lenet5 export)"] = (
            lambda s, w, g=sig: cases.signal_export("lenet5", g, s, w, run, True))
    found["SIGKILL of the parent, worker alive"] = lambda s, w: cases.sigkill_parent(s, w, run)
    for fmt in cases.FORMATS:
        found[f"full disk at the {fmt} write"] = lambda s, w, f=fmt: cases.full_disk(f, s, w)
    for command in cases.READ_ONLY:
        found[f"read-only run folder: {command}"] = lambda s, w, c=command: cases.read_only(c, s, w, run)
    found["four commands on one run at once"] = lambda s, w: cases.concurrent(s, w, run)
    found["swapped artefact"] = lambda s, w: cases.swapped(s, w, run, other)
    found["missing artefact"] = lambda s, w: cases.missing(s, w, run)
    return found


def main(argv: list[str]) -> None:
    opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    n = int(opts.get("seeds", 20))
    wanted = [w for w in opts.get("cases", "").split(",") if w]
    with tempfile.TemporaryDirectory(prefix="edgekit-faults-") as tmp:
        base = Path(tmp)
        started = time.monotonic()
        run, other = build(base)
        rows = []
        for name, case in matrix(run, other).items():
            if wanted and not any(w in name for w in wanted):
                continue
            passed, skipped, failures, t0 = 0, 0, [], time.monotonic()
            for seed in range(n):
                work = Path(tempfile.mkdtemp(dir=base, prefix="case-"))
                try:
                    case(seed, work)
                    passed += 1
                except Skip as exc:
                    skipped += 1
                    failures.append(f"seed {seed}: skipped: {exc}")
                except AssertionError as exc:
                    lines = str(exc).splitlines()
                    failures.append(f"seed {seed}: {lines[0]} {lines[1].strip() if len(lines) > 1 else ''}")
                except Exception as exc:  # noqa: BLE001 - a broken case is a row of the matrix, not the end of it
                    failures.append(f"seed {seed}: the case itself failed: {type(exc).__name__}: {exc}")
                subprocess.run(["rm", "-rf", str(work)], check=False)
            rows.append((name, passed, n - skipped, time.monotonic() - t0, failures))
            print(f"{name}: {passed}/{n - skipped} passed ({time.monotonic() - t0:.0f} s)", flush=True)
        write(rows, n, time.monotonic() - started, Path(opts["out"]) if "out" in opts else RESULTS)


def write(rows: list, n: int, seconds: float, out: Path = RESULTS) -> None:
    import edgekit

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    lines = ["# Fault-injection matrix (issue 23)", "",
             f"`benchmarks/faults.py --seeds={n}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, edgekit "
             f"{edgekit.__version__} at {head.stdout.strip() or '?'}, {seconds / 60:.0f} min. The cases are "
             "tests/faults/cases.py (CI runs them with 3 seeds: tests/faults).", "",
             "| case | passed / run | seconds |", "|---|---|---|"]
    lines += [f"| {name} | {passed} / {ran} | {secs:.0f} |" for name, passed, ran, secs, _ in rows]
    lines += ["", "## Failures (first failed expectation of each failing seed)", ""]
    for name, _, _, _, failures in rows:
        lines += [f"- {name}: {f}" for f in failures]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
