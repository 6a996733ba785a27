"""``edgekit models`` and ``targets``: what edgekit knows."""

from __future__ import annotations

import json

import click

from edgekit.cli.common import opt, print_table


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_cmd(as_json: bool) -> int:
    """List the model zoo with inputs, parameters and MACs."""
    from edgekit.models import MODELS
    from edgekit.models.spec import ModelOptions

    rows = []
    for name, spec in MODELS.items():
        opts = spec.resolve(ModelOptions())
        rows.append({
            "name": name,
            "title": spec.title,
            "paper": spec.paper,
            "input": list(spec.input_spec(opts).shape),
            "layout": spec.input_spec(opts).layout,
            "classes": spec.default_num_classes,
            "parameters": spec.reference_params,
            "macs": spec.reference_macs,
            "int8": "static" if spec.static_int8 else "dynamic",
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return 0
    table = [(r["name"], r["paper"].split(",")[0], f"{'x'.join(map(str, r['input']))} {r['layout']}",
              str(r["classes"]), f"{r['parameters']:,}", _human(r["macs"]), r["int8"]) for r in rows]
    print_table(("model", "paper", "input", "classes", "params", "MACs", "int8"), table,
                title="edgekit model zoo", right=("classes", "params", "MACs"))
    return 0


def _human(macs: int | None) -> str:
    if not macs:
        return "-"
    return f"{macs / 1e9:.2f} G" if macs >= 1e8 else f"{macs / 1e6:.2f} M"


@click.command("targets")
@opt("targets_dir")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def targets_cmd(targets_dir, as_json) -> int:
    """List the target profiles `edgekit bench --target` knows, and where each comes from."""
    from edgekit.targets import load_targets, search_dirs

    targets = load_targets(targets_dir)
    if as_json:
        click.echo(json.dumps([t.to_dict() for t in targets.values()], indent=2))
        return 0
    rows = []
    for t in targets.values():
        threads = "cores" if t.threads == 0 else str(t.threads or "default")
        rows.append((t.name, t.connect, t.address() or "", t.arch or "this machine", threads,
                     ", ".join(t.formats()), t.devices(),
                     t.description + (f" (also --target {', '.join(t.aliases)})" if t.aliases else "")))
    print_table(("name", "connect", "host", "arch", "threads", "formats", "device", "description"), rows,
                caption="searched: " + ", ".join(str(d) for d in search_dirs(targets_dir)), width=150)
    return 0
