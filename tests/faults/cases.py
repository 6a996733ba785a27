"""The fault-injection cases of issue 23, as plain functions of a seed, shared by the tests
(tests/faults/test_faults.py, 3 seeds in CI: ``EDGEKIT_FAULT_SEEDS``) and benchmarks/faults.py (20).

Each case runs real ``edgekit`` processes, sends real signals, fills a real tmpfs, and then checks
what a user would find: the exit code and last line as documented, no staging folder left, no process
of the run left, earlier runs and the user's own files byte-identical, and a manifest that is valid
JSON holding every record. A case raises ``AssertionError`` listing every expectation that failed,
with what was observed; ``Skip`` where it cannot run here (not root, no tmpfs).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import time
from pathlib import Path

from tests.faults.procs import Edgekit, Tmpfs, children, cmdline, hashes, run, run_all, sha256

SEEDS_ENV = "EDGEKIT_FAULT_SEEDS"
STOP_WITHIN = 20.0  # seconds from a signal until the process and all its children are gone
WORKER_GONE_WITHIN = 5.0  # seconds from a SIGKILL of the parent until its worker is gone
EXPORT_TIMEOUT = 300.0
EARLIER = "earlier-run"  # a previous run in the same parent folder, which nothing may touch
DECOY = ".mydata.partial-99999"  # the user's own folder, named like a staging folder, without the marker

# The export commands the signal cases interrupt: small and fast, every format.
EXPORTS = {
    "lenet5": ("lenet5", "--int8", "--calib-size", "8"),
    "lstm": ("lstm", "--int8", "--calib-size", "8"),
}
# Where a signal is aimed: (name, event, seconds of seeded delay after it at most). Events: "start"
# (the process started), "line" (its first stderr line: the model is loaded), "dir:F" (format F's
# folder appeared in the staging folder: its conversion has begun), "end" (the staging folder holds
# the manifest or OUT exists: the run is complete). Seed i takes anchor i % len: the first three are
# what CI runs, so CI hits both worker formats' conversions (lenet5) and the start.
ANCHORS = {
    "lenet5": [("during executorch", "dir:executorch", 3.0), ("during tflite", "dir:tflite", 3.0),
               ("from the start", "start", 8.0), ("during onnx", "dir:onnx", 2.0),
               ("during openvino", "dir:openvino", 2.0), ("after loading", "line", 1.5),
               ("at the end", "end", 0.5)],
    "lstm": [("during executorch", "dir:executorch", 3.0), ("from the start", "start", 8.0),
             ("during openvino", "dir:openvino", 2.0), ("during tflite", "dir:tflite", 3.0),
             ("during onnx", "dir:onnx", 2.0), ("after loading", "line", 1.5), ("at the end", "end", 0.5)],
}
FORMATS = ("onnx", "tflite", "openvino", "executorch")


def seeds(default: int = 3) -> list[int]:
    """The seeds to run: ``EDGEKIT_FAULT_SEEDS`` of them (3 in CI; benchmarks/faults.py runs 20)."""
    value = os.environ.get(SEEDS_ENV, "").strip()
    return list(range(int(value) if value.isdigit() else default))


class Checks:
    """Expectations of one case: every failed one is listed, then raised together."""

    def __init__(self, what: str):
        self.what = what
        self.failed: list[str] = []
        self.observed: list[str] = []

    def expect(self, ok: bool, message: str) -> bool:
        if not ok:
            self.failed.append(message)
        return bool(ok)

    def note(self, message: str) -> None:
        self.observed.append(message)

    def done(self) -> None:
        if self.failed:
            lines = [f"{self.what}:", *(f"  - {m}" for m in self.failed)]
            if self.observed:
                lines += ["  observed:", *(f"    {m}" for m in self.observed)]
            raise AssertionError("\n".join(lines))


# ---------------------------------------------------------------- shared checks


def prepare_parent(parent: Path, earlier_run: Path | None) -> dict[str, str]:
    """The parent folder of an --out as a user has it: an earlier run, their notes, and a folder of
    theirs named like a staging folder (no edgekit marker). Returns the hash of every file."""
    parent.mkdir(parents=True, exist_ok=True)
    if earlier_run is not None:
        shutil.copytree(earlier_run, parent / EARLIER)
    (parent / DECOY).mkdir()
    (parent / DECOY / "data.bin").write_bytes(b"the user's own data\n")
    (parent / "notes.txt").write_text("the user's notes\n")
    return hashes(parent)


def check_parent(c: Checks, parent: Path, before: dict[str, str], out: Path | None) -> None:
    """Nothing left behind beside ``out`` (no staging folder), every earlier file byte-identical."""
    names = {n for n in os.listdir(parent)}
    expected = {rel.split("/")[0] for rel in before}
    if out is not None:
        expected.add(out.name)
    left = sorted(names - expected)
    c.expect(not left, f"left behind in {parent}: {left} (a staging folder?)")
    now = hashes(parent)
    changed = sorted(rel for rel, h in before.items() if now.get(rel) != h)
    c.expect(not changed, f"earlier files changed or removed: {changed[:8]}")


def check_complete(c: Checks, out: Path, formats=FORMATS) -> None:
    """OUT is a complete run: a valid manifest, every artefact ok, on disk with its sha256."""
    try:
        m = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        c.expect(False, f"{out}/manifest.json is not valid JSON: {exc}")
        return
    c.expect("finished" in m, "the manifest has no 'finished' time")
    arts = m.get("artefacts", [])
    c.expect({a.get("format") for a in arts} == set(formats),
             f"the manifest's formats {sorted({a.get('format') for a in arts})} are not {sorted(formats)}")
    for a in arts:
        c.expect(a.get("status") == "ok", f"{a.get('format')} {a.get('precision')}: status {a.get('status')}")
        for f in a.get("files", []):
            path = out / f["path"]
            c.expect(path.is_file() and sha256(path) == f["sha256"], f"{f['path']} missing or not its sha256")


def check_no_traceback(c: Checks, p: Edgekit) -> None:
    c.expect("Traceback" not in p.stderr, "a traceback was printed")
    c.expect("internal error" not in p.stderr, "an internal error was printed")


def check_gone(c: Checks, p: Edgekit, deadline: float, what: str) -> None:
    left = p.wait_tree_gone(deadline)
    c.expect(not left, f"processes still alive {what}: {left}")
    kinds: dict[str, int] = {}
    for _, cmd in p.tree.seen.values():
        kind = ("worker (spawn_main)" if "spawn_main" in cmd
                else "resource tracker" if "resource_tracker" in cmd else cmd[:60])
        kinds[kind] = kinds.get(kind, 0) + 1
    c.note(f"processes seen under it: {kinds or 'none'}")


def _stages(parent: Path, known: set[str], out: Path) -> list[Path]:
    try:
        return [parent / n for n in os.listdir(parent) if n not in known and n != out.name]
    except OSError:
        return []


def _event(p: Edgekit, parent: Path, known: set[str], out: Path, event: str) -> bool:
    if event == "start":
        return True
    if event == "line":
        return bool(p.err_lines)
    stages = _stages(parent, known, out)
    if event.startswith("dir:"):
        return any((s / event[4:]).is_dir() for s in stages)
    if event == "end":
        return out.exists() or any((s / "manifest.json").is_file() for s in stages)
    raise ValueError(event)


def _event_files_done(parent: Path, known: set[str], out: Path) -> bool:
    return out.exists() or any((s / "manifest.json").is_file() for s in _stages(parent, known, out))


# ---------------------------------------------------------------- case 1: SIGTERM / SIGINT


def signal_export(model: str, signame: str, seed: int, workdir: Path, earlier_run: Path | None,
                  second: bool = False) -> None:
    """SIGTERM (to the process, as `kill` or a CI runner sends it) or SIGINT (to the process group, as
    a terminal's Ctrl-C) at a seeded point of an export of ``model``; with ``second``, the same signal
    again a seeded 0.3-2 s later. Documented: exit 128+signal, the last line `stopped by SIG...;
    nothing was written to OUT`, the process and every child gone within 20 s, no staging folder, OUT
    absent; or, when the run was already complete, exit 0 with OUT complete."""
    sig = getattr(signal, signame)
    rng = random.Random(f"{model}-{signame}-{seed}-{second}")
    name, event, most = ANCHORS[model][seed % len(ANCHORS[model])]
    delay = rng.uniform(0.0, most)
    c = Checks(f"{signame}{' twice' if second else ''} {name} (+{delay:.2f} s) of `edgekit export "
               f"{' '.join(EXPORTS[model])}` (seed {seed})")
    parent = workdir / "runs"
    before = prepare_parent(parent, earlier_run)
    known = set(os.listdir(parent))
    out = parent / "run"
    p = Edgekit("export", *EXPORTS[model], "--out", out)
    try:
        deadline = time.monotonic() + EXPORT_TIMEOUT
        while p.running() and time.monotonic() < deadline and not _event(p, parent, known, out, event):
            time.sleep(0.01)
        fire = time.monotonic() + delay
        while p.running() and time.monotonic() < fire:
            time.sleep(0.01)
        if not p.running():  # it finished before the point: nothing was interrupted
            c.note(f"the export ended before the signal (exit {p.proc.returncode})")
            p.wait(5)
            c.expect(p.proc.returncode == 0, f"the export failed on its own: {p.describe()}")
            check_complete(c, out)
            check_parent(c, parent, before, out)
            c.done()
            return
        complete = _event_files_done(parent, known, out)
        t_sig = p.send(sig, group=(sig == signal.SIGINT))
        c.note(f"{signame} sent at {t_sig - p.t0:.1f} s; the run's work was "
               f"{'complete' if complete else 'not complete'} then")
        stop_from = t_sig
        if second:
            time.sleep(rng.uniform(0.3, 2.0))
            if p.running():
                stop_from = p.send(sig, group=(sig == signal.SIGINT))
                c.note(f"second {signame} sent at {stop_from - p.t0:.1f} s")
        code = p.wait(stop_from + STOP_WITHIN - time.monotonic())
        if code is None:
            c.expect(False, f"still running {STOP_WITHIN:.0f} s after {signame}: the signal was lost")
        check_gone(c, p, stop_from + STOP_WITHIN, f"{STOP_WITHIN:.0f} s after {signame}")
        if code is None:
            p.wait(EXPORT_TIMEOUT)  # see how it ends, for the report
            c.note(f"it then ended by itself, {time.monotonic() - t_sig:.0f} s after the signal")
    finally:
        p.finish()
    code = p.proc.returncode
    check_no_traceback(c, p)
    if code == 0 and complete:
        check_complete(c, out)
        check_parent(c, parent, before, out)
    else:
        c.expect(code == 128 + sig, f"exit code {code}, not {128 + sig} ({signame})")
        last = p.last_line()
        c.expect(f"stopped by {signame}" in last, f"the last line does not name {signame}: {last!r}")
        c.expect(f"nothing was written to {out}" in last,
                 f"the last line does not say `nothing was written to {out}`: {last!r}")
        c.expect(not out.exists(), f"{out} was written after {signame}")
        check_parent(c, parent, before, None)
    c.note(p.describe())
    c.done()


# ---------------------------------------------------------------- case 2: SIGKILL of the parent


def _workers(p: Edgekit) -> dict[int, str]:
    """The export's worker processes alive now: its own children, not multiprocessing's resource
    tracker, nor a fork that has not yet run its program (it still shows the parent's command)."""
    own = cmdline(p.pid)
    return {pid: cmd for pid in children(p.pid) if (cmd := cmdline(pid))
            and cmd != own and "resource_tracker" not in cmd}


def _converting(parent: Path, known: set[str], out: Path) -> bool:
    """ExecuTorch's folder in the staging folder: its conversion has begun (in the worker, with
    today's split of lenet5's formats; a worker still waiting for its work would stop at once on the
    closed pipe, which proves nothing)."""
    return any((s / "executorch").is_dir() for s in _stages(parent, known, out))


def sigkill_parent(seed: int, workdir: Path, earlier_run: Path | None) -> None:
    """SIGKILL of the export's own process while its worker converts: the worker is gone within a few
    seconds; `clean --dry-run` lists the staging folder only once no process of the run is alive;
    `clean` removes it and nothing of the user's."""
    rng = random.Random(f"sigkill-{seed}")
    delay = rng.uniform(0.5, 3.0)
    c = Checks(f"SIGKILL of the export {delay:.2f} s after its worker began converting (seed {seed})")
    parent = workdir / "runs"
    before = prepare_parent(parent, earlier_run)
    known = set(os.listdir(parent))
    out = parent / "run"
    p = Edgekit("export", *EXPORTS["lenet5"], "--out", out, env={"EDGEKIT_EXPORT_JOBS": "2"})
    try:
        deadline = time.monotonic() + EXPORT_TIMEOUT
        while (p.running() and time.monotonic() < deadline
               and not (_workers(p) and _converting(parent, known, out))):
            time.sleep(0.02)
        fire = time.monotonic() + delay
        while p.running() and time.monotonic() < fire:
            time.sleep(0.02)
        workers = _workers(p)
        if not c.expect(p.running() and bool(workers), "no worker process alive to outlive its parent"):
            c.note(p.describe())
            c.done()
            return
        c.note(f"workers before the kill: {workers}")
        t_kill = p.send(signal.SIGKILL)
        p.wait(5)
        alive_then = p.tree.descendants_alive()
        dry = run("clean", parent, "--dry-run", timeout=60)
        alive_after = p.tree.descendants_alive()
        stages = _stages(parent, known, out)
        listed = [s for s in stages if str(s) in dry.stdout or s.name in dry.stdout]
        if alive_then and alive_after:
            c.expect(not listed, f"`clean --dry-run` listed {[s.name for s in listed]} while a process of "
                                 f"the run was alive: {alive_after}")
        check_gone(c, p, t_kill + WORKER_GONE_WITHIN,
                   f"{WORKER_GONE_WITHIN:.0f} s after SIGKILL of the parent (the worker outlived it)")
    finally:
        p.finish()
    c.expect(not out.exists(), f"{out} exists after the export was killed")
    stages = _stages(parent, known, out)
    c.note(f"left by the killed run: {[s.name for s in stages]}")
    dry = run("clean", parent, "--dry-run", timeout=60)
    for s in stages:
        c.expect(str(s) in dry.stdout, f"`clean --dry-run` does not list {s.name} once the run is gone: "
                                       f"{dry.stdout.strip()!r}")
    c.expect(not [line for line in dry.stdout.splitlines() if DECOY in line and not line.startswith("left ")],
             f"`clean --dry-run` lists the user's {DECOY} as removable: {dry.stdout.strip()!r}")
    cl = run("clean", parent, timeout=60)
    c.expect(cl.proc.returncode == 0, f"`clean` failed: {cl.describe()}")
    check_no_traceback(c, cl)
    check_parent(c, parent, before, None)
    c.done()


# ---------------------------------------------------------------- case 3: a full disk


def full_disk(fmt: str, seed: int, workdir: Path) -> None:
    """`export lenet5 --int8 --to FMT` onto a tmpfs with a seeded 8-200 kB free (lenet5's fp32
    artefacts take about 250 kB in every format, so the disk fills during FMT's write). Documented:
    exit 1, last line `no space left on DEVICE: N MB free, M needed`, no staging folder (the disk is
    as free as before), no process left."""
    rng = random.Random(f"disk-{fmt}-{seed}")
    leave = rng.randint(8_000, 200_000)
    with Tmpfs(workdir / "disk", 4 * 1024 * 1024) as fs:
        parent = fs.where / "runs"
        before = prepare_parent(parent, None)
        free = fs.fill(leave)
        c = Checks(f"a full disk ({free:,} bytes free) at the {fmt} write (seed {seed})")
        out = parent / "run"
        p = Edgekit("export", *EXPORTS["lenet5"], "--to", fmt, "--out", out)
        try:
            code = p.wait(EXPORT_TIMEOUT)
            c.expect(code is not None, f"still running after {EXPORT_TIMEOUT:.0f} s")
            check_gone(c, p, time.monotonic() + STOP_WITHIN, "after the export ended")
        finally:
            p.finish()
        code = p.proc.returncode
        aborted = " (killed by a signal: an abort?)" if code < 0 else ""
        c.expect(code == 1, f"exit code {code}, not 1{aborted}")
        last = p.last_line()
        c.expect("no space left on" in last, f"the last line is not `no space left on ...`: {last!r}")
        check_no_traceback(c, p)
        if out.exists():  # a run that keeps what was written before the disk filled: a valid manifest
            c.note(f"{out} was kept")
            try:
                json.loads((out / "manifest.json").read_text())
            except (OSError, ValueError) as exc:
                c.expect(False, f"{out} was kept without a valid manifest: {exc}")
        else:
            c.expect(fs.free() >= free - 16_384,
                     f"the disk stays full: {fs.free():,} bytes free, {free:,} before")
        check_parent(c, parent, before, out if out.exists() else None)
        c.note(p.describe())
        c.done()


# ---------------------------------------------------------------- case 4: a read-only run folder

READ_ONLY = {
    "eval": (("eval", "{run}", "--dataset", "digits", "--limit", "30"), ("onnx", "%")),
    "bench": (("bench", "{run}", "--iters", "3", "--warmup", "1", "--no-torch"), ("onnx", "ms")),
    "gate": (("gate", "{run}", "--max-drop", "50"), ("onnx",)),
}
NOT_STORED = re.compile(r"not (been )?(stored|saved|recorded|written)", re.IGNORECASE)
WHY_NOT = re.compile(r"read-only|permission|not writable|EROFS|EACCES", re.IGNORECASE)


def read_only(command: str, seed: int, workdir: Path, built_run: Path) -> None:
    """eval/bench/gate on a run folder on a tmpfs remounted read-only: the results printed, then one
    line saying they were not stored and why; exit 2; the folder unchanged."""
    args, shown = READ_ONLY[command]
    with Tmpfs(workdir / "ro", 64 * 1024 * 1024) as fs:
        run_dir = fs.where / "run"
        shutil.copytree(built_run, run_dir)
        before = hashes(run_dir)
        fs.remount_ro()
        c = Checks(f"`edgekit {command}` of a read-only run folder")
        p = Edgekit(*(a.format(run=run_dir) for a in args))
        try:
            code = p.wait(EXPORT_TIMEOUT)
            check_gone(c, p, time.monotonic() + STOP_WITHIN, "after the command ended")
        finally:
            p.finish()
        code = p.proc.returncode
        c.expect(code == 2, f"exit code {code}, not 2")
        c.expect(all(s in p.stdout for s in shown), f"the results were not printed (stdout has no {shown})")
        last = p.last_line()
        c.expect(bool(NOT_STORED.search(last)), f"the last line does not say they were not stored: {last!r}")
        c.expect(bool(WHY_NOT.search(last)), f"the last line does not say why (read-only): {last!r}")
        check_no_traceback(c, p)
        c.expect(hashes(run_dir) == before, "the read-only run folder changed")
        c.note(p.describe())
        c.done()


# ---------------------------------------------------------------- case 5: four commands at once


def _dicts(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _dicts(v)
    elif isinstance(node, list):
        for v in node:
            yield from _dicts(v)


def _same_rows(stored: list, printed: list) -> bool:
    if not isinstance(stored, list) or len(stored) != len(printed):
        return False
    for a, b in zip(stored, printed):
        if not isinstance(a, dict) or not isinstance(b, dict):
            return False
        common = set(a) & set(b)
        if not {"format", "precision"} <= common or any(a[k] != b[k] for k in common):
            return False
    return True


def holds_record(manifest: dict, printed: dict) -> bool:
    """Whether ``manifest`` holds the record a command printed with --json (same time, same rows)."""
    rows_key = "checks" if "checks" in printed else "results"
    for d in _dicts(manifest):
        if d.get("created") != printed.get("created"):
            continue
        if rows_key == "results" and _same_rows(d.get("results"), printed["results"]):
            return True
        same = d.get("passed") == printed.get("passed") and d.get("rules") == printed.get("rules")
        if rows_key == "checks" and same:
            return True
    return False


def concurrent(seed: int, workdir: Path, built_run: Path) -> None:
    """Two benches (same target), an eval and a gate of one run at once: each exits 0, and the
    manifest is valid JSON holding all four records and the export's artefacts unchanged."""
    rng = random.Random(f"concurrent-{seed}")
    run_dir = workdir / "run"
    shutil.copytree(built_run, run_dir)
    arts_before = [(a["format"], a["precision"], a.get("path"), a.get("sha256"))
                   for a in json.loads((run_dir / "manifest.json").read_text())["artefacts"]]
    commands = [("bench", run_dir, "--iters", "5", "--warmup", "1", "--no-torch", "--json"),
                ("bench", run_dir, "--target", "local-cpu", "--iters", "5", "--warmup", "1", "--no-torch",
                 "--json"),
                ("eval", run_dir, "--dataset", "digits", "--limit", "30", "--json"),
                ("gate", run_dir, "--max-drop", "50", "--json")]
    rng.shuffle(commands)
    names = ", ".join(a[0] for a in commands)
    c = Checks(f"{len(commands)} commands on one run at once ({names}; seed {seed})")
    procs = []
    for args in commands:
        procs.append(Edgekit(*args))
        time.sleep(rng.uniform(0.0, 0.5))
    printed = []
    for p in procs:
        try:
            code = p.wait(EXPORT_TIMEOUT)
            check_gone(c, p, time.monotonic() + STOP_WITHIN, f"after `{p.args[0]}` ended")
        finally:
            p.finish()
        code = p.proc.returncode
        c.expect(code == 0, f"`{p.args[0]}` exit code {code}, not 0: {p.last_line()!r}")
        check_no_traceback(c, p)
        try:
            printed.append((p.args[0], json.loads(p.stdout)))
        except ValueError:
            c.expect(False, f"`{p.args[0]} --json` printed no JSON: {p.stdout[:200]!r}")
    try:
        m = json.loads((run_dir / "manifest.json").read_text())
    except ValueError as exc:
        c.expect(False, f"the manifest is not valid JSON: {exc}")
        c.done()
        return
    for command, record in printed:
        c.expect(holds_record(m, record), f"the manifest lost the record of `{command}` "
                                          f"(created {record.get('created')})")
    arts = [(a["format"], a["precision"], a.get("path"), a.get("sha256")) for a in m.get("artefacts", [])]
    c.expect(arts == arts_before, "the export's artefact entries changed")
    c.done()


# ---------------------------------------------------------------- case 6: swapped and missing artefacts

SWAPPED = "onnx/model.int8.onnx"
READERS = {  # command -> (args, documented exit code)
    "eval": (("eval", "{run}", "--dataset", "digits", "--limit", "30"), 2),
    "bench": (("bench", "{run}", "--iters", "3", "--warmup", "1", "--no-torch"), 2),
    "check": (("check", "{run}"), 3),
    "inspect": (("inspect", "{run}", "--samples", "4", "--formats", "onnx"), 2),
}


def _copy(built_run: Path, dest: Path) -> tuple[Path, bytes]:
    shutil.copytree(built_run, dest)
    return dest, (dest / "manifest.json").read_bytes()


def swapped(seed: int, workdir: Path, built_run: Path, other_model_file: Path) -> None:
    """One artefact replaced by another model's file: eval, bench, check and inspect each refuse
    with `changed since export` (exit 2; check 3) and store nothing; `eval --accept-changed` runs."""
    c = Checks(f"{SWAPPED} swapped for another model's (seed {seed})")
    runs, commands = [], []
    for i, (_command, (args, _expected)) in enumerate(READERS.items()):
        run_dir, manifest = _copy(built_run, workdir / f"swapped-{i}")
        shutil.copyfile(other_model_file, run_dir / SWAPPED)
        runs.append((run_dir, manifest))
        commands.append(tuple(a.format(run=run_dir) for a in args))
    accepted, _ = _copy(built_run, workdir / "swapped-accepted")
    shutil.copyfile(other_model_file, accepted / SWAPPED)
    commands.append(("eval", accepted, "--dataset", "digits", "--limit", "30", "--accept-changed", "--json"))
    done = run_all(commands)
    for (command, (_args, expected)), (run_dir, manifest), p in zip(READERS.items(), runs, done):
        code = p.proc.returncode
        c.expect(code == expected, f"`{command}` exit code {code}, not {expected}")
        c.expect("changed since export" in p.stderr, f"`{command}` does not say `changed since export`: "
                                                     f"{p.last_line()!r}")
        check_no_traceback(c, p)
        if command == "check":  # check records its verdict ("will not run: changed"); nothing else changes
            now, was = json.loads((run_dir / "manifest.json").read_bytes()), json.loads(manifest)
            c.expect({k: v for k, v in now.items() if k not in ("check", "history")}
                     == {k: v for k, v in was.items() if k not in ("check", "history")},
                     "`check` changed the manifest beyond its own record")
        else:
            c.expect((run_dir / "manifest.json").read_bytes() == manifest,
                     f"`{command}` changed the manifest")
        c.expect(not p.tree.descendants_alive(), f"`{command}` left processes behind")
        c.note(p.describe())
    p = done[-1]
    c.expect(p.proc.returncode in (0, 1),
             f"`eval --accept-changed` exit code {p.proc.returncode}, not 0 or 1: {p.last_line()!r}")
    check_no_traceback(c, p)
    try:
        rows = {(r["format"], r["precision"]): r for r in json.loads(p.stdout)["results"]}
        c.expect(rows.get(("openvino", "int8"), {}).get("status") == "ok",
                 "`eval --accept-changed` did not score the unchanged artefacts")
        json.loads((accepted / "manifest.json").read_text())
    except (ValueError, KeyError, TypeError) as exc:
        c.expect(False, f"`eval --accept-changed --json`: no results or an invalid manifest ({exc})")
    c.note(p.describe())
    c.done()


def missing(seed: int, workdir: Path, built_run: Path) -> None:
    """One artefact deleted: eval scores the others and shows that one as `missing` (exit 1); check
    exits 3; the manifest stays valid JSON with the export's entries."""
    c = Checks(f"{SWAPPED} deleted (seed {seed})")
    run_dir, _ = _copy(built_run, workdir / "missing-eval")
    (run_dir / SWAPPED).unlink()
    checked, _ = _copy(built_run, workdir / "missing-check")
    (checked / SWAPPED).unlink()
    arts_before = json.loads((run_dir / "manifest.json").read_text())["artefacts"]
    p, q = run_all([("eval", run_dir, "--dataset", "digits", "--limit", "30"), ("check", checked)])
    c.expect(p.proc.returncode == 1, f"`eval` exit code {p.proc.returncode}, not 1: {p.last_line()!r}")
    check_no_traceback(c, p)
    rows = [line for line in p.stdout.splitlines() if "onnx" in line and "int8" in line]
    c.expect(any("missing" in line for line in rows), f"`eval` shows no `missing` row for onnx int8: {rows}")
    scored = [line for line in p.stdout.splitlines() if "openvino" in line and "%" in line]
    c.expect(len(scored) == 2, "`eval` did not score the other artefacts (no openvino rows with a figure)")
    try:
        m = json.loads((run_dir / "manifest.json").read_text())
        c.expect([a.get("sha256") for a in m["artefacts"]] == [a.get("sha256") for a in arts_before],
                 "the export's artefact entries changed")
    except (ValueError, KeyError) as exc:
        c.expect(False, f"the manifest is not valid: {exc}")
    c.note(p.describe())
    c.expect(q.proc.returncode == 3, f"`check` exit code {q.proc.returncode}, not 3: {q.last_line()!r}")
    check_no_traceback(c, q)
    c.note(q.describe())
    c.done()
