"""The model zoo: reference numbers, torchvision compatibility, options, and users' own models."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from edgekit.errors import UnknownNameError, UsageError
from edgekit.models import MODELS, load_model
from edgekit.models.complexity import count_macs, count_params, rnn_macs
from edgekit.models.googlenet import GoogLeNet
from edgekit.models.spec import ModelOptions

FIXTURE = json.loads((Path(__file__).parents[1] / "data" / "torchvision_shapes.json").read_text())

# Parameters from the papers / torchvision, MACs as torchvision publishes them ("GFLOPS").
PAPER_PARAMS = {
    "lenet5": 61_706,
    "vgg16": 138_357_544,
    "googlenet": 6_624_904,
    "resnet50": 25_557_032,
    "lstm": 4 * (7 * 32 + 32 * 32 + 2 * 32) + 32 * 7 + 7,  # documented default, hidden 32
}
PUBLISHED_MACS = {
    "lenet5": 0.42e6,
    "vgg16": 15.47e9,
    "googlenet": 1.50e9,
    "resnet50": 4.09e9,
    "lstm": 24 * (4 * (7 * 32 + 32 * 32) + 32 * 7),  # 24 steps of LSTM + read-out
}


@pytest.fixture(scope="module")
def zoo():
    """Full-size zoo models, each built once for this file (and freed after it)."""
    built: dict = {}

    def get(name: str):
        if name not in built:
            built[name] = load_model(name)
        return built[name]

    yield get
    built.clear()


def test_zoo_names_and_registration_does_not_import_torch():
    assert MODELS.names() == ["lenet5", "vgg16", "googlenet", "resnet50", "lstm"]
    code = "import sys, edgekit.models; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", list(PAPER_PARAMS))
def test_reference_numbers_match_the_built_model_and_the_papers(zoo, name):
    full = zoo(name)
    spec = MODELS.get(full.name)
    assert full.params == spec.reference_params == PAPER_PARAMS[full.name]
    assert full.macs == spec.reference_macs
    assert full.macs == pytest.approx(PUBLISHED_MACS[full.name], rel=0.02)
    assert not full.module.training
    with torch.no_grad():
        out = full.module(full.example_input())
    assert out.shape[-1] == full.num_classes == spec.default_num_classes
    assert full.input_spec == spec.input_spec(spec.resolve(ModelOptions()))


@pytest.mark.parametrize("name", ["vgg16", "googlenet", "resnet50"])
def test_state_dict_keys_and_shapes_are_torchvisions(zoo, name):
    full = zoo(name)
    ours = {k: list(v.shape) for k, v in full.module.state_dict().items()}
    theirs = FIXTURE[full.name]
    if full.name == "googlenet":  # the aux heads are training-only: not in the zoo model
        theirs = {k: v for k, v in theirs.items() if not k.startswith(("aux1.", "aux2."))}
    assert ours == theirs


def test_torchvision_googlenet_checkpoint_with_aux_heads_loads(tmp_path):
    state = {k: torch.full(s, 0.5) for k, s in FIXTURE["googlenet"].items()}
    state = {k: v.long() if k.endswith("num_batches_tracked") else v for k, v in state.items()}
    assert any(k.startswith("aux1.") for k in state)
    path = tmp_path / "googlenet_torchvision.pth"
    torch.save(state, path)
    model = load_model("googlenet", ModelOptions(input_size=32), weights=path)
    assert "aux" in " ".join(model.weights["notes"])
    assert torch.all(model.module.fc.weight == 0.5)
    assert not any(k.startswith("aux") for k in model.module.state_dict())


def test_googlenet_aux_heads_only_run_in_training():
    net = GoogLeNet(num_classes=5, width=0.125, aux_logits=True)
    x = torch.rand(2, 3, 64, 64)
    logits, aux2, aux1 = net.train()(x)
    assert logits.shape == aux1.shape == aux2.shape == (2, 5)
    assert net.eval()(x).shape == (2, 5)


@pytest.mark.parametrize(
    "name, options, in_shape, out_shape",
    [
        ("lenet5", ModelOptions(width=0.5, num_classes=4), (1, 1, 32, 32), (1, 4)),
        ("vgg16", ModelOptions(width=0.0625, input_size=32, num_classes=5), (1, 3, 32, 32), (1, 5)),
        ("googlenet", ModelOptions(width=0.125, input_size=48), (1, 3, 48, 48), (1, 1000)),
        ("resnet50", ModelOptions(width=0.125, input_size=40, num_classes=3), (1, 3, 40, 40), (1, 3)),
        ("lstm", ModelOptions(width=0.5, input_size=10), (1, 10, 7), (1, 10, 7)),
    ],
)
def test_small_variants(name, options, in_shape, out_shape):
    model = load_model(name, options)
    assert model.input_spec.shape == in_shape
    assert model.options["width"] == options.width
    with torch.no_grad():
        assert model.module(model.example_input()).shape == out_shape
    assert 0 < model.params < PAPER_PARAMS[name]
    assert 0 < model.macs < MODELS.get(name).reference_macs
    if name != "lstm":
        assert model.preprocessing.size == in_shape[2:]


def test_preprocessing_and_input_specs():
    lenet = MODELS.get("lenet5")
    pre = lenet.preprocessing(lenet.resolve(ModelOptions()))
    assert pre.grayscale and pre.size == (32, 32)
    lstm = MODELS.get("lstm")
    assert lstm.input_spec(lstm.resolve(ModelOptions())).layout == "NTC"
    assert lstm.preprocessing(lstm.resolve(ModelOptions())).kind == "sequence"
    assert (lstm.task, lstm.static_int8, lstm.default_input_size) == ("sequence", False, 24)
    assert {MODELS.get(n).builtin_calibration for n in ("vgg16", "googlenet", "resnet50")} == {"photos"}


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("lenet5", ModelOptions(input_size=28), "only --input-size 32"),
        ("resnet50", ModelOptions(input_size=16), "must be >= 32"),
        ("vgg16", ModelOptions(width=0), "--width must be a number > 0"),
        ("lstm", ModelOptions(num_classes=-1), "--num-classes must be >= 1"),
    ],
)
def test_bad_options_are_one_line_usage_errors(name, options, message):
    with pytest.raises(UsageError, match=message) as err:
        load_model(name, options)
    assert "\n" not in str(err.value)


def test_unknown_model_lists_the_zoo_and_the_closest_name():
    with pytest.raises(UnknownNameError) as err:
        load_model("resnet5")
    assert "'resnet50'" in str(err.value) and "lenet5, vgg16" in str(err.value)


def test_lstm_macs_are_counted_analytically():
    class Seq(nn.Module):
        def __init__(self, rnn):
            super().__init__()
            self.rnn = rnn

        def forward(self, x):
            return self.rnn(x)[0]

    lstm = nn.LSTM(5, 8, num_layers=2, bidirectional=True, batch_first=True)
    per_step = 2 * 4 * (5 * 8 + 8 * 8) + 2 * 4 * (16 * 8 + 8 * 8)
    assert rnn_macs(lstm, batch=1, steps=3) == 3 * per_step
    assert count_macs(Seq(lstm), torch.rand(1, 3, 5)) == 3 * per_step
    gru = nn.GRU(5, 8)  # time-major
    assert count_macs(Seq(gru), torch.rand(4, 2, 5)) == 4 * 2 * 3 * (5 * 8 + 8 * 8)


def test_count_params_and_conv_macs():
    conv = nn.Conv2d(3, 8, 3)
    assert count_params(conv) == 8 * 27 + 8
    assert count_macs(conv, torch.rand(1, 3, 10, 10)) == 8 * 8 * 8 * 27


USER_FILE = """
import torch
import torch.nn as nn
from helper import HIDDEN  # a neighbour of this file


class Net(nn.Module):
    def __init__(self, num_classes=10, hidden=HIDDEN):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 6, batch_first=True)
        self.out = nn.Linear(6, 3)

    def forward(self, x):
        return self.out(self.rnn(x)[0])


class Broken(nn.Module):
    def __init__(self):
        super().__init__()
        raise RuntimeError("no GPU here")


NOT_A_MODULE = 3
"""


@pytest.fixture
def user_file(tmp_path):
    (tmp_path / "helper.py").write_text("HIDDEN = 16\n")
    path = tmp_path / "mynet.py"
    path.write_text(textwrap.dedent(USER_FILE))
    return path


def test_user_model_builds_counts_and_describes_itself(user_file):
    model = load_model(f"{user_file}:Net", input_shape=(1, 1, 28, 28))
    assert (model.task, model.num_classes, model.builtin_calibration) == ("classification", 10, None)
    assert model.params == 28 * 28 * 16 + 16 + 16 * 10 + 10
    assert model.macs == 28 * 28 * 16 + 16 * 10
    assert model.input_spec.shape == (1, 1, 28, 28) and model.input_spec.layout == "NCHW"
    pre = model.preprocessing
    assert (pre.kind, pre.size, pre.grayscale, pre.mean, pre.std) == ("image", (28, 28), True, (0.0,), (1.0,))
    assert not model.module.training


def test_user_model_args_weights_and_sequence_task(user_file, tmp_path):
    ref = load_model(f"{user_file}:Net", input_shape=(1, 1, 28, 28), model_args={"num_classes": 3})
    assert ref.num_classes == 3 and ref.options["model_args"] == {"num_classes": 3}
    weights = tmp_path / "net.pt"
    torch.save(ref.module.state_dict(), weights)
    again = load_model(
        f"{user_file}:Net", input_shape=(1, 1, 28, 28), model_args={"num_classes": 3}, weights=weights
    )
    x = ref.example_input()
    assert torch.equal(again.module(x), ref.module(x))
    assert again.weights["path"] == str(weights)
    seq = load_model(f"{user_file}:Tagger", input_shape=(1, 9, 4))
    assert (seq.task, seq.num_classes, seq.input_spec.layout, seq.preprocessing.kind) == (
        "sequence",
        3,
        "NTC",
        "none",
    )
    assert seq.macs == 9 * (3 * (4 * 6 + 6 * 6) + 6 * 3)


@pytest.mark.parametrize(
    "ref, kwargs, message",
    [
        ("missing.py:Net", {"input_shape": (1, 1, 28, 28)}, "model file .*missing.py not found"),
        ("{file}:Nett", {"input_shape": (1, 1, 28, 28)}, "Nett not found .*in it: Broken, Net, Tagger"),
        ("{file}:NOT_A_MODULE", {"input_shape": (1, 2)}, "is a int, not an nn.Module class or a function"),
        ("{file}:Broken", {"input_shape": (1, 2)}, r"Broken\(\) failed: RuntimeError: no GPU here"),
        ("{file}:Net", {"input_shape": (1, 8, 8)}, r"fails on an input of shape \(1, 8, 8\)"),
        ("{file}:Net", {"model_args": {"depth": 3}}, "needs --input-shape"),
        ("{file}:Net", {"input_shape": (1, 1, 28, 28), "model_args": {"depth": 3}}, "unexpected keyword"),
        ("{file}:Net", {"input_shape": (1, 1, 28, 28), "options": ModelOptions(width=2)}, "zoo models"),
        ("{file}", {"input_shape": (1, 1, 28, 28)}, "name the model class or factory function too"),
    ],
)
def test_user_model_mistakes_are_one_line_usage_errors(user_file, ref, kwargs, message):
    with pytest.raises(UsageError, match=message) as err:
        load_model(ref.format(file=user_file), **kwargs)
    assert "\n" not in str(err.value)


def test_user_file_that_does_not_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nraise ImportError('needs timm')\n")
    with pytest.raises(UsageError, match="cannot import .*bad.py: ImportError: needs timm"):
        load_model(f"{bad}:Net", input_shape=(1, 3))


CIFAR = Path(__file__).resolve().parents[1] / "data" / "user_models" / "cifar_resnet.py"


@pytest.mark.parametrize("name, args, blocks", [
    ("resnet20", None, 3), ("resnet32", {"num_classes": 4}, 5),  # factory functions, as torchvision/timm
    ("resnet8_narrow", {"num_classes": 4}, 1),  # functools.partial(ResNet, BasicBlock, [1, 1, 1], width=8)
    ("model", None, 3),  # an instance the file builds at import
])
def test_a_factory_function_a_partial_or_a_built_model_is_a_model(name, args, blocks):
    loaded = load_model(f"{CIFAR}:{name}", input_shape=(1, 3, 32, 32), model_args=args)
    assert len(loaded.module.layer1) == blocks
    assert loaded.num_classes == (args or {}).get("num_classes", 10)
    code = loaded.options["code"]
    assert code["path"] == str(CIFAR) and len(code["sha256"]) == 64


def test_a_module_path_names_a_model_in_an_installed_or_local_package(tmp_path, monkeypatch):
    pkg = tmp_path / "mylib" / "nets"
    pkg.mkdir(parents=True)
    for folder in (pkg.parent, pkg):
        (folder / "__init__.py").write_text("")
    (pkg / "cifar.py").write_text(CIFAR.read_text())
    monkeypatch.chdir(tmp_path)  # like `python -m`, the current folder is searched too
    loaded = load_model("mylib.nets.cifar:resnet20", input_shape=(1, 3, 32, 32))
    assert loaded.name == "mylib.nets.cifar:resnet20" and loaded.num_classes == 10
    assert loaded.options["code"]["path"] == str((pkg / "cifar.py").resolve())
    with pytest.raises(UsageError, match="no module named mylib.vision .*install the package"):
        load_model("mylib.vision:resnet20", input_shape=(1, 3, 32, 32))


@pytest.mark.parametrize("name, args, message", [
    ("broken_factory", None, r"broken_factory\(\) failed: RuntimeError: pretrained weights need a download"),
    ("not_a_model", None, r"not_a_model\(\) returned dict, not an nn.Module"),
    ("resnet20", {"depth": 3}, r"resnet20\(\*\*\{'depth': 3\}\) failed: TypeError"),
    ("model", {"num_classes": 3}, "already built; --model-args needs its class or a factory"),
    ("F", None, "is a module, not an nn.Module class or a function .*resnet20\\(\\)"),
])
def test_factory_mistakes_are_one_line_usage_errors(name, args, message):
    with pytest.raises(UsageError, match=message) as err:
        load_model(f"{CIFAR}:{name}", input_shape=(1, 3, 32, 32), model_args=args)
    assert "\n" not in str(err.value)
