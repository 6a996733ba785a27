"""Target profiles: one TOML file per device kind, named by its file name (``raspberrypi.toml``).

Profiles are read from, in order, edgekit's own ``targets/`` folder, the user's
``$XDG_CONFIG_HOME/edgekit/targets`` (``~/.config/edgekit/targets``), ``$EDGEKIT_TARGETS_DIR``
and ``--targets-dir``; a later file of the same name replaces an earlier one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import UnknownNameError, UsageError
from edgekit.tomlfile import read_toml

TARGETS_ENV = "EDGEKIT_TARGETS_DIR"
CONNECTS = ("local", "ssh")
FORMATS = ("onnx", "openvino", "tflite")
_KEYS = {"description", "connect", "host", "arch", "python", "threads", "accelerator", "runtimes",
         "onnx", "openvino", "tflite", "ssh_options"}


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    connect: str  # "local" | "ssh"
    source: str  # the file it came from
    host: str | None = None  # ssh: [user@]addr[:port] or an ~/.ssh/config alias
    arch: str | None = None
    python: str = "python3"  # the interpreter that runs the runner (ssh targets)
    threads: int | None = None  # None: the runtime's default; 0 in the file: one per core
    accelerator: bool = False  # only a GPU/NPU will do: never fall back to the CPU
    runtimes: dict[str, list[str]] = field(default_factory=dict)
    onnx_providers: list[str] = field(default_factory=lambda: ["CPUExecutionProvider"])
    openvino_device: str = "CPU"
    ssh_options: list[str] = field(default_factory=list)  # extra "-o Key=Value" for ssh and scp

    def formats(self) -> list[str]:
        """Formats this target can run: those with at least one runtime named."""
        return [f for f in FORMATS if self.runtimes.get(f, ["x"])]

    def to_dict(self) -> dict:
        return {
            "name": self.name, "description": self.description, "connect": self.connect,
            "host": self.host, "arch": self.arch, "python": self.python, "threads": self.threads,
            "accelerator": self.accelerator, "runtimes": self.runtimes,
            "onnx_providers": self.onnx_providers, "openvino_device": self.openvino_device,
            "source": self.source,
        }  # fmt: skip


def builtin_dir() -> Path:
    """edgekit/_targets: a link to the top-level targets/ in a checkout, a copy in a wheel."""
    return Path(__file__).resolve().parent / "_targets"


def user_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "edgekit" / "targets"


def search_dirs(extra: Path | None = None) -> list[Path]:
    dirs = [builtin_dir(), user_dir()]
    if os.environ.get(TARGETS_ENV):
        env = Path(os.environ[TARGETS_ENV]).expanduser()
        if not env.is_dir():
            raise UsageError(f"${TARGETS_ENV} {env} is not a folder",
                             hint="point it at a folder of *.toml profiles")
        dirs.append(env)
    if extra is not None:
        extra = Path(extra).expanduser()
        if not extra.is_dir():
            raise UsageError(f"--targets-dir {extra} is not a folder",
                             hint="pass a folder of *.toml profiles")
        dirs.append(extra)
    return dirs


def load_targets(extra: Path | None = None) -> dict[str, Target]:
    found: dict[str, Target] = {}
    for folder in search_dirs(extra):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found[path.stem] = parse_target(path)
    return found


def get_target(name: str, extra: Path | None = None) -> Target:
    targets = load_targets(extra)
    if name not in targets:
        import difflib

        close = difflib.get_close_matches(name, list(targets), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownNameError(
            f"unknown target {name!r}; {hint}known: {', '.join(sorted(targets))}",
            hint="add NAME.toml to ~/.config/edgekit/targets or pass --targets-dir; "
            "`edgekit targets` lists them",
        )
    return targets[name]


def _typed(path: Path, data: dict, key: str, kind, what: str):
    """data[key] when present and of type ``kind``; one-line error naming the key otherwise."""
    value = data.get(key)
    if value is not None and not isinstance(value, kind):
        raise UsageError(f"target profile {path}: {key} must be {what}, got {value!r}")
    return value


def _str_list(path: Path, value, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"target profile {path}: {what} must be a list of strings, got {value!r}")
    return list(value)


def parse_target(path: Path) -> Target:
    data = read_toml(path, "target profile", hint="fix the TOML")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise UsageError(f"target profile {path} has unknown keys {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(_KEYS))}")
    connect = data.get("connect", "local")
    if connect not in CONNECTS:
        raise UsageError(f"target profile {path}: connect must be one of {', '.join(CONNECTS)}, "
                         f"got {connect!r}")
    threads = data.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 0):
        raise UsageError(f"target profile {path}: threads must be an integer >= 0 (0: one per core)")
    for key in ("description", "host", "arch", "python"):
        _typed(path, data, key, str, "a string")
    accelerator = _typed(path, data, "accelerator", bool, "true or false")
    options = _str_list(path, data.get("ssh_options", []), "ssh_options")
    check_ssh_options(options, str(path))
    runtimes = _typed(path, data, "runtimes", dict, "a table of format = [runtime names]") or {}
    runtimes = {k: _str_list(path, v, f"runtimes.{k}") for k, v in runtimes.items()}
    onnx = _typed(path, data, "onnx", dict, "a table ([onnx] providers = [...])") or {}
    providers = _str_list(path, onnx.get("providers", ["CPUExecutionProvider"]), "[onnx] providers")
    if not providers:
        raise UsageError(f"target profile {path}: [onnx] providers is empty; name at least one provider")
    openvino = _typed(path, data, "openvino", dict, "a table ([openvino] device = \"CPU\")") or {}
    device = _typed(path, openvino, "device", str, "a string") or "CPU"
    return Target(
        name=path.stem,
        description=str(data.get("description", "")),
        connect=connect,
        source=str(path),
        host=data.get("host"),
        arch=data.get("arch"),
        python=str(data.get("python", "python3")),
        threads=threads,
        accelerator=bool(accelerator),
        runtimes=runtimes,
        onnx_providers=providers,
        openvino_device=device,
        ssh_options=options,
    )


_INSECURE = {"stricthostkeychecking": {"no", "off", "false"}, "userknownhostsfile": {"/dev/null"},
             "globalknownhostsfile": {"/dev/null"}}


def check_ssh_options(options: list[str], where: str) -> None:
    """Refuse options that turn host-key checking off: edgekit never does that."""
    import re

    for option in options:
        # ssh_config syntax: Key=Value, Key Value or Key = Value, whitespace of any kind, quotes
        parts = re.split(r"\s*=\s*|\s+", option.strip(), maxsplit=1)
        key = parts[0].lower()
        value = parts[1].strip().strip("\"'").strip().lower() if len(parts) > 1 else ""
        if value in _INSECURE.get(key, set()):
            raise UsageError(
                f"{where}: ssh option {option!r} turns host-key checking off, which edgekit refuses",
                hint="add the device's key to known_hosts instead: ssh-keyscan HOST >> ~/.ssh/known_hosts, "
                "after checking its fingerprint",
            )
