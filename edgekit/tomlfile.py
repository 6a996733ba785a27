"""Reading the TOML files users write (recipes, gate rules, target profiles, --preprocess files)."""

from __future__ import annotations

import sys
from pathlib import Path

from edgekit.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (a dependency there)
    import tomli as tomllib


def read_toml(path: str | Path, what: str, hint: str | None = None) -> dict:
    """The table in ``path``; a missing or malformed file is a one-line UsageError naming ``what``."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{what} {path} cannot be read: {exc}", hint=hint) from None
