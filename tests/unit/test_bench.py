"""Pieces of `edgekit bench` that need no device: host parsing, quoting, profiles, statistics."""

from __future__ import annotations

import shlex
import subprocess

import numpy as np
import pytest

from edgekit.bench import runner
from edgekit.devices.base import parse_result
from edgekit.devices.ssh import check_ssh_options, remote_words, split_host
from edgekit.errors import UnknownNameError, UsageError
from edgekit.targets import get_target, load_targets, parse_target


@pytest.mark.parametrize("host, want", [
    ("pi@10.0.0.5", ("pi@10.0.0.5", None)),
    ("pi@10.0.0.5:2222", ("pi@10.0.0.5", 2222)),
    ("raspberrypi", ("raspberrypi", None)),
    ("me@[fe80::1]:22", ("me@fe80::1", 22)),
    ("me@fe80::1", ("me@fe80::1", None)),  # bare IPv6: no port can be meant
])
def test_host_forms(host, want):
    assert split_host(host) == want


@pytest.mark.parametrize("host", ["", "-oProxyCommand=evil", "pi@host name", "pi@host:99999", "pi@host:x"])
def test_bad_hosts_are_refused(host):
    with pytest.raises(UsageError):
        split_host(host)


def test_every_remote_word_is_quoted():
    nasty = "/tmp/a b; rm -rf ~ $(reboot) `id` 'q'"
    line = remote_words(["python3", nasty, "-"])
    # the remote shell sees exactly the words we meant, nothing runs
    out = subprocess.run(["sh", "-c", f"printf '%s\\n' {line}"], capture_output=True, text=True).stdout
    assert out.splitlines() == ["python3", nasty, "-"]
    assert remote_words(["~/venv/bin/python"]) == '"$HOME"/' + shlex.quote("venv/bin/python")


@pytest.mark.parametrize("option", ["StrictHostKeyChecking=no", "stricthostkeychecking off",
                                    "UserKnownHostsFile=/dev/null", "GlobalKnownHostsFile /dev/null",
                                    "StrictHostKeyChecking=false", 'StrictHostKeyChecking="no"',
                                    "StrictHostKeyChecking\tno", "StrictHostKeyChecking = no"])
def test_options_that_disable_host_key_checking_are_refused(option):
    with pytest.raises(UsageError, match="turns host-key checking off"):
        check_ssh_options([option], "test")


def test_harmless_options_pass():
    check_ssh_options(["ProxyJump=bastion", "StrictHostKeyChecking=yes", "Compression=yes"], "test")


def test_builtin_profiles_load_and_say_how_to_reach_the_device():
    targets = load_targets()
    assert {"local-cpu", "local-gpu", "raspberrypi", "jetson"} <= set(targets)
    pi = targets["raspberrypi"]
    assert pi.connect == "ssh" and pi.arch == "aarch64" and pi.threads == 4
    assert pi.runtimes["tflite"] == ["ai-edge-litert", "tflite-runtime"]  # the old runtime as fallback
    gpu = targets["local-gpu"]
    assert gpu.accelerator and "CUDAExecutionProvider" in gpu.format_settings["onnx"]["providers"]
    assert gpu.format_settings["openvino"]["device"] == "GPU"
    assert "tflite" not in gpu.formats()
    with pytest.raises(UnknownNameError, match="did you mean 'jetson'"):
        get_target("jetsn")


def test_a_user_profile_overrides_a_builtin_and_bad_ones_are_named(tmp_path, monkeypatch):
    (tmp_path / "raspberrypi.toml").write_text('connect = "ssh"\nhost = "me@mypi"\nthreads = 2\n')
    monkeypatch.setenv("EDGEKIT_TARGETS_DIR", str(tmp_path))
    assert get_target("raspberrypi").connection["host"] == "me@mypi"
    bad = tmp_path / "bad.toml"
    for text, match in [('conect = "ssh"', "unknown keys conect"), ('connect = "telnet"', "connect must be"),
                        ("threads = -1", "threads must be"), ("[[", "cannot be read"),
                        ('accelerator = "no"', "accelerator must be true or false"),
                        ('connect = "ssh"\nhost = 5', "host must be a string"),
                        ('onnx = "x"', "onnx must be a table"),
                        ("[onnx]\nproviders = []", "providers is empty"),
                        ('[runtimes]\ntflite = "ai-edge-litert"', "runtimes.tflite must be a list"),
                        ('connect = "ssh"\nssh_options = "-v"', "ssh_options must be a list of strings"),
                        ('connect = "ssh"\nport = 0', "port must be 1 to 65535"),
                        ('host = "pi@x"', "unknown keys host; known for connect = 'local': ")]:
        bad.write_text(text)
        with pytest.raises(UsageError, match=match):
            parse_target(bad)


def test_statistics_match_numpy():
    lat = [0.001, 0.002, 0.003, 0.010]
    s = runner.summarise(lat, batch=2, wall_s=0.02)
    ms = np.array(lat) * 1e3
    assert s["p50_ms"] == pytest.approx(np.median(ms)) and s["p99_ms"] == pytest.approx(np.percentile(ms, 99))
    assert s["min_ms"] == 1.0 and s["max_ms"] == 10.0 and s["iters"] == 4
    assert s["cv"] == pytest.approx(ms.std(ddof=1) / ms.mean())
    assert s["throughput_per_s"] == pytest.approx(2 * 4 / 0.02)


def test_time_loop_honours_iters_seconds_and_a_minimum():
    calls = []
    first, s = runner.time_loop(lambda: calls.append(1), {"warmup": 3, "iters": 7})
    assert len(calls) == 1 + 3 + 7 and s["iters"] == 7 and first >= 0
    _, s = runner.time_loop(lambda: None, {"warmup": 0, "seconds": 1e-9, "min_iters": 12})
    assert s["iters"] == 12


def test_int8_inputs_are_quantized_with_the_tensors_own_scale():
    from edgekit.bench import runtime_kit

    x = runtime_kit.random_input([1000], "int8", np.random.default_rng(0), quant=(0.05, 3))
    assert x.dtype == np.int8 and abs(float(np.mean(x)) - 3) < 1  # zero point: N(0,1) centres on it
    assert 15 < np.std(x.astype(float)) < 25  # 1 / 0.05


def test_a_runner_that_dies_is_reported_not_parsed():
    r = parse_result("some output\n", "Segmentation fault\n", -11, "pi")
    assert r["status"] == "failed" and "killed by signal 11" in r["error"]
    assert "Segmentation fault" in r["error"]
    ok = parse_result(f"noise\n{runner.RESULT_MARKER}" + '{"status": "ok", "p50_ms": 1.0}\n', "", 0, "pi")
    assert ok == {"status": "ok", "p50_ms": 1.0}


def test_the_runner_runs_alone_without_edgekit(tmp_path):
    """runner.py is copied to devices without edgekit: it must run with edgekit unimportable."""
    import json
    import shutil
    import sys

    import onnx
    from onnx import TensorProto, helper

    from edgekit.bench.core import support_files

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    onnx.save(helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                                opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "m.onnx")
    shutil.copy(runner.__file__, tmp_path / "runner.py")
    for name, paths in support_files(["onnx"]).items():  # the kit and ONNX's session, as shipped
        shutil.copy(paths[0], tmp_path / ("edgekit_runtime_kit.py" if name == "kit" else "runtime_onnx.py"))
    block = ("import sys, runpy; sys.modules['edgekit'] = None; sys.argv = ['runner.py', '-']; "
             "runpy.run_path('runner.py', run_name='__main__')")
    spec = {"path": "m.onnx", "format": "onnx", "iters": 3, "warmup": 0}
    done = subprocess.run([sys.executable, "-c", block], input=json.dumps(spec), capture_output=True,
                          text=True, cwd=tmp_path)
    result = parse_result(done.stdout, done.stderr, done.returncode, "here")
    assert done.returncode == 0 and result["status"] == "ok" and result["iters"] == 3, result
