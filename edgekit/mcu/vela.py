"""Arm Ethos-U microNPUs through Vela (``ethos-u-vela``): compile an int8 ``.tflite`` for an Ethos-U
profile and read back Vela's estimate as data: cycles and time, SRAM and flash used, which operators
run on the NPU and which fall back to the Cortex-M CPU (and why), and per-layer cycles.

Every figure is Vela's estimate from its cost model, not a measurement. Vela runs in a child
process: it can take minutes on a big model and dies with SIGSEGV on a damaged file; either ends
here as one line (``DataError``) naming the model and Vela's last words. What is read, all written
by Vela 5.2 into ``out_dir`` (and kept there, with its printout in ``<stem>_vela.log``):
- ``<stem>_summary_<system_config>.csv``: one row with the totals;
- ``<stem>_per-layer.csv`` (written with ``--verbose-performance``): one row per operator, NPU and
  CPU; Vela writes it without CSV quoting, so its last column (the name) is split off last;
- its printout: ``Warning (supported operators) operator: OP, ofm: 'NAME'`` and ``Reason: ...`` for
  each operator left on the CPU;
- ``<stem>_vela.tflite``: the compiled model, whose ``ethos-u`` custom operators hold the NPU's
  command streams; every other operator in it runs on the CPU (the names and op types reported).
"""

from __future__ import annotations

import configparser
import csv
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgekit.errors import DataError, MissingDependencyError, UsageError

DIST = "ethos-u-vela"
EXTRA = "mcu"
NPU_OP = "ethos-u"  # the custom operator that holds an NPU command stream in a compiled .tflite
OWN_CONFIG = "Arm/vela.ini"
WARNING = re.compile(r"^Warning \(supported operators\) operator: (\S+), ofm: '(.*)'\s*$")
OP_COUNT = re.compile(r"^(CPU|NPU) operators = (\d+)")
# The memories of Vela's .ini (axi0_port/axi1_port values) and the column prefixes of its CSVs.
MEMORIES = {"Sram": "sram", "Dram": "dram", "OnChipFlash": "on_chip_flash", "OffChipFlash": "off_chip_flash"}
LAYER_ACCESS = {"SRAM AC": "sram", "DRAM AC": "dram", "OnFlash AC": "on_chip_flash",
                "OffFlash AC": "off_chip_flash"}


@dataclass(frozen=True)
class VelaConfig:
    """One Ethos-U target profile's Vela settings."""

    accelerator: str  # Vela's --accelerator-config: "ethos-u55-128", "ethos-u65-256", ...
    system_config: str  # a [System_Config.*] of the .ini: "Ethos_U55_High_End_Embedded", ...
    memory_mode: str  # a [Memory_Mode.*] of the .ini: "Shared_Sram", "Dedicated_Sram", ...
    config_file: str = OWN_CONFIG  # Vela's own ("Arm/vela.ini") or the path of a user's .ini
    optimise: str = "Performance"  # or "Size"
    # SRAM for the arena/cache in bytes (--arena-cache-size): the memory mode's, or Vela's whole
    # address space, when None. With Performance it is a target: Shared_Sram may still use more.
    arena_cache_size: int | None = None

    def config_path(self) -> Path:
        """The .ini file itself: Vela's own (``Folder/name.ini`` in its config_files) or a user's."""
        given = Path(self.config_file).expanduser()
        if _vela_own(self.config_file):
            own = _config_files_dir() / self.config_file
            if own.is_file():
                return own
        if given.is_file():
            return given.resolve()
        raise UsageError(f"no Vela configuration file {self.config_file}",
                         hint=f"give Vela's own ({OWN_CONFIG}) or the path of an .ini file")

    def args(self) -> list[str]:
        """The vela command-line arguments for these settings."""
        path = self.config_path()  # Vela's own by its short name, a user's by its full path
        ini = self.config_file if path == _config_files_dir() / self.config_file else str(path)
        return ["--accelerator-config", self.accelerator, "--system-config", self.system_config,
                "--memory-mode", self.memory_mode, "--config", ini, "--optimise", self.optimise,
                *(["--arena-cache-size", str(self.arena_cache_size)] if self.arena_cache_size else [])]


def _vela_own(config_file: str) -> bool:
    """Vela reads ``Folder/name.ini`` (two parts, relative) from its own config_files folder."""
    parts = Path(config_file).parts
    return len(parts) == 2 and not config_file.startswith((".", "~", "/"))


def _config_files_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("ethosu")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(DIST, EXTRA)
    return Path(list(spec.submodule_search_locations)[0]) / "config_files"


def version() -> str:
    """ethos-u-vela's version ("5.2.0")."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(DIST)
    except PackageNotFoundError:
        raise MissingDependencyError(DIST, EXTRA) from None


# ---------------------------------------------------------------- the system configuration


def _ini_value(ini: configparser.ConfigParser, section: str, key: str) -> str | None:
    """``key`` of ``section``, following ``inherit=`` as Vela does (the section's own value wins)."""
    value, chain = None, []
    while section and section not in chain and ini.has_section(section):
        chain.append(section)
        section = ini.get(section, "inherit", fallback=None)
    for name in reversed(chain):  # the furthest parent first, the section itself last
        value = ini.get(name, key, fallback=value)
    return value


def system(config: VelaConfig) -> dict:
    """The clocks and memories Vela uses for ``config``, read from its .ini: core clock, the memory
    behind each AXI port with its clock (core clock x ``<Memory>_clock_scale``), and where the memory
    mode puts the weights (const), the tensor arena and the cache."""
    path = config.config_path()
    ini = configparser.ConfigParser()
    try:
        ini.read(path)
    except configparser.Error as exc:
        why = str(exc).splitlines()[0]
        raise UsageError(f"Vela configuration file {path} cannot be read: {why}") from None
    sections = {"system_config": "System_Config.", "memory_mode": "Memory_Mode."}
    for field, prefix in sections.items():
        name = getattr(config, field)
        if not ini.has_section(prefix + name):
            known = sorted(s[len(prefix):] for s in ini.sections() if s.startswith(prefix))
            raise UsageError(f"{path.name} has no {field.replace('_', ' ')} {name}",
                             hint=f"known: {', '.join(known)}")
    sc, mm = "System_Config." + config.system_config, "Memory_Mode." + config.memory_mode
    core = float(_ini_value(ini, sc, "core_clock") or 1)
    ports = {p: _ini_value(ini, sc, f"{p}_port") for p in ("axi0", "axi1")}
    clocks = {}
    for memory in filter(None, ports.values()):
        scale = float(_ini_value(ini, sc, f"{memory.lower()}_clock_scale") or 1)
        clocks[memory] = core * scale
    areas = {a: _ini_value(ini, mm, f"{a}_mem_area") for a in ("const", "arena", "cache")}
    return {
        "core_clock_hz": core,
        "axi0_port": ports["axi0"], "axi1_port": ports["axi1"],
        "memory_clocks_hz": clocks,
        # Axi0/Axi1 -> the memory on that port
        "weights_in": ports.get((areas["const"] or "").lower()),
        "arena_in": ports.get((areas["arena"] or "").lower()),
        "cache_in": ports.get((areas["cache"] or "").lower()),
        "config_path": str(path),
    }


# ---------------------------------------------------------------- running Vela


def compile_estimate(tflite: Path, config: VelaConfig, out_dir: Path, timeout: float = 600) -> dict:
    """Compile ``tflite`` with Vela for ``config`` into ``out_dir`` (``<stem>_vela.tflite``, Vela's
    summary and per-layer CSVs, its printout in ``<stem>_vela.log``) and return its estimate as a
    JSON-able dict: time, cycles, memory, operators on the NPU and the CPU, per-layer cycles."""
    tflite, out_dir = Path(tflite), Path(out_dir)
    if not tflite.is_file():
        raise DataError(f"no such file: {tflite}")
    tool = f"{DIST} {version()}"
    sysinfo = system(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = tflite.stem
    files = {"compiled": out_dir / f"{stem}_vela.tflite",
             "summary_csv": out_dir / f"{stem}_summary_{config.system_config}.csv",
             "per_layer_csv": out_dir / f"{stem}_per-layer.csv", "log": out_dir / f"{stem}_vela.log"}
    for old in files.values():  # never read an earlier compile's files as this one's
        old.unlink(missing_ok=True)
    log, seconds = _run(tflite.resolve(), config, out_dir.resolve(), timeout, files["log"])
    if not files["compiled"].is_file() or not files["summary_csv"].is_file():
        raise DataError(f"Vela wrote no compiled model for {tflite.name} ({config.accelerator}): "
                        f"{_last_line(log)}")
    estimate = {"estimated": True, "tool": tool,
                "config": {**asdict(config), **sysinfo},
                **_summary(files["summary_csv"], [MEMORIES.get(m, m) for m in sysinfo["memory_clocks_hz"]])}
    estimate.update(_operators(tflite, files["compiled"], log))
    if estimate["ops"]["cpu"]:
        estimate["note"] = (f"Vela times the NPU only: the {estimate['ops']['cpu']} operators on the CPU "
                            "add their Cortex-M time to inference_ms")
    total = estimate["cycles"]
    estimate["layers"] = _layers(files["per_layer_csv"], total) if files["per_layer_csv"].is_file() else []
    estimate.update(
        compiled=str(files["compiled"]), compiled_bytes=files["compiled"].stat().st_size,
        model_bytes=tflite.stat().st_size, compile_s=round(seconds, 3),
        files={k: str(v) for k, v in files.items() if k != "compiled" and v.is_file()},
        warnings=_warnings(log))
    return estimate


def _run(tflite: Path, config: VelaConfig, out_dir: Path, timeout: float,
         log_path: Path) -> tuple[str, float]:
    """Vela in a child Python; (its printout, seconds). A crash, an error or a timeout: DataError."""
    command = [sys.executable, "-m", "ethosu.vela", str(tflite), *config.args(), "--output-dir", str(out_dir),
               "--verbose-performance", "--show-cpu-operations"]
    what = f"{tflite.name} for {config.accelerator}"
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=timeout,
                              cwd=out_dir)
    except subprocess.TimeoutExpired:
        raise DataError(f"Vela did not finish compiling {what} within {timeout:g} s",
                        hint="a smaller model, or a longer timeout") from None
    seconds = time.perf_counter() - start
    log = done.stdout + ("\n" + done.stderr if done.stderr else "")
    log_path.write_text(log)
    if done.returncode == 2:  # argparse: a setting Vela does not know
        raise UsageError(f"Vela refused its settings for {what}: {_last_line(done.stderr or done.stdout)}")
    if done.returncode != 0:
        code = done.returncode
        killer = next((s.name for s in signal.Signals if s == -code), f"signal {-code}")
        how = f"failed (exit {code})" if code > 0 else f"crashed ({killer})"
        raise DataError(f"Vela {how} compiling {what}: {_last_line(done.stderr or done.stdout)}",
                        hint="is it a complete .tflite that LiteRT loads?")
    return log, seconds


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "no output"
    last = re.sub(r"^[\w.]*(Error|Exception): ", "", lines[-1])  # "RuntimeError: Compilation failed: ..."
    return last[:300]


# ---------------------------------------------------------------- reading what Vela wrote


def _number(value: str) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if x != x else x  # NaN (no NPU work) -> None


def _kib(value: str) -> int:
    return round((_number(value) or 0.0) * 1024)


def _summary(path: Path, on_ports: list[str]) -> dict:
    """Vela's summary CSV (one row): memory in KiB, bandwidth in GiB/s, time in seconds. The peak
    bandwidths of the memories on the AXI ports (``on_ports``)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError(f"Vela's summary {path.name} is empty")
    r = rows[0]
    cycles = int(_number(r["cycles_total"]) or 0)
    seconds = _number(r["inference_time"]) or 0.0
    ips = _number(r["inferences_per_second"])
    used = {m: _kib(r[f"{m}_memory_used"]) for m in MEMORIES.values()}
    traffic = {}
    for m in MEMORIES.values():
        parts = {k: int(_number(r[f"{m}_{k}_bytes"]) or 0)
                 for k in ("feature_map_read", "feature_map_write", "weight_read", "weight_write", "total")}
        if any(parts.values()):
            traffic[m] = parts
    access = {m: int(_number(r[f"cycles_{m}_access"]) or 0) for m in MEMORIES.values()}
    return {
        "inference_ms": seconds * 1000.0,
        "cycles": cycles,
        "npu_cycles": int(_number(r["cycles_npu"]) or 0),
        "memory_access_cycles": {m: c for m, c in access.items() if c},
        "inferences_per_s": ips,
        "sram_bytes": used["sram"],
        "flash_bytes": used["off_chip_flash"] + used["on_chip_flash"],
        "dram_bytes": used["dram"],
        "memory_used_bytes": used,
        "arena_cache_size": _kib(r["arena_cache_size"]),  # Vela writes KiB; its address space when unset
        "weights_storage": r.get("weights_storage_area"),
        "feature_map_storage": r.get("feature_map_storage_area"),
        "macs": int(_number(r["nn_macs"]) or 0),
        "weights_original_bytes": int(_number(r["total_original_weights"]) or 0),
        "weights_encoded_bytes": int(_number(r["total_npu_encoded_weights"]) or 0),
        "traffic_bytes": traffic,
        "peak_bandwidth_bytes_per_s": {m: round((_number(r[f"{m}_bandwidth"]) or 0) * 2**30)
                                       for m in on_ports},
        "passes": int(_number(r["passes_after_fusing"]) or 0),
    }


def _layers(path: Path, total_cycles: int) -> list[dict]:
    """Vela's per-layer CSV: one dict per operator (NPU and CPU), in execution order."""
    lines = path.read_text().splitlines()
    if not lines:
        return []
    header = lines[0].split(",")
    layers = []
    for line in lines[1:]:
        if not line.strip():
            continue
        row = dict(zip(header, line.split(",", len(header) - 1)))  # the name may hold commas
        cycles = int(_number(row.get("Op Cycles")) or 0)
        access = {key: int(_number(row.get(col)) or 0) for col, key in LAYER_ACCESS.items()}
        layers.append({
            "name": row.get("Name", ""),
            "op": row.get("Original Operator", ""),
            "npu_op": row.get("NNG Operator", ""),
            "target": row.get("Target", ""),
            "cycles": cycles,
            "npu_cycles": int(_number(row.get("NPU")) or 0),
            "access_cycles": {k: v for k, v in access.items() if v},
            "macs": int(_number(row.get("MAC Count")) or 0),
            "share": round(cycles / total_cycles, 6) if total_cycles else 0.0,
            "mac_utilisation": round((_number(row.get("Util% (MAC)")) or 0.0) / 100, 6),
            "staging_bytes": int(_number(row.get("Staging Usage")) or 0),
        })
    return layers


def _graph_ops(path: Path) -> list[tuple[str, str]]:
    """(op type, first output's name) of every operator of a .tflite, read with Vela's own schema:
    builtin ops by their TFLite name ("GATHER"), custom ones by their code ("ethos-u")."""
    from ethosu.vela.tflite.BuiltinOperator import BuiltinOperator
    from ethosu.vela.tflite.Model import Model

    names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
    ops = []
    try:
        model = Model.GetRootAs(path.read_bytes(), 0)
        for s in range(model.SubgraphsLength()):
            graph = model.Subgraphs(s)
            for i in range(graph.OperatorsLength()):
                op = graph.Operators(i)
                code = model.OperatorCodes(op.OpcodeIndex())
                builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
                if builtin == BuiltinOperator.CUSTOM:
                    kind = (code.CustomCode() or b"?").decode(errors="replace")
                else:
                    kind = names.get(builtin, f"BUILTIN_{builtin}")
                out = graph.Tensors(op.Outputs(0)).Name() if op.OutputsLength() else b""
                ops.append((kind, (out or b"").decode(errors="replace")))
    except Exception as exc:  # flatbuffers raises struct/index errors on a file that is not one
        raise DataError(f"{path.name} is not a TFLite flatbuffer ({type(exc).__name__})") from None
    return ops


def _reasons(log: str) -> dict[str, tuple[str, str]]:
    """{output name: (op, why)} from Vela's "Warning (supported operators)" blocks."""
    lines = log.splitlines()
    found: dict[str, tuple[str, str]] = {}
    for i, line in enumerate(lines):
        m = WARNING.match(line)
        if not m:
            continue
        why = []
        for nxt in lines[i + 1:]:
            if not nxt.strip() or WARNING.match(nxt):
                break
            why.append(nxt.strip().removeprefix("Reason: "))
        found.setdefault(m[2], (m[1], "; ".join(why)))
    return found


def _operators(tflite: Path, compiled: Path, log: str) -> dict:
    """Operators on the NPU and on the CPU. The CPU's are those left in the compiled model beside
    the ``ethos-u`` ones (their real op types, what TFLM's op resolver needs); the NPU's are the
    input's other operators. Vela's own counts (after its rewriting: a TANH becomes a LUT pass)
    are kept as ``vela_ops``."""
    original = _graph_ops(tflite)
    after = _graph_ops(compiled)
    reasons = _reasons(log)
    cpu_ops = [{"op": op, "name": name, "why": reasons.get(name, ("", "not given by Vela"))[1]}
               for op, name in after if op != NPU_OP]
    on_cpu = {c["name"] for c in cpu_ops}
    npu_types = sorted({op for op, name in original if name not in on_cpu})
    npu = sum(1 for _, name in original if name not in on_cpu)
    total = npu + len(cpu_ops)
    counts = {}
    for line in log.splitlines():
        m = OP_COUNT.match(line)
        if m:
            counts[m[1].lower()] = int(m[2])
    return {
        "ops": {"npu": npu, "cpu": len(cpu_ops), "total": total,
                "npu_share": round(npu / total, 4) if total else 0.0},
        "npu_op_types": npu_types,
        "cpu_op_types": sorted({c["op"] for c in cpu_ops}),
        "cpu_ops": cpu_ops,
        # what a firmware's op resolver must register to run the compiled model
        "compiled_op_types": sorted({op for op, _ in after}),
        "vela_ops": counts,
    }


def _warnings(log: str) -> list[str]:
    """Vela's other warnings (not the per-operator ones above), each once."""
    seen: list[str] = []
    for line in log.splitlines():
        if line.startswith("Warning") and not WARNING.match(line) and line not in seen:
            seen.append(line.strip())
    return seen[:20]
