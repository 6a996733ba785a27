"""The settings layer: a plain mapping of option names in, a checked and defaulted settings value out.

The command line and recipes speak one language: option names, dashed as recipes and ``--flags``
spell them (``calib-size``) or with underscores as click passes them (``calib_size``). Each
settings value (``ExportPlan``, ``PruneSettings``, ``BenchSettings``, ``GateRules``) has a
classmethod ``from_mapping(mapping, where="", base=None)`` that reads its keys through a
``Reader`` here, which checks each key by the option table (``edgekit.options``: types, ranges,
choices and defaults, declared once for the click options and recipes alike); a mistake is a
one-line ``UsageError`` naming the key and the fix.

``where`` names the mapping in messages: a recipe's path and table (``lenet5.toml [prune]``), or
empty for the command line, whose messages then name the ``--option``. ``base`` is the folder
that relative paths are taken from (a recipe's folder); None takes them as given.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from edgekit.errors import UsageError
from edgekit.options import Option, declared

_SHAPE_EXAMPLE = "1,3,224,224"
_JSON_EXAMPLE = "'{\"depth\": 3}'"


def parse_shape(value: str | None, option: str = "--input-shape") -> tuple[int, ...] | None:
    """``1,3,224,224`` (or ``1x3x224x224``) as a tuple of positive sizes; every item must be one."""
    if value is None:
        return None
    items = [v.strip() for v in value.split("," if "," in value else "x")]
    if items and not items[-1] and len(items) > 1:
        items.pop()  # a trailing comma: 1,28,
    for item in items:
        if not (item.isascii() and item.isdigit()):
            what = "an empty item" if not item else f"item {item!r}"
            raise UsageError(f"{option} {value!r}: {what} is not a size; write positive integers, "
                             f"e.g. {_SHAPE_EXAMPLE}")
    shape = tuple(int(v) for v in items)
    if not shape or any(d <= 0 for d in shape):
        raise UsageError(f"{option} {value!r} needs positive sizes, e.g. {_SHAPE_EXAMPLE}")
    return shape


def parse_json(value: str | None, option: str) -> dict | None:
    """A JSON object of keyword arguments."""
    if value is None:
        return None
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option} is not valid JSON ({exc.msg}); write it like {_JSON_EXAMPLE}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{option} must be a JSON object of keyword arguments, e.g. {_JSON_EXAMPLE}")
    return data


def parse_floats(value: str | None, option: str) -> tuple[float, ...] | None:
    """``0.485,0.456,0.406`` as a tuple of floats."""
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"{option} {value!r} is not a comma-separated list of numbers, e.g. 0.5 "
                         "or 0.485,0.456,0.406") from None


def check_dataset(source: str) -> None:
    """Fail fast, before a long export, on a dataset that cannot exist."""
    from edgekit.data.datasets import resolve_dataset

    resolve_dataset(source)


def model_reference(model: str, base: Path | None = None) -> str:
    """A model reference with its file (``file.py:NAME``, a checkpoint) made absolute, so that later
    commands work from any directory; zoo names stay as they are."""
    folder = Path(base) if base else Path.cwd()
    head, sep, cls = model.rpartition(":")
    if sep and head.endswith(".py"):
        return f"{(folder / Path(head).expanduser()).resolve()}:{cls}"
    path = (folder / Path(model).expanduser()).resolve()
    return str(path) if path.is_file() else model


# Options naming a file that a directory cannot stand for: key -> what file to pass.
_FILES = {"weights": "a weights file (a state dict, checkpoint or .safetensors file)"}

_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string", dict: "a table"}


class Reader:
    """Reads a mapping of option names key by key: each read checks the value's type (and range)
    and returns it or the default; ``done()`` then refuses the keys nobody read. None counts as
    not given (click passes None for an option left out).

    A key the option table declares (``edgekit.options``, which the click options are made from too)
    is checked by its declaration: its range or choices, whatever a caller passes, and a caller's
    default must be the table's (a default of None means "not given": the caller decides, as a
    recipe's [train] seed falls back to the export's). ``get(key)`` reads a key by the table alone."""

    def __init__(self, mapping, where: str = "", base: Path | None = None, *, what: str = "keys",
                 dashes: bool = True):
        if not isinstance(mapping, dict):
            raise UsageError(f"{where} must be a table of settings, got {mapping!r}")
        self.values = {(str(k).replace("-", "_") if dashes else k): v for k, v in mapping.items()}
        self.where = where
        self.base = Path(base) if base is not None else None
        self.what = what
        self.asked: set[str] = set()

    @property
    def cli(self) -> bool:
        """Options of the command line (no ``where``): messages name ``--options``."""
        return not self.where

    def name(self, key: str) -> str:
        return ("--" if self.cli else "") + str(key).replace("_", "-")

    def error(self, message: str, hint: str | None = None) -> UsageError:
        return UsageError(f"{self.where}: {message}" if self.where else message, hint=hint)

    def raw(self, key: str, default=None):
        self.asked.add(key)
        value = self.values.get(key)
        return default if value is None else value

    def _typed(self, key: str, kind, default, kind_name: str | None = None):
        value = self.raw(key)
        if value is None:
            return default
        bad_bool = isinstance(value, bool) and kind is not bool
        if bad_bool or not isinstance(value, (int, float) if kind is float else kind):
            raise self.error(f"{self.name(key)} must be {kind_name or _KINDS[kind]}, got {value!r}")
        return value

    def _range(self, key: str, value, least, most, above):
        """``value`` checked by the table's range of ``key``; a key it does not declare by ``least``
        and ``most`` (inclusive) and ``above`` (exclusive)."""
        option = declared(key)
        if option is None:
            option = Option(key, "", least=least, most=most, above=above)
        problem = option.refusal(value)
        if problem:
            shown = f"{value:g}" if isinstance(value, float) else value
            raise self.error(f"{self.name(key)} {problem}, got {shown}", hint=option.hint)
        return value

    def integer(self, key: str, default: int | None = None, least: int | None = None,
                most: int | None = None) -> int | None:
        _same_default(key, default)
        return self._range(key, self._typed(key, int, default), least, most, None)

    def number(self, key: str, default: float | None = None, least: float | None = None,
               above: float | None = None) -> float | None:
        _same_default(key, default)
        value = self._typed(key, float, default)
        return self._range(key, None if value is None else float(value), least, None, above)

    def flag(self, key: str, default: bool = False) -> bool:
        _same_default(key, default)
        return self._typed(key, bool, default)

    def text(self, key: str, default: str | None = None) -> str | None:
        """A string; one of the table's choices where it declares them."""
        _same_default(key, default)
        value = self._typed(key, str, default)
        option = declared(key)
        return self._one_of(key, value, option.choice_list()) if option else value

    def choice(self, key: str, choices: Iterable[str], default: str | None = None) -> str | None:
        """One of ``choices`` (the table's, where it declares the key)."""
        _same_default(key, default)
        option = declared(key)
        return self._one_of(key, self._typed(key, str, default), option.choice_list() if option else choices)

    def _one_of(self, key: str, value: str | None, choices: Iterable[str]) -> str | None:
        choices = tuple(choices)
        if value is not None and choices and value not in choices:
            raise self.error(f"{self.name(key)} {value!r}: use one of {', '.join(choices)}")
        return value

    def task(self, key: str = "task") -> str | None:
        """What the model's output means (``--task``): classify, binary or regress; None: guessed."""
        from edgekit.models.spec import TASK_OPTIONS

        return self.choice(key, TASK_OPTIONS)

    def texts(self, key: str) -> tuple[str, ...]:
        """A list of strings (``--keep`` given several times, or a TOML list)."""
        value = self._typed(key, (list, tuple), (), "a list")
        if not all(isinstance(v, str) for v in value):
            raise self.error(f"{self.name(key)} must be a list of strings, got {value!r}")
        return tuple(value)

    def table(self, key: str) -> dict | None:
        return self._typed(key, dict, None)

    def tables(self, key: str) -> list[dict]:
        """One table or a list of them (TOML's ``[[bench]]``)."""
        value = self._typed(key, (dict, list), [], "a table or a list of tables")
        return [value] if isinstance(value, dict) else list(value)

    def path(self, key: str) -> Path | None:
        """A file or folder, relative to ``base``."""
        value = self._typed(key, (str, Path), None, "a string")
        if value is None:
            return None
        path = Path(value).expanduser()
        path = path if self.base is None or path.is_absolute() else self.base / path
        if key in _FILES and path.is_dir():
            from edgekit.models.weights import WEIGHTS_SUFFIXES

            found = sorted(p.name for p in path.iterdir() if p.suffix.lower() in WEIGHTS_SUFFIXES)
            inside = f", e.g. {path / found[0]}" if found else ""
            raise self.error(f"{self.name(key)} {path} is a directory; pass {_FILES[key]} inside it{inside}")
        return path

    def data(self, key: str, check: bool = False) -> str | None:
        """A data source: a built-in name (``digits``) as it is, a path relative to ``base``;
        ``check``: fail now on one that cannot exist."""
        value = self._typed(key, (str, Path), None, "a string")
        if value is None:
            return None
        value = str(value)
        if self.base is not None and not _builtin_like(value, self.base):
            value = str(self.base / Path(value).expanduser())
        if check:
            check_dataset(value)
        return value

    def formats(self, key: str, default: Iterable[str] | None) -> tuple[str, ...] | None:
        """Format names: ``onnx,tflite`` or a list of names, checked against the registry."""
        from edgekit.formats import parse_formats

        _same_default(key, None if default is None else ",".join(default))
        value = self._typed(key, (str, list, tuple), None, "a string or a list")
        if value is None:
            return None if default is None else tuple(default)
        if not isinstance(value, str):
            if not all(isinstance(v, str) for v in value):
                raise self.error(f"{self.name(key)} must be a list of strings, got {value!r}")
            value = ",".join(value)
        return parse_formats(value)

    def shape(self, key: str) -> tuple | None:
        """A tensor shape: ``1,3,224,224`` or a list of integers; for a model with several inputs
        several of them (``--input-shape`` repeated, or a list of shapes), as a tuple of shapes."""
        value = self._typed(key, (str, list, tuple), None, "a list")
        if isinstance(value, str):
            return parse_shape(value, self.name(key))
        if not value:
            return None
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        if not all(isinstance(v, (str, list, tuple)) for v in value):
            raise self.error(f"{self.name(key)} must be a list of integers (or one per input), got {value!r}")
        shapes = tuple(self._one_shape(key, v) for v in value)
        return shapes[0] if len(shapes) == 1 else shapes

    def _one_shape(self, key: str, value) -> tuple[int, ...]:
        if isinstance(value, str):
            return parse_shape(value, self.name(key))
        if not value or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            raise self.error(f"{self.name(key)} must be lists of positive integers, got {value!r}")
        return tuple(value)

    def kwargs(self, key: str) -> dict | None:
        """Keyword arguments: a JSON object or a table."""
        value = self._typed(key, (str, dict), None, "a table")
        return parse_json(value, self.name(key)) if isinstance(value, str) else value

    def preprocess(self, key: str) -> dict | None:
        """Declared preprocessing: a table, a file name (``preprocess_table``)."""
        value = self._typed(key, (dict, str, Path), None, "a table or a file name")
        return preprocess_table(value, self.where, self.base)

    def get(self, key: str):
        """``key`` read by its declaration in the option table: kind, range or choices, default."""
        option = declared(key)
        if option is None:
            raise KeyError(f"{key} is not in the option table (edgekit.options)")
        default = option.default_value()
        if option.kind == "formats":
            return self.formats(key, None if default is None else default.split(","))
        read = {"int": self.integer, "float": self.number, "flag": self.flag, "text": self.text,
                "choice": self.text}.get(option.kind)
        return read(key, default) if read else getattr(self, option.kind)(key)  # path, data, texts, ...

    def done(self, extra: Iterable[str] = ()) -> None:
        """Refuse the keys nobody read (``extra``: keys the caller reads itself)."""
        known = self.asked | set(extra)
        unknown = sorted(set(self.values) - known)
        if unknown:
            raise self.error(f"unknown {self.what} {', '.join(map(str, unknown))}; known: "
                             + ", ".join(sorted(k.replace("_", "-") for k in known)))


def _same_default(key: str, default) -> None:
    """A caller's default of a declared key is the table's (None: not given, the caller decides)."""
    option = declared(key)
    if option is None or default is None:
        return
    ours = option.default_value()
    if default != ours:
        raise RuntimeError(f"edgekit bug: {key} defaults to {default!r} here but to {ours!r} in the "
                           "option table (edgekit.options)")


def _builtin_like(value: str, base: Path) -> bool:
    return "/" not in value and "\\" not in value and not Path(value).suffix and not (base / value).exists()


def preprocess_table(value, where: str = "", base: Path | None = None) -> dict | None:
    """Declared preprocessing from a ``[preprocess]`` table, a ``--preprocess`` file name, or the
    overrides the command line merged; bad values fail now, before any work."""
    from edgekit.data.preprocess import normalise_keys, override_preprocessing, read_preprocess_file
    from edgekit.models.spec import Preprocessing

    if value is None:
        return None
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        table = read_preprocess_file(path if base is None or path.is_absolute() else Path(base) / path)
    else:
        table = normalise_keys(value, f"{where} [preprocess]" if where else "options")
    override_preprocessing(Preprocessing(), **table)
    return table or None
