"""Version strings as tuples, for comparing the versions a device reports with the tables'."""

from __future__ import annotations

import re


def vtuple(version: str | None) -> tuple[int, ...]:
    """"2.14.0" -> (2, 14, 0); the leading digits of each part ("1.2.0.dev2025" -> (1, 2, 0),
    "2026.4.1-22982" -> (2026, 4, 1)); () for None or "unknown"."""
    out = []
    for part in str(version or "").split("."):
        m = re.match(r"\d+", part)
        if m is None:
            break
        out.append(int(m.group()))
    return tuple(out)


def vstr(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))
