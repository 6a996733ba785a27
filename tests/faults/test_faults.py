"""Issue 23's fault-injection suite: real processes, real signals, a real tmpfs (root; skipped with
the reason elsewhere). The cases live in tests/faults/cases.py; benchmarks/faults.py runs the same
functions with 20 seeds. Here: ``EDGEKIT_FAULT_SEEDS`` seeds (default 3) for the signal cases, one
seed for the rest (each is one fault, aimed by construction)."""

from __future__ import annotations

import pytest

from tests.faults import cases
from tests.faults.procs import Skip

SEEDS = cases.seeds()


def _run(case, *args):
    try:
        case(*args)
    except Skip as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("model", ["lenet5", "lstm"])
def test_a_signal_during_an_export_stops_it_and_leaves_nothing(model, signame, seed, tmp_path, lenet5_run):
    _run(cases.signal_export, model, signame, seed, tmp_path, lenet5_run.path)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_second_signal_still_stops_an_export(signame, tmp_path, lenet5_run):
    _run(cases.signal_export, "lenet5", signame, 0, tmp_path, lenet5_run.path, True)


def test_sigkill_of_the_export_takes_its_worker_along_and_clean_removes_what_is_left(tmp_path, lenet5_run):
    _run(cases.sigkill_parent, 0, tmp_path, lenet5_run.path)


@pytest.mark.parametrize("fmt", cases.FORMATS)
def test_a_full_disk_during_a_formats_write_is_one_line(fmt, tmp_path):
    _run(cases.full_disk, fmt, 0, tmp_path)


@pytest.mark.parametrize("command", list(cases.READ_ONLY))
def test_a_read_only_run_folder_prints_the_results_and_says_they_were_not_stored(command, tmp_path,
                                                                                   lenet5_run):
    _run(cases.read_only, command, 0, tmp_path, lenet5_run.path)


def test_four_commands_on_one_run_at_once_keep_every_record(tmp_path, lenet5_run):
    _run(cases.concurrent, 0, tmp_path, lenet5_run.path)


def test_a_swapped_artefact_is_refused_by_every_reader(tmp_path, lenet5_run, lstm_run):
    _run(cases.swapped, 0, tmp_path, lenet5_run.path, lstm_run.path / cases.SWAPPED)


def test_a_missing_artefact_is_one_missing_row(tmp_path, lenet5_run):
    _run(cases.missing, 0, tmp_path, lenet5_run.path)
