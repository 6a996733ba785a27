"""Bench results as table rows (the CLI prints them with rich; the benchmarks write Markdown)."""

from __future__ import annotations

HEAD = ("format", "precision", "runtime", "device", "thr", "p50 ms", "p90 ms", "p99 ms", "cv %",
        "per s", "load ms", "first ms", "peak MB", "size MB", "vs fp32", "vs torch")


def short(runtime: str, fmt: str = "") -> str:
    """A runtime's short name in the table, as the row's format declares it (``Format.runtime_labels``;
    else the first format that names it)."""
    from edgekit.formats import FORMATS

    mine = [cls for name, cls in FORMATS.items() if name == fmt]
    for cls in mine + [cls for _, cls in FORMATS.items()]:
        if runtime in cls.runtime_labels:
            return cls.runtime_labels[runtime]
    return runtime


def _ms(v) -> str:
    if v is None:
        return ""
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def _x(v) -> str:
    return f"{v:.2f}x" if v else ""


def bench_rows(record: dict) -> tuple[tuple[str, ...], list[tuple[str, ...]], str]:
    rows = []
    for r in record["results"]:
        if r.get("status") != "ok":
            rows.append((r["format"], r["precision"], r["status"], "(below)", *[""] * (len(HEAD) - 4)))
            continue
        version = str(r.get("runtime_version") or "").split("-")[0]  # OpenVINO's carries a build tag
        runtime = f"{short(r.get('runtime', ''), r.get('format', ''))} {version}"
        device = str(r.get("device", "")).replace("ExecutionProvider", "")
        if r.get("inference_precision"):
            device += f" {r['inference_precision']}"
        rows.append((
            r["format"], r["precision"], runtime.strip(), device,
            "-" if r.get("estimated") else str(r.get("threads") or "default"),
            _ms(r["p50_ms"]), _ms(r["p90_ms"]), _ms(r["p99_ms"]), f"{100 * r['cv']:.1f}",
            f"{r['throughput_per_s']:.1f}" if r.get("throughput_per_s") else "",
            _ms(r.get("load_ms")), _ms(r.get("first_inference_ms")),
            f"{r['peak_rss_bytes'] / 1e6:.0f}" if r.get("peak_rss_bytes") else "",
            f"{r['file_bytes'] / 1e6:.2f}" if r.get("file_bytes") else "",
            _x(r.get("speedup_vs_fp32")), _x(r.get("speedup_vs_torch")),
        ))
    env = record.get("environment") or {}
    settings = record.get("settings", {})
    caption = (
        f"{env.get('board') or env.get('cpu', '?')}, {env.get('cores', '?')} cores, {env.get('os', '?')}, "
        f"Python {env.get('python', '?')}; batch {settings.get('batch')}, warm-up {settings.get('warmup')}, "
        + (f"{settings['iters']} timed runs" if settings.get("iters") else
           f"{settings.get('seconds') or 3:g} s per artefact")
        + "; each artefact in its own process"
    )
    if record.get("estimated"):  # a microNPU: Vela's performance model, nothing was run
        caption = (f"ESTIMATED by {record['estimated']}: Vela's performance model, not a measurement; "
                   f"{env.get('board', '')}")
    if record.get("emulated"):
        caption = f"EMULATED ({record['emulated']}): functional evidence only, not device latency; " + caption
    return HEAD, rows, caption


def markdown_table(head, rows) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
