"""``edgekit gate``, ``baseline``, ``report``, ``run`` and ``clean``: the commands a CI job calls."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edgekit.cli.common import err, opt, options, print_table, report
from edgekit.cli.measure import stored
from edgekit.errors import EXIT_GATE, UsageError


@click.command("gate")
@click.argument("run_dir", type=click.Path(path_type=Path))
@opt("max_drop", help="Most accuracy points an artefact may lose against the run's PyTorch fp32 model (a "
     "regression model: most percent its MAE may rise).")
@options("min_agreement", "min_speedup", "baseline", "max_accuracy_regression", "max_latency_regression",
         "min_accuracy", "max_latency_ms", "max_size_mb", "max_peak_mb", "allow_estimates")
@opt("target", default=None, help="Which bench results the speed rules read (default local-cpu).")
@opt("formats")
@click.option("--rules", "rules_file", type=click.Path(path_type=Path),
              help="A TOML file of rules ([gate] table); options given here override it.")
@click.option("--junit", type=click.Path(path_type=Path),
              help="JUnit XML to write (default RUN_DIR/gate/junit.xml).")
@click.option("--markdown", type=click.Path(path_type=Path),
              help="Markdown summary to write (default RUN_DIR/gate/summary.md).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def gate_cmd(run_dir, rules_file, junit, markdown, as_json, **rules) -> int:
    """Pass/fail rules on RUN_DIR's accuracy, speed and size. Exit 0 when every rule holds, 4 when
    one fails or its measurement is missing."""
    from edgekit.ci.gate import GateRules, rules_from_toml, run_gate
    from edgekit.measure.evaluate import check_run_dir

    table = rules_from_toml(rules_file) if rules_file else {}
    given = GateRules.from_mapping({**table, **{k: v for k, v in rules.items() if v is not None}})
    result = run_gate(check_run_dir(run_dir), given, junit, markdown)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_gate(result)
    stored(result)
    return 0 if result["passed"] else EXIT_GATE


def print_gate(result: dict) -> None:
    styles = {"pass": "green", "fail": "bold red", "missing": "bold yellow"}
    rows = [(f"{c['format']}/{c['precision']}", c["rule"],
             "missing" if c["measured"] is None else f"{c['measured']:.4g}", f"{c['op']} {c['limit']:g}",
             f"[{styles[c['status']]}]{c['status']}[/]") for c in result["checks"]]
    print_table(("artefact", "rule", "measured", "limit", "result"), rows,
                title=f"edgekit gate: {'PASSED' if result['passed'] else 'FAILED'}",
                caption=f"JUnit: {result['junit'] or 'not written'}  "
                        f"summary: {result['markdown'] or 'not written'}",
                right=("measured", "limit"))
    for c in result["checks"]:
        if c["status"] != "pass":
            err(f"gate: {c['format']}/{c['precision']} {c['rule']}: "
                + ("missing: " + c["detail"] if c["measured"] is None
                   else f"{c['measured']:.4g} is not {c['op']} {c['limit']:g} {c['detail']}".rstrip()))


@click.command("baseline")
@click.argument("run_dir", type=click.Path(path_type=Path))
@opt("out", required=True, help="Baseline JSON file to write.")
@opt("target")
def baseline_cmd(run_dir, out, target) -> int:
    """Store RUN_DIR's accuracy, latency and size per artefact, for `edgekit gate --baseline`."""
    from edgekit.ci.gate import make_baseline
    from edgekit.measure.evaluate import check_run_dir
    from edgekit.runs import manifest as mf

    if Path(out).is_dir():
        raise UsageError(f"--out {out} is a folder; give a file path, e.g. {Path(out) / 'baseline.json'}")
    data = make_baseline(check_run_dir(run_dir), target)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    mf.write_json_atomic(Path(out), data)
    stored = sorted({k for a in data["artefacts"].values() for k in a})
    click.echo(f"baseline: {out} ({len(data['artefacts'])} artefacts; {', '.join(stored)})")
    return 0


@click.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--html", "want_html", is_flag=True, help="Also write a self-contained report.html.")
@opt("target", help="Whose latency to show.")
def report_cmd(run_dir, want_html, target) -> int:
    """One page for RUN_DIR: settings, tool versions, a table per artefact (size, latency, accuracy,
    agreement) and plots (latency, accuracy against latency, size), in RUN_DIR/report/."""
    from edgekit.measure.evaluate import check_run_dir
    from edgekit.report import build
    from edgekit.runs import manifest as mf

    with mf.storing(run_dir):  # a run folder that cannot take the report: one line, exit 2
        made = build(check_run_dir(run_dir), target, want_html)
    for kind, path in made.items():
        click.echo(f"{kind}: {path}")
    return 0


@click.command("run")
@click.argument("recipe", type=click.Path(path_type=Path))
@opt("out", help="Run directory (overrides the recipe's out).")
def run_cmd(recipe, out) -> int:
    """The whole pipeline from a recipe file: [train], export (prune, int8, formats, calibration),
    [eval], [[bench]] per target, a report, and the [gate] (exit 4 when it fails)."""
    from edgekit.ci.recipe import load_recipe, run_recipe
    from edgekit.runs.staging import check_out

    loaded = load_recipe(recipe)  # checked again by run_recipe; here for its paths, before any work
    run_dir = out or loaded.plan.out
    check_out(run_dir, default_parent=Path("runs"))
    if loaded.train is not None:  # its checkpoint: [train] out, else beside the run directory
        check_out(loaded.train["out"], file=True, default_parent=(run_dir or Path("runs/x")).parent)
    status, _ = run_recipe(recipe, out, report=report)
    return status


@click.command("clean")
@click.argument("folder", type=click.Path(path_type=Path), default="runs")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def clean_cmd(folder, dry_run) -> int:
    """Remove the staging folders (.NAME.partial-PID) that killed runs left in FOLDER (default: runs).
    Only folders carrying edgekit's mark (or empty) are removed; one whose process still runs, of
    another user or another machine, a symlink, or one with content and no mark, is kept."""
    from edgekit.runs import staging as st

    if not Path(folder).is_dir():
        raise UsageError(f"{folder} is not a folder; pass the folder that holds the run directories "
                         "(the parent of --out)")
    stale = st.stale_stages(folder) if dry_run else st.remove_stale(folder)
    for stage in stale:
        click.echo(f"{'would remove' if dry_run else 'removed'} {stage.path} ({st.human_bytes(stage.bytes)})")
    for path, why in st.unmarked_stages(folder):
        click.echo(f"left {path}: {why} (remove it yourself if you know it is finished)")
    if not stale:
        click.echo(f"no stale staging folders in {folder}")
        return 0
    freed = st.human_bytes(sum(s.bytes for s in stale))
    plural = "s" if len(stale) > 1 else ""
    click.echo(f"{len(stale)} stale staging folder{plural}; {'would free' if dry_run else 'freed'} {freed}")
    return 0
