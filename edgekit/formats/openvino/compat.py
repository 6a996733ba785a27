"""OpenVINO: the IR version of the .xml and the operation sets its layers use, against the device's
openvino.

IR v11 is read by OpenVINO 2022.1 and newer (API 2.0 brought it; 2022.1 still reads v10), IR v10 by
2020.1 and newer (opset1's release). The operation set each release brought is OpenVINO's "Available
Operation Sets" table (docs/articles_en/documentation/openvino-ir-format/operation-sets/
available-opsets.rst, up to 2024.5: opset15). Where the probe could list the opsets the device's
Python package ships (``openvino/opsetN``), that list is used instead of the table.
"""

from __future__ import annotations

import re
from pathlib import Path

from edgekit.compat.versions import vstr, vtuple

IR_SINCE = {10: (2020, 1), 11: (2022, 1)}
# the release that brought each operation set
OPSET_SINCE = {1: (2020, 1), 2: (2020, 2), 3: (2020, 4), 4: (2021, 1), 5: (2021, 2), 6: (2021, 3),
               7: (2021, 4), 8: (2022, 1), 9: (2022, 2), 10: (2022, 3), 11: (2023, 0), 12: (2023, 1),
               13: (2023, 2), 14: (2024, 0), 15: (2024, 5)}
TABLE_END = max(OPSET_SINCE.values())


def needs(path: Path, tools: dict | None = None) -> dict:
    """The ``<net version=...>`` and, per operation set used, the layer types from it."""
    import xml.etree.ElementTree as ET

    from edgekit.errors import DataError

    ir, opsets, other = None, {}, set()
    try:
        for _, elem in ET.iterparse(str(path), events=("start",)):
            if elem.tag == "net":
                ir = int(elem.get("version", "0"))
            elif elem.tag == "layer":
                m = re.fullmatch(r"opset(\d+)", elem.get("version", ""))
                if m:
                    opsets.setdefault(int(m.group(1)), set()).add(elem.get("type", "?"))
                elif elem.get("version"):
                    other.add(f"{elem.get('type', '?')} ({elem.get('version')})")
    except (ET.ParseError, ValueError) as exc:
        raise DataError(f"{Path(path).name} is not an OpenVINO IR .xml ({exc})") from None
    if ir is None:
        raise DataError(f"{Path(path).name} is not an OpenVINO IR .xml (no <net> element)")
    return {"ir_version": ir, "opsets": {str(k): sorted(v) for k, v in sorted(opsets.items())},
            "other_ops": sorted(other)}


def summary(n: dict) -> str:
    top = max(map(int, n["opsets"]), default=None)
    return f"IR v{n['ir_version']}" + (f", opset{top}" if top else "")


def _release(opset: int) -> str:
    since = OPSET_SINCE.get(opset)
    return vstr(since) if since else f"newer than {vstr(TABLE_END)}"


def verdict(n: dict, runtime: dict) -> tuple[bool | None, str, str]:
    version = runtime["version"]
    have = vtuple(version)[:2]
    ir = n["ir_version"]
    needed = [int(k) for k in n["opsets"]]
    if ir not in IR_SINCE:
        return None, f"IR v{ir} is not one edgekit knows (v10, v11)", ""
    shipped = runtime.get("opsets")
    missing = sorted(o for o in needed if o not in shipped) if shipped else None
    if have < IR_SINCE[ir]:
        return (False, f"IR v{ir} needs OpenVINO >= {vstr(IR_SINCE[ir])}; the device has {version}",
                f"upgrade openvino on the device to >= {_upgrade(ir, needed)}")
    if missing is None:  # no list from the device: date the opsets by the table
        late = sorted(o for o in needed if OPSET_SINCE.get(o, (9999, 0)) > have)
        if late and have >= TABLE_END and any(o not in OPSET_SINCE for o in late):
            return (None, f"opset{late[-1]} is newer than edgekit's table (ends at {vstr(TABLE_END)}); "
                    f"cannot tell whether openvino {version} has it", "")
        missing = late
    if missing:
        types = ", ".join(n["opsets"][str(missing[-1])][:3])
        return (False, f"opset{missing[-1]} ({types}) needs OpenVINO >= {_release(missing[-1])}; the device "
                f"has {version}", f"upgrade openvino on the device to >= {_upgrade(ir, needed)}")
    return True, f"openvino {version} reads IR v{ir} and opset{max(needed, default=1)}", ""


def _upgrade(ir: int, opsets: list[int]) -> str:
    """The first release that reads the IR version and every opset (or the table's last, and newer)."""
    if not all(o in OPSET_SINCE for o in opsets):
        return f"its newest release (past {vstr(TABLE_END)}, the last in edgekit's table)"
    return vstr(max([IR_SINCE[ir], *(OPSET_SINCE[o] for o in opsets)]))
