"""The option table (``edgekit.options``): the click options made from it and the settings Reader that
checks recipes by it agree on every option's default, range and choices."""

from __future__ import annotations

import json

import click
import pytest

from edgekit.bench.core import BenchSettings
from edgekit.ci.gate import GateRules
from edgekit.ci.recipe import load_recipe
from edgekit.cli import cli
from edgekit.cli.common import TableOption, opt
from edgekit.errors import UsageError
from edgekit.export.plan import ExportPlan
from edgekit.export.prune import METHODS, SCOPES, PruneSettings
from edgekit.options import OPTIONS, Option
from edgekit.settings import Reader
from tests.conftest import run_cli
from tests.integration.test_errors_cli import assert_usage_error


def _command(key: str) -> click.Command:
    @click.command()
    @opt(key)
    def command(**given):
        return given[key]
    return command


def _param(key: str) -> click.Option:
    return _command(key).params[0]


def _left_out(key: str):
    """What a command passes on for the option when the user leaves it out."""
    return _command(key).main([], standalone_mode=False)


def _on_the_command_line(key: str, value):
    """``--key value`` as the CLI takes it: click converts (and range-checks) the text, then the
    settings Reader reads it as a command-line option (``where`` empty)."""
    param = _param(key)
    text = str(value)
    converted = param.type_cast_value(click.Context(click.Command("t")), [text] if param.multiple else text)
    return Reader({key: converted}).get(key)


def _in_a_recipe(key: str, value):
    return Reader({key.replace("_", "-"): value}, "r.toml").get(key)


def _inside_and_outside(option: Option) -> tuple[list, list]:
    """Values in range (the bounds themselves where they are inclusive) and just out of it."""
    if option.kind == "choice":
        return list(option.choice_list()), ["nope"]
    step = 1 if option.kind == "int" else 0.001
    inside, outside = [], []
    for bound, inclusive, sign in ((option.least, True, -1), (option.above, False, -1),
                                   (option.most, True, 1), (option.below, False, 1)):
        if bound is None:
            continue
        inside.append(bound if inclusive else round(bound - sign * step, 3))
        outside.append(round(bound + sign * step, 3) if inclusive else bound)
    return inside, outside


CHECKED = sorted(k for k, o in OPTIONS.items() if o.ranged() or o.kind == "choice")


def _given(option: Option, value):
    """A default as the Reader returns it: formats as a tuple of names; nothing (None, ()) as None."""
    if option.kind == "formats" and isinstance(value, str):
        value = tuple(value.split(","))
    return None if value is None or value == () else value


@pytest.mark.parametrize("key", sorted(OPTIONS))
def test_the_click_option_and_the_reader_have_the_same_default(key):
    option = OPTIONS[key]
    on_click = _left_out(key)
    assert _given(option, on_click) == _given(option, Reader({}).get(key)) == \
        _given(option, option.default_value())


@pytest.mark.parametrize("key", CHECKED)
def test_the_command_line_and_a_recipe_refuse_and_take_the_same_values(key):
    option = OPTIONS[key]
    inside, outside = _inside_and_outside(option)
    assert inside and outside
    for value in inside:
        assert _on_the_command_line(key, value) == _in_a_recipe(key, value) == value
    for value in outside:
        with pytest.raises((click.BadParameter, UsageError)):
            _on_the_command_line(key, value)
        with pytest.raises(UsageError, match=rf"^r\.toml: {option.name} "):
            _in_a_recipe(key, value)


def _recipe(tmp_path, text: str):
    path = tmp_path / "r.toml"
    path.write_text('model = "lenet5"\n' + text)
    return load_recipe(path)


def _toml(mapping: dict) -> str:
    return "".join(f"{key.replace('_', '-')} = {json.dumps(value)}\n" for key, value in mapping.items())


# How each settings value reads a mapping of options (``where`` names it in messages).
BUILD = {
    "export": lambda m, tmp: ExportPlan.from_mapping({"model": "lenet5", "int8": True, "eval": "digits", **m},
                                                     "r.toml"),
    "prune": lambda m, tmp: PruneSettings.from_mapping({"ratio": 0.3, **m}, "r.toml [prune]"),
    "bench": lambda m, tmp: BenchSettings.from_mapping(m, "r.toml [[bench]]"),
    "gate": lambda m, tmp: GateRules.from_mapping(m, "r.toml [gate]"),
    "train": lambda m, tmp: _recipe(tmp, '[train]\ndataset = "digits"\n' + _toml(m)),
    "eval": lambda m, tmp: _recipe(tmp, '[eval]\ndataset = "digits"\n' + _toml(m)),
}


@pytest.mark.parametrize(("key", "settings"), [(k, s) for k in CHECKED for s in OPTIONS[k].settings])
def test_every_settings_value_checks_its_options_by_the_table(tmp_path, key, settings):
    option = OPTIONS[key]
    inside, outside = _inside_and_outside(option)
    BUILD[settings]({key: inside[0]}, tmp_path)
    with pytest.raises(UsageError, match=rf"r\.toml[^:]*: {option.name} "):
        BUILD[settings]({key: outside[0]}, tmp_path)


def test_the_settings_values_default_to_the_table():
    plan = ExportPlan.from_mapping({"model": "lenet5"})
    table = {k: OPTIONS[k].default_value() for k in OPTIONS}
    assert (plan.calib_size, plan.verify_samples, plan.options.width, plan.seed, plan.int8) == \
        (table["calib_size"], table["verify_samples"], table["width"], table["seed"], table["int8"])
    assert plan.formats == tuple(table["to"].split(","))
    bench = BenchSettings.from_mapping({})
    assert (bench.batch, bench.warmup, bench.torch_baseline) == (table["batch"], table["warmup"], True)
    prune = PruneSettings.from_mapping({"ratio": 0.5})
    assert (prune.method, prune.scope, prune.finetune_epochs) == \
        (table["method"], table["scope"], table["finetune_epochs"])
    assert OPTIONS["method"].choice_list() == METHODS and OPTIONS["scope"].choice_list() == SCOPES


def test_a_default_that_disagrees_with_the_table_is_a_bug_not_a_silent_difference():
    with pytest.raises(RuntimeError, match="calib_size defaults to 64 here but to 32"):
        Reader({}).integer("calib_size", 64)


def _commands():
    for name, command in cli.commands.items():
        for param in command.params:
            yield name, param


def test_every_command_takes_its_table_options_from_the_table():
    # bench's and check's --target and --targets-dir come with the SSH options (target_options)
    elsewhere = {("bench", "target"), ("bench", "targets_dir"), ("check", "target"), ("check", "targets_dir")}
    seen = set()
    for name, param in _commands():
        if param.name in OPTIONS and (name, param.name) not in elsewhere:
            assert isinstance(param, TableOption), f"edgekit {name} {param.opts[0]} is not made by opt()"
        if not isinstance(param, TableOption):
            continue
        seen.add(param.table_key)
        table = _param(param.table_key)
        assert param.type.to_info_dict() == table.type.to_info_dict(), (name, param.opts)
        assert param.default in (table.default, None, click.core.UNSET), (name, param.opts)
    assert seen == set(OPTIONS)  # no option is declared that no command takes


def test_opt_refuses_to_change_an_options_kind_or_range():
    with pytest.raises(TypeError, match="may change only"):
        opt("calib_size", type=click.IntRange(0))
    with pytest.raises(TypeError, match="may change only"):
        opt("calib_size", default=8)


def test_a_recipe_refuses_the_calibration_size_and_width_the_command_line_refuses(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('model = "lenet5"\ncalib-size = 200000\n')
    assert_usage_error(run_cli("run", recipe), "r.toml: calib-size must be between 1 and 100000, got 200000")
    r = run_cli("export", "lenet5", "--calib-size", "200000", "--out", tmp_path / "x")
    assert r.code == 2 and "'--calib-size': 200000 is not in the range 1<=x<=100000" in r.stderr
    recipe.write_text('model = "lenet5"\nwidth = 50\n')
    assert_usage_error(run_cli("run", recipe), "r.toml: width must be between 0.01 and 16, got 50")
    r = run_cli("export", "lenet5", "--width", "50", "--out", tmp_path / "x")
    assert r.code == 2 and "'--width': 50.0 is not in the range 0.01<=x<=16" in r.stderr
    assert not (tmp_path / "x").exists()
