"""A format and a connection kind own their facts: every list elsewhere comes from the registries."""

from __future__ import annotations

import sys
import textwrap

import pytest

from edgekit import formats
from edgekit.bench import runner
from edgekit.devices import CONNECTIONS
from edgekit.errors import UnknownNameError, UsageError
from edgekit.formats import FORMATS
from edgekit.targets import known_keys, parse_target


def test_every_format_has_one_session_that_a_bare_device_can_import():
    """The runner and edgekit open artefacts with the format's one runtime module; on a device it
    runs beside the runner with nothing of edgekit, so at its top it imports only the kit (by its
    shipped name first) and the standard library."""
    import ast

    for name, cls in FORMATS.items():
        module = cls.runtime_module()
        assert isinstance(module.Session, type), name
        tree = ast.parse(cls.runtime_file().read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in top if isinstance(n, ast.ImportFrom)}
        assert names <= set(sys.stdlib_module_names) | {"__future__"}, (name, names)
        kit = [n for n in tree.body if isinstance(n, ast.Try)]
        assert kit and "edgekit_runtime_kit" in ast.unparse(kit[0].body[0]), name
    assert runner.RESULT_MARKER  # the runner itself lists no format
    assert "SESSIONS" not in vars(runner)


def test_suffixes_and_defaults_are_derived_from_the_classes(tmp_path):
    assert formats.default_names()[:3] == ("onnx", "tflite", "openvino")
    for name, cls in FORMATS.items():
        main = tmp_path / f"m{cls.extension}"
        assert formats.format_for_file(main.with_suffix(f".int8{cls.extension.upper()}")) == name
        assert formats.get_format(name).files(main)[0] == main
    xml = tmp_path / "m.xml"
    assert formats.get_format("openvino").files(xml) == [xml, tmp_path / "m.bin"]
    assert formats.export_order(["tflite", "onnx"]) == ["onnx", "tflite"]  # tflite's converter goes last
    with pytest.raises(UsageError, match="expected one of .onnx"):
        formats.format_for_file(tmp_path / "m.h5")


@pytest.fixture
def toy_format(tmp_path, monkeypatch):
    """A new format written as a contributor would: one module, one registration line."""
    (tmp_path / "toyfmt.py").write_text(textwrap.dedent('''
        from edgekit.formats.base import Format

        class ToyFormat(Format):
            name = "toy"
            extension = ".toy"
            companions = (".toyw",)
            default = False
            tools = ("numpy",)
            runtimes = ("toyrt",)
            colour = "#123456"
            target_settings = {"device": ("toy_device", "DSP")}

            def export_fp32(self, model, path): ...
            def export_int8(self, model, fp32_path, calib, path, options=None): ...
            def open(self, path, threads=None): ...
    '''))
    # Not a mock: the real registry registers a real module. monkeypatch only makes the module
    # importable from tmp_path and gives the registry a copy of its table, so the toy format is
    # gone again after this test and no other test sees a fifth format.
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(FORMATS, "_items", dict(FORMATS._items))
    formats.register("toyfmt:ToyFormat")
    yield
    sys.modules.pop("toyfmt", None)


def test_a_registered_format_appears_everywhere(toy_format, tmp_path):
    assert "toy" in formats.names() and "toy" not in formats.default_names()  # default = False
    assert formats.format_for_file(tmp_path / "a.toy") == "toy"
    assert formats.parse_formats("onnx,toy") == ("onnx", "toy")
    assert "numpy" in formats.get_format("toy").tool_versions()  # from its `tools`
    assert "toy" in known_keys()
    profile = tmp_path / "dsp.toml"
    profile.write_text('description = "x"\n[toy]\ndevice = "NPU"\n')
    target = parse_target(profile)
    assert target.runner_settings()["toy_device"] == "NPU"
    assert target.format_settings["toy"] == {"device": "NPU"}
    profile.write_text('[toy]\ncolour = "red"\n')
    with pytest.raises(UsageError, match=r"\[toy\] has unknown keys colour; known: device"):
        parse_target(profile)


def test_a_format_registered_twice_or_without_a_name_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        formats.register("edgekit.formats.onnx:OnnxFormat")
    with pytest.raises(TypeError, match="not a Format subclass"):
        formats.register("edgekit.formats.base:Session")


def test_connection_kinds_come_from_their_registry(tmp_path):
    assert set(CONNECTIONS) >= {"local", "ssh"}
    assert CONNECTIONS.get("local").this_machine and not CONNECTIONS.get("ssh").this_machine
    assert {"host", "ssh_options"} <= known_keys()
    profile = tmp_path / "phone.toml"
    profile.write_text('connect = "adb"\n')
    with pytest.raises(UsageError, match="connect must be one of local, ssh"):
        parse_target(profile)
    profile.write_text('connect = "ssh"\nssh_options = ["StrictHostKeyChecking=no"]\n')
    with pytest.raises(UsageError, match="turns host-key checking off"):  # the ssh kind checks its own keys
        parse_target(profile)
    with pytest.raises(UnknownNameError, match="unknown connection kind 'adb'"):
        CONNECTIONS.get("adb")
