"""``edgekit report``: one page per run with settings, tool versions, a table per artefact and plots.

Writes RUN_DIR/report/: report.md (tables, the plots as images beside it, and the same charts as
Mermaid blocks, which GitHub renders in a job summary where local images cannot be shown),
latency.png, tradeoff.png and size.png drawn with matplotlib, and with ``--html`` a
self-contained report.html (plots embedded) that opens in any browser.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from edgekit.report.tradeoff import (  # noqa: F401 - the report's plot, used here and by its tests
    MARKER_SIZE,
    accuracy_limits,
    error_limits,
    log_ticks,
    place_labels,
    tradeoff_figure,
)
from edgekit.runs import manifest as mf

PLOTS = ("latency", "tradeoff", "size")


def rows(manifest: dict, target: str) -> list[dict]:
    """One row per artefact (and PyTorch): what it is, its size, speed and accuracy."""
    bench = {(r["format"], r["precision"]): r for r in ((manifest.get("bench") or {}).get(target) or {})
             .get("results", []) if r.get("status") == "ok"}
    ev = manifest.get("eval") or {}
    key = ev.get("metric")
    acc = {(r["format"], r["precision"]): r for r in ev.get("results", [])}
    out = []
    if ("pytorch", "fp32") in bench or ("pytorch", "fp32") in acc:
        b, a = bench.get(("pytorch", "fp32"), {}), acc.get(("pytorch", "fp32"), {})
        source = (manifest["model"].get("weights") or {}).get("format") == "onnx"  # an ONNX file as the model
        out.append({"name": a.get("label") or ("onnxruntime (source)" if source else "pytorch fp32"),
                    "format": "pytorch", "precision": "fp32", "scheme": "source file" if source else "eager",
                    "bytes": None, "p50_ms": b.get("p50_ms"), "p99_ms": b.get("p99_ms"),
                    "speedup": None, "metric": key, "accuracy": a.get(key), "agreement": a.get("agreement"),
                    "drop_pp": a.get("drop_pp"), "status": "ok", "verify": ""})
    for art in manifest["artefacts"]:
        k = (art["format"], art["precision"])
        b, a = bench.get(k, {}), acc.get(k, {})
        v = art.get("verify") or {}
        if art["status"] != "ok":
            verify = art.get("error", "")[:80]
        elif art["precision"] == "fp32":
            verify = f"max diff {v.get('max_abs_diff', 0):.2g}"
        else:
            verify = f"SQNR {v.get('sqnr_db', float('nan')):.1f} dB"
        label = (art.get("int8_share") or {}).get("label", k[1])
        out.append({"name": f"{k[0]} {label if label.startswith('partly') else k[1]}", "format": k[0],
                    "precision": k[1], "metric": key,
                    "scheme": (art.get("scheme") or {}).get("type", ""), "bytes": art.get("bytes"),
                    "p50_ms": b.get("p50_ms"), "p99_ms": b.get("p99_ms"), "speedup": b.get("speedup_vs_fp32"),
                    "accuracy": a.get(key), "agreement": a.get("agreement"), "drop_pp": a.get("drop_pp"),
                    "status": art["status"], "verify": verify})
    return out


def _fmt(v, kind: str) -> str:
    if v is None:
        return "-"
    return {"mb": f"{v / 1e6:.2f}", "ms": f"{v:.3f}" if v < 10 else f"{v:.1f}", "x": f"{v:.2f}x",
            "pct": f"{100 * v:.2f}%", "pp": f"{v:+.2f}"}[kind]


def table_md(items: list[dict]) -> str:
    head = ["artefact", "scheme", "size MB", "p50 ms", "p99 ms", "int8 speed-up", "accuracy", "agreement",
            "drop pp", "verify"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in items:
        lines.append("| " + " | ".join(_cells(r)) + " |")
    return "\n".join(lines)


def _cells(r: dict) -> list[str]:
    return [r["name"] + ("" if r["status"] == "ok" else f" ({r['status']})"), r["scheme"],
            _fmt(r["bytes"], "mb"), _fmt(r["p50_ms"], "ms"), _fmt(r["p99_ms"], "ms"), _fmt(r["speedup"], "x"),
            _fmt(r["accuracy"], "pct"), _fmt(r["agreement"], "pct"), _fmt(r["drop_pp"], "pp"), r["verify"]]


def plot(items: list[dict], folder: Path, title: str) -> dict[str, Path]:
    """Draw the three plots as PNG files; returns name -> path (a plot without data is skipped)."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgekit.formats import FORMATS

    colours = {"pytorch": "#555555", **{name: cls.colour for name, cls in FORMATS.items()}}
    made = {}
    timed = [r for r in items if r["p50_ms"]]
    if timed:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.barh([r["name"] for r in timed], [r["p50_ms"] for r in timed],
                color=[colours.get(r["format"], "grey") for r in timed],
                hatch=None, alpha=0.9)
        for i, r in enumerate(timed):
            ax.text(r["p50_ms"], i, f" {_fmt(r['p50_ms'], 'ms')}", va="center", fontsize=8)
        ax.set_xlabel("p50 latency per inference (ms)")
        ax.set_title(f"{title}: latency per artefact")
        ax.invert_yaxis()
        made["latency"] = _save(fig, folder / "latency.png")
    both = [r for r in items if r["p50_ms"] and r["accuracy"] is not None]
    if both:
        metric = both[0].get("metric") or "accuracy"
        made["tradeoff"] = _save(tradeoff_figure(both, title, colours, metric), folder / "tradeoff.png",
                                 layout=False)
    sized = [r for r in items if r["bytes"]]
    if sized:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.barh([r["name"] for r in sized], [r["bytes"] / 1e6 for r in sized],
                color=[colours.get(r["format"], "grey") for r in sized])
        for i, r in enumerate(sized):
            ax.text(r["bytes"] / 1e6, i, f" {r['bytes'] / 1e6:.2f}", va="center", fontsize=8)
        ax.set_xlabel("size on disk (MB)")
        ax.set_title(f"{title}: size per artefact")
        ax.invert_yaxis()
        made["size"] = _save(fig, folder / "size.png")
    plt.close("all")
    return made


def _save(fig, path: Path, layout: bool = True) -> Path:
    if layout:  # the trade-off plot lays itself out before placing its labels
        fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def mermaid_bar(title: str, items: list[dict], key: str, label: str, scale: float = 1.0) -> str:
    data = [r for r in items if r.get(key)]
    if not data:
        return ""
    names = ", ".join(f'"{r["name"]}"' for r in data)
    values = ", ".join(f"{r[key] * scale:.4g}" for r in data)
    return (f"```mermaid\nxychart-beta\n    title \"{title}\"\n    x-axis [{names}]\n"
            f"    y-axis \"{label}\"\n    bar [{values}]\n```\n")


def build(run_dir: Path, target: str = "local-cpu", want_html: bool = False) -> dict[str, Path]:
    run_dir = Path(run_dir)
    manifest = mf.read_manifest(run_dir)
    folder = run_dir / "report"
    folder.mkdir(exist_ok=True)
    items = rows(manifest, target)
    name = manifest["model"]["name"].rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    plots = plot(items, folder, name)
    text = markdown(manifest, items, plots, target)
    out = {"markdown": mf.write_atomic(folder / "report.md", text), **plots}
    if want_html:
        out["html"] = mf.write_atomic(folder / "report.html", to_html(manifest, items, plots, target))
    return out


def _settings_md(manifest: dict) -> list[str]:
    m, s, c = manifest["model"], manifest["settings"], manifest.get("calibration") or {}
    lines = [
        f"- command: `{' '.join(manifest.get('command') or [])}`",
        f"- model: {m['name']} ({m.get('parameters', 0):,} parameters, "
        + (f"{m['macs'] / 1e6:,.1f} M MACs" if m.get("macs") else "MACs unknown")
        + f"), input {m['input']['shape']}, options {m.get('options')}",
        f"- weights: {(m.get('weights') or {}).get('path', 'random (no --weights)')}",
        f"- formats: {', '.join(s.get('formats', []))}; int8: {s.get('int8')}; calibration: "
        f"{c.get('source')} ({c.get('samples')} samples, sha256 {str(c.get('sha256'))[:12]})",
    ]
    if manifest.get("pruning"):
        p = manifest["pruning"]
        ps = p["settings"]
        kept = f"{100 * p['macs_after'] / p['macs_before']:.1f}% kept" if p.get("macs_before") else "?"
        lines.append(f"- pruning: {ps['method']} {ps['ratio']} ({ps['scope']}), "
                     f"parameters {p['params_before']:,} -> {p['params_after']:,}, MACs {kept}"
                     + (f", fine-tuned {p['finetune']['epochs_run']} epochs on {p['finetune']['dataset']}"
                        if p.get("finetune") else ""))
    ev = manifest.get("eval")
    if ev:
        lines.append(f"- accuracy: {ev['metric']} on {ev['dataset']} "
                     f"({ev['split']}, {ev['samples']} samples)")
    b = (manifest.get("bench") or {})
    for key, record in b.items():
        env = record.get("environment") or {}
        if record.get("estimated"):  # a microNPU: Vela's performance model
            lines.append(f"- latency on {key}: ESTIMATED by {record['estimated']} (not a measurement)")
            continue
        lines.append(f"- latency on {key}: {env.get('cpu')}, {env.get('cores')} cores, "
                     f"{record['settings'].get('resolved_threads') or 'default'} threads, batch "
                     f"{record['settings'].get('batch')}")
    if manifest.get("gate"):
        g = manifest["gate"]
        lines.append(f"- gate: {'PASSED' if g['passed'] else 'FAILED'}"
                     + (f" ({', '.join(g['failed'])})" if g.get("failed") else ""))
    return lines


def sections(manifest: dict) -> list[tuple[str, list[str], list[list[str]], list[str]]]:
    """(title, columns, rows, image paths relative to report/) of the int8 search and inspect."""
    out = []
    for a in manifest.get("artefacts", []):
        rec = a.get("search")
        if not rec:
            continue
        from edgekit.export.search import describe

        verdict = "met" if rec["met"] else f"NOT met: {rec.get('reason', '')}"
        rows = [[("* " if t["index"] == rec["chosen"] else "") + str(t["index"]), t["stage"], describe(t),
                 f"{t['drop_pp']:+.2f}" if t.get("status") == "ok" else t.get("error", "failed")[:60],
                 f"{100 * t['agreement']:.2f}%" if t.get("status") == "ok" else "-",
                 f"{t['latency_p50_ms']:.3f}" if t.get("status") == "ok" else "-", str(t.get("seconds", "-"))]
                for t in rec["attempts"]]
        title = (f"int8 search: {a['format']} (budget {rec['budget_pp']:g} pp on {rec['held_out']['name']} "
                 f"{rec['held_out']['split']}, {rec['held_out']['samples']} samples; {verdict})")
        head = ["#", "stage", "settings", "drop pp", "agreement", "~p50 ms", "build s"]
        out.append((title, head, rows, []))
    detailed = [a for a in manifest.get("artefacts", []) if a.get("details", {}).get("summary")]
    if detailed:  # what a format records about its own artefacts (ExecuTorch: the delegated ops)
        rows = [[f"{a['format']} {a['precision']}", a["details"]["summary"]] for a in detailed]
        out.append(("Artefact details", ["artefact", "details"], rows, []))
    from edgekit.mcu.report import mcu_sections

    out += mcu_sections(manifest)
    if manifest.get("inspect"):
        from edgekit.inspect import table_rows

        result = manifest["inspect"]
        head, rows = table_rows(result)
        images = [str(Path(r["plot"]).relative_to("report"))
                  for r in result["formats"].values() if r.get("plot")]
        out.append((f"Where int8 loses accuracy (edgekit inspect, {result['samples']} samples)", head, rows,
                    images))
    return out


def _sections_md(manifest: dict) -> list[str]:
    lines = []
    for title, head, rows, images in sections(manifest):
        lines += ["", f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
        lines += [""] + [f"![{Path(i).stem}]({i})" for i in images]
    return lines


def markdown(manifest: dict, items: list[dict], plots: dict, target: str) -> str:
    tools = manifest.get("tools") or {}
    lines = [f"# edgekit report: {manifest['model']['name']}", "",
             f"Run created {manifest.get('created')}.", ""]
    lines += _settings_md(manifest)
    lines += ["", f"## Artefacts (latency on {target})", "", table_md(items), ""]
    for plot_name in PLOTS:
        if plot_name in plots:
            lines.append(f"![{plot_name}]({plots[plot_name].name})")
    lines += ["", mermaid_bar("p50 latency (ms)", items, "p50_ms", "ms"),
              mermaid_bar("size (MB)", [r for r in items if r["bytes"]], "bytes", "MB", 1e-6)]
    lines += _sections_md(manifest)
    lines += ["", "## Tool versions", "", "| tool | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(tools.items())]
    return "\n".join(lines) + "\n"


def to_html(manifest: dict, items: list[dict], plots: dict, target: str) -> str:
    esc = html.escape
    head = ["artefact", "scheme", "size MB", "p50 ms", "p99 ms", "int8 speed-up", "accuracy", "agreement",
            "drop pp", "verify"]
    body = []
    for r in items:
        body.append("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in _cells(r)) + "</tr>")
    encoded = {n: base64.b64encode(plots[n].read_bytes()).decode() for n in PLOTS if n in plots}
    images = "".join(f'<figure><img alt="{n}" src="data:image/png;base64,{data}"></figure>'
                     for n, data in encoded.items())
    settings = "".join(f"<li>{esc(line[2:])}</li>" for line in _settings_md(manifest))
    extra = "".join(
        f"<h2>{esc(title)}</h2><table><tr>{''.join(f'<th>{esc(h)}</th>' for h in head)}</tr>"
        + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows) + "</table>"
        for title, head, rows, _ in sections(manifest))
    tools = "".join(f"<tr><td>{esc(k)}</td><td>{esc(str(v))}</td></tr>"
                    for k, v in sorted((manifest.get("tools") or {}).items()))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edgekit report: {esc(manifest['model']['name'])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}figure{{display:inline-block;margin:0.5em}}
img{{max-width:100%}}</style></head><body>
<h1>edgekit report: {esc(manifest['model']['name'])}</h1>
<p>Run created {esc(str(manifest.get('created')))}.</p>
<ul>{settings}</ul>
<h2>Artefacts (latency on {esc(target)})</h2>
<table><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr>{''.join(body)}</table>
{images}
{extra}
<h2>Tool versions</h2><table><tr><th>tool</th><th>version</th></tr>{tools}</table>
</body></html>
"""
