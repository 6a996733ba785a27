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
# Keys every profile may have; each connection kind adds its own (``edgekit/devices/<kind>.py``) and
# each format its table (``[onnx] providers = [...]``): both come from their registries.
_COMMON_KEYS = {"description", "connect", "arch", "threads", "accelerator", "runtimes", "emulated", "aliases"}


def known_keys(connect: str | None = None) -> set[str]:
    """The keys a profile of connection kind ``connect`` may have (None: of any kind)."""
    from edgekit.devices import CONNECTIONS
    from edgekit.formats import FORMATS

    kinds = [CONNECTIONS.get(connect)] if connect else [cls for _, cls in CONNECTIONS.items()]
    return _COMMON_KEYS | {key.name for cls in kinds for key in cls.keys} | set(FORMATS)


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    connect: str  # a connection kind (edgekit.devices): "local", "ssh", ...
    source: str  # the file it came from
    arch: str | None = None
    threads: int | None = None  # None: the runtime's default; 0 in the file: one per core
    accelerator: bool = False  # only a GPU/NPU will do: never fall back to the CPU
    runtimes: dict[str, list[str]] = field(default_factory=dict)
    # Per format, its table's settings with the format's defaults filled in ({"onnx": {"providers": [...]}}).
    format_settings: dict[str, dict] = field(default_factory=dict)
    emulated: bool = False  # an emulator (QEMU): its figures are functional evidence, never latency
    aliases: tuple[str, ...] = ()  # other names --target takes for it (boards: "arduino-nano-33-ble")
    # The connection kind's own keys, checked and with its defaults filled in (``Device.keys``).
    connection: dict = field(default_factory=dict)

    def formats(self) -> list[str]:
        """Formats this target can run: those with at least one runtime named."""
        from edgekit.devices import connection
        from edgekit.formats import names

        only = connection(self.connect).runs_formats
        return [f for f in names() if self.runtimes.get(f, ["x"]) and (only is None or f in only)]

    def runner_settings(self) -> dict:
        """The formats' settings as the device runner's spec names them ("providers", ...)."""
        from edgekit.formats import format_class

        return {spec_key: self.format_settings[name][key]
                for name, values in self.format_settings.items()
                for key, (spec_key, _) in format_class(name).target_settings.items()}

    def devices(self) -> str:
        """Where each format runs, for people ("CPUExecutionProvider, OpenVINO CPU")."""
        from edgekit.formats import format_class

        found = [format_class(name).target_device(self.format_settings[name]) for name in self.formats()]
        return ", ".join(d for d in found if d)

    def address(self) -> str | None:
        """The value of the key that names the device (its kind's ``address_key``), or None."""
        from edgekit.devices import connection

        key = connection(self.connect).address_key
        return self.connection.get(key) if key else None

    def to_dict(self) -> dict:
        return {
            "name": self.name, "description": self.description, "connect": self.connect,
            **self.connection, "arch": self.arch, "threads": self.threads,
            "accelerator": self.accelerator, "runtimes": self.runtimes,
            "settings": self.format_settings, "source": self.source, "emulated": self.emulated,
            **({"aliases": list(self.aliases)} if self.aliases else {}),
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
    aliases = {alias: t for t in targets.values() for alias in t.aliases if alias not in targets}
    if name in aliases:  # a board's name for a profile: the profile, under its own name
        return aliases[name]
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
    from edgekit.devices import CONNECTIONS

    data = read_toml(path, "target profile", hint="fix the TOML")
    connect = data.get("connect", "local")
    if connect not in CONNECTIONS:
        raise UsageError(f"target profile {path}: connect must be one of {', '.join(CONNECTIONS)}, "
                         f"got {connect!r}")
    known = known_keys(connect)
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"target profile {path} has unknown keys {', '.join(unknown)}; "
                         f"known for connect = {connect!r}: {', '.join(sorted(known))}")
    kind = CONNECTIONS.get(connect)
    threads = data.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 0):
        raise UsageError(f"target profile {path}: threads must be an integer >= 0 (0: one per core)")
    for key in ("description", "arch"):
        _typed(path, data, key, str, "a string")
    accelerator = _typed(path, data, "accelerator", bool, "true or false")
    emulated = _typed(path, data, "emulated", bool, "true or false")
    runtimes = _typed(path, data, "runtimes", dict, "a table of format = [runtime names]") or {}
    aliases = _str_list(path, data.get("aliases", []), "aliases")
    runtimes = {k: _str_list(path, v, f"runtimes.{k}") for k, v in runtimes.items()}
    return Target(
        name=path.stem,
        description=str(data.get("description", "")),
        connect=connect,
        source=str(path),
        arch=data.get("arch"),
        threads=threads,
        accelerator=bool(accelerator),
        runtimes=runtimes,
        format_settings=_format_settings(path, data),
        emulated=bool(emulated),
        aliases=tuple(aliases),
        connection=kind.read_profile(data, f"target profile {path}", Path(path).resolve().parent),
    )


def _format_settings(path: Path, data: dict) -> dict[str, dict]:
    """Each format's table of the profile, checked against the keys and types of its defaults."""
    from edgekit.formats import FORMATS

    out = {}
    for name, cls in FORMATS.items():
        table = _typed(path, data, name, dict, f"a table ([{name}] key = value)") or {}
        unknown = sorted(set(table) - set(cls.target_settings))
        if unknown:
            known = ", ".join(cls.target_settings) or "none"
            raise UsageError(f"target profile {path}: [{name}] has unknown keys {', '.join(unknown)}; "
                             f"known: {known}")
        values = {}
        for key, (_, default) in cls.target_settings.items():
            value = table.get(key, default)
            if isinstance(default, list):
                value = _str_list(path, value, f"[{name}] {key}")
                if not value:
                    raise UsageError(f"target profile {path}: [{name}] {key} is empty; name at least one")
            elif not isinstance(value, type(default)):
                raise UsageError(f"target profile {path}: [{name}] {key} must be a "
                                 f"{type(default).__name__}, got {value!r}")
            values[key] = value
        out[name] = values
    return out
