"""What ``edgekit gate`` writes besides its table: a Markdown summary and a JUnit XML file."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgekit.ci.gate import Check, GateRules


def passed(checks: list[Check]) -> bool:
    return all(c.status == "pass" for c in checks)



def _value(c: Check) -> str:
    if c.measured is None:
        return "missing"
    return f"{c.measured:.4g}"


def markdown(checks: list[Check], manifest: dict, rules: GateRules) -> str:
    ok = passed(checks)
    failed = [c for c in checks if c.status != "pass"]
    lines = [f"## edgekit gate: {'PASSED' if ok else 'FAILED'}", "",
             f"Model `{manifest['model']['name']}`, {len(checks)} checks, {len(failed)} failed"
             + (f", baseline `{rules.baseline}`" if rules.baseline else "") + ".", "",
             "| artefact | rule | measured | limit | result |", "|---|---|---|---|---|"]
    for c in checks:
        mark = {"pass": "pass", "fail": "**FAIL**", "missing": "**MISSING**"}[c.status]
        lines.append(f"| {c.case} | {c.rule} | {_value(c)} | {c.op} {c.limit:g} | {mark} |")
    for c in failed:
        lines.append("")
        lines.append(f"- {c.case} {c.rule}: {_value(c)} (limit {c.op} {c.limit:g}) {c.detail}".rstrip())
    return "\n".join(lines) + "\n"


def junit(checks: list[Check], name: str) -> bytes:
    suite = ET.Element("testsuite", name=f"edgekit gate {name}", tests=str(len(checks)),
                       failures=str(sum(c.status == "fail" for c in checks)),
                       errors=str(sum(c.status == "missing" for c in checks)))
    for c in checks:
        case = ET.SubElement(suite, "testcase", classname=f"edgekit.ci.gate.{c.format}.{c.precision}",
                             name=c.rule)
        message = f"{c.rule} {_value(c)} not {c.op} {c.limit:g}" + (f": {c.detail}" if c.detail else "")
        if c.status == "fail":
            ET.SubElement(case, "failure", message=message, type="GateFailure").text = message
        elif c.status == "missing":
            ET.SubElement(case, "error", message=c.detail, type="MissingMeasurement").text = c.detail
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
