"""A connection kind declares its profile keys and its command-line options; profiles, `edgekit
targets`, bench, check and recipes take them from the registry without knowing the kind."""

from __future__ import annotations

import sys
import textwrap

import pytest

from edgekit import devices
from edgekit.devices import CONNECTIONS
from edgekit.errors import EXIT_DEVICE, EXIT_USAGE, UsageError
from edgekit.targets import get_target, parse_target

TOY = '''
from edgekit.devices.base import Device, Key, Option
from edgekit.errors import DeviceError


class AdbDevice(Device):
    connect = "adb"
    label = "ADB"
    how = "is reached over adb"
    keys = (Key("serial"), Key("python", default="python3"))
    options = (Option("serial", "the device's serial number (`adb devices`)."),)
    address_key = "serial"
    built = []  # the values each device was built from

    @classmethod
    def from_values(cls, target, values):
        cls.built.append(values)
        raise DeviceError(f"toy adb: no device {values['serial']} attached")
'''


@pytest.fixture
def adb(tmp_path, monkeypatch):
    """A toy ``adb`` kind written as a contributor would (one module, one registration line), and a
    folder with a profile of it. Not a mock: the real registry registers a real module; monkeypatch
    gives the registry a copy of its table, so the kind is gone again after the test."""
    (tmp_path / "toyadb.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(CONNECTIONS, "_items", dict(CONNECTIONS._items))
    cls = devices.register("toyadb:AdbDevice")
    profiles = tmp_path / "targets"
    profiles.mkdir()
    (profiles / "phone.toml").write_text('description = "a phone"\nconnect = "adb"\nserial = "X"\n')
    yield cls, profiles
    sys.modules.pop("toyadb", None)


def test_a_registered_kind_has_its_keys_options_and_listing(adb, cli, tmp_path):
    cls, profiles = adb
    phone = get_target("phone", profiles)
    assert phone.connection == {"serial": "X", "python": "python3"} and phone.address() == "X"

    bad = profiles / "bad.toml"
    bad.write_text('connect = "adb"\nserial = "X"\nhost = "pi@x"\n')
    with pytest.raises(UsageError) as refused:
        parse_target(bad)
    line = str(refused.value)
    assert "\n" not in line and "unknown keys host; known for connect = 'adb': " in line
    assert "serial" in line and "ssh_options" not in line  # the keys of that kind, not of every kind
    bad.unlink()

    for command in ("bench", "check"):
        shown = cli(command, "--help")
        assert shown.code == 0 and "ADB targets: the device's serial" in shown.stdout
        assert "--serial" in shown.stdout and "--host" in shown.stdout  # the built-in kinds' too

    model = tmp_path / "m.onnx"  # bench builds the device before it opens any file
    model.write_bytes(b"")
    r = cli("bench", model, "--target", "phone", "--targets-dir", profiles, "--serial", "Y")
    assert r.code == EXIT_DEVICE and "toy adb: no device Y attached" in r.stderr
    assert cls.built[-1] == {"serial": "Y", "python": "python3"}  # --serial reached the kind
    r = cli("check", model, "--target", "phone", "--targets-dir", profiles)
    assert r.code == EXIT_DEVICE and "no device X attached" in r.stderr  # the profile's own serial

    r = cli("bench", model, "--serial", "Y")  # local-cpu takes no --serial
    assert r.code == EXIT_USAGE and "--serial is for ADB targets; local-cpu runs on this machine" in r.stderr
    r = cli("bench", model, "--target", "phone", "--targets-dir", profiles, "--host", "pi@x")
    assert r.code == EXIT_USAGE and "--host is for SSH targets; phone is reached over adb" in r.stderr

    listed = cli("targets", "--targets-dir", profiles)
    row = next(line for line in listed.stdout.splitlines() if "phone" in line)
    assert "adb" in row and " X " in row and "a phone" in row  # the address in the host column


def test_a_recipe_passes_a_kinds_options_and_refuses_another_kinds(adb, tmp_path):
    from edgekit.ci.recipe import load_recipe

    _, profiles = adb
    recipe = tmp_path / "ci.toml"
    recipe.write_text(f'model = "lenet5"\n[[bench]]\ntarget = "phone"\ntargets-dir = "{profiles}"\n'
                      'serial = "Z"\n')
    assert load_recipe(recipe).bench[0]["overrides"]["serial"] == "Z"
    recipe.write_text('model = "lenet5"\n[[bench]]\ntarget = "local-cpu"\nserial = "Z"\n')
    with pytest.raises(UsageError, match="--serial is for ADB targets; local-cpu runs on this machine"):
        load_recipe(recipe)


def test_the_registry_is_clean_again(cli):
    assert "adb" not in CONNECTIONS
    assert "--serial" not in cli("bench", "--help").stdout


def test_the_ssh_kinds_port_and_ssh_config_keys_and_the_command_lines_host(tmp_path):
    from edgekit.bench.core import target_key

    (tmp_path / "pi_config").write_text("Host *\n  ServerAliveInterval 9\n")
    profile = tmp_path / "pi.toml"
    profile.write_text('connect = "ssh"\nhost = "pi@x"\nport = 2222\nssh_config = "pi_config"\n')
    pi = parse_target(profile)
    command = devices.build(pi).ssh_command(["echo", "a b"])
    assert command[-3:] == ["--", "pi@x", "echo 'a b'"]  # every remote word quoted
    assert ["-p", "2222"] == command[command.index("-p"):command.index("-p") + 2]
    assert str(tmp_path / "pi_config") in command  # relative to the profile's folder
    assert "BatchMode=yes" in command and "StrictHostKeyChecking=no" not in command
    other = devices.build(pi, {"host": "me@y:23", "python": None})
    assert (other.dest, other.port, other.python) == ("me@y", 23, "python3")  # its own port wins
    assert target_key(pi, "me@y:23") == "pi@me@y:23" and target_key(pi, "pi@x") == "pi"
