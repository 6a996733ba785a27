"""The model zoo and ``load_model``, which builds a zoo model or a user's ``file.py:NAME``.

Registering the zoo imports no torch: each spec's ``build`` imports its architecture file lazily.
Reference numbers are for the default options and are recomputed by tests/unit/test_models.py;
MACs follow the convention in ``edgekit.models.complexity``.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.errors import UsageError
from edgekit.models.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    InputSpec,
    LoadedModel,
    ModelOptions,
    ModelSpec,
    Preprocessing,
)
from edgekit.registry import Registry

if TYPE_CHECKING:
    import torch.nn as nn

MODELS: Registry[ModelSpec] = Registry("model")
DEFAULT_OPTIONS = ModelOptions()


def _lazy(module: str) -> Callable[[ModelOptions], nn.Module]:
    def build(options: ModelOptions) -> nn.Module:
        return importlib.import_module(f"edgekit.models.{module}").build(options)

    return build


def _image_input(channels: int) -> Callable[[ModelOptions], InputSpec]:
    return lambda o: InputSpec(shape=(1, channels, o.input_size, o.input_size))


def _imagenet_preprocessing(o: ModelOptions) -> Preprocessing:
    size = (o.input_size, o.input_size)
    return Preprocessing(kind="image", size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD, resize="crop")


_IMAGENET = dict(
    task="classification",
    default_num_classes=1000,
    default_input_size=224,
    input_spec=_image_input(3),
    preprocessing=_imagenet_preprocessing,
    builtin_calibration="photos",
)
_RANDOM_INIT = "no pretrained weights ship with edgekit: pass --weights (torchvision files load)"

MODELS.register(
    "lenet5",
    ModelSpec(
        name="lenet5",
        title="LeNet-5",
        paper="LeCun et al. 1998, Gradient-based learning applied to document recognition",
        task="classification",
        default_num_classes=10,
        default_input_size=32,
        build=_lazy("lenet5"),
        input_spec=_image_input(1),
        preprocessing=lambda o: Preprocessing(
            kind="image", size=(32, 32), grayscale=True, mean=(0.5,), std=(0.5,), resize="squash"
        ),
        reference_params=61_706,
        reference_macs=416_520,
        builtin_calibration="digits",
        notes=(
            "C3 connects to all 6 S2 maps (the paper's sparse connection table is not used)",
            "S2/S4 are plain 2x2 average pools (the paper's have a trainable weight and bias)",
            "tanh instead of the paper's scaled tanh 1.7159*tanh(2x/3)",
            "the output is a linear layer giving logits (the paper uses Euclidean RBF units)",
            "input is fixed at 32x32 (C5 is a 5x5 conv over S4's 5x5 maps); images are resized",
        ),
    ),
)

MODELS.register(
    "vgg16",
    ModelSpec(
        name="vgg16",
        title="VGG-16 (configuration D)",
        paper="Simonyan & Zisserman 2014, Very deep convolutional networks for large-scale image recognition",
        build=_lazy("vgg"),
        reference_params=138_357_544,
        reference_macs=15_470_264_320,
        notes=(
            "torchvision's layout: an adaptive 7x7 average pool before the classifier lets any "
            "input size >= 32 work (the paper evaluates dense, multi-scale)",
            _RANDOM_INIT,
        ),
        **_IMAGENET,
    ),
)

MODELS.register(
    "googlenet",
    ModelSpec(
        name="googlenet",
        title="GoogLeNet (Inception-v1)",
        paper="Szegedy et al. 2014, Going deeper with convolutions",
        build=_lazy("googlenet"),
        reference_params=6_624_904,
        reference_macs=1_498_376_192,
        notes=(
            "torchvision's layout: batch norm after every conv, and a 3x3 (not 5x5) conv in the "
            "'5x5' branch, so torchvision checkpoints load",
            "auxiliary classifiers are training-only: not built here, never exported; aux1/aux2 "
            "keys in a weights file are ignored",
            "torchvision's own ImageNet weights expect transform_input=True, i.e. inputs "
            "normalised to [-1, 1]; edgekit feeds ImageNet mean/std normalised inputs",
            _RANDOM_INIT,
        ),
        **_IMAGENET,
    ),
)

MODELS.register(
    "resnet50",
    ModelSpec(
        name="resnet50",
        title="ResNet-50",
        paper="He et al. 2015, Deep residual learning for image recognition",
        build=_lazy("resnet"),
        reference_params=25_557_032,
        reference_macs=4_089_184_256,
        notes=(
            "torchvision's v1.5: stride 2 on the 3x3 conv of each stage's first block "
            "(the paper strides the first 1x1)",
            _RANDOM_INIT,
        ),
        **_IMAGENET,
    ),
)

MODELS.register(
    "lstm",
    ModelSpec(
        name="lstm",
        title="LSTM next-symbol predictor (Embedded Reber grammar)",
        paper="Hochreiter & Schmidhuber 1997, Long short-term memory",
        task="sequence",
        default_num_classes=7,
        default_input_size=24,
        build=_lazy("lstm"),
        input_spec=lambda o: InputSpec(shape=(1, o.input_size, 7), layout="NTC"),
        preprocessing=lambda o: Preprocessing(kind="sequence"),
        reference_params=5_479,
        reference_macs=125_184,
        builtin_calibration="reber",
        static_int8=False,
        notes=(
            "input: one-hot symbols (1, T, 7), T = --input-size (default 24); output: next-symbol "
            "logits (1, T, 7); --width scales the hidden size (default 32)",
            "a modern nn.LSTM with forget gates (Gers et al. 2000) and hidden size 32; the 1997 "
            "net had 4 blocks of 2 memory cells and no forget gate, so reference parameters and "
            "MACs are this default's, not the paper's",
        ),
    ),
)

# (smallest, largest) --input-size per model; None: no upper limit.
_INPUT_SIZES = {"lenet5": (32, 32), "lstm": (1, None)}
_IMAGE_MIN = 32


def check_options(spec: ModelSpec, options: ModelOptions) -> None:
    """Raise UsageError for option values the model cannot be built with."""
    if not (options.width > 0 and math.isfinite(options.width)):
        raise UsageError(f"--width must be a number > 0, got {options.width}")
    if options.num_classes is not None and options.num_classes < 1:
        raise UsageError(f"--num-classes must be >= 1, got {options.num_classes}")
    size = options.input_size
    if size is None:
        return
    low, high = _INPUT_SIZES.get(spec.name, (_IMAGE_MIN, None))
    if low == high and size != low:
        raise UsageError(f"{spec.name} takes only --input-size {low} (its input is fixed)")
    if size < low or (high is not None and size > high):
        raise UsageError(f"--input-size for {spec.name} must be >= {low}, got {size}")


def load_model(
    name: str,
    options: ModelOptions = DEFAULT_OPTIONS,
    weights: Path | None = None,
    input_shape: tuple[int, ...] | None = None,
    model_args: dict | None = None,
    batch_axis: int | None = None,
) -> LoadedModel:
    """Build a zoo model or a user's ``path/to/file.py:NAME`` / ``package.module:NAME``, load
    ``weights``, count params/MACs."""
    from edgekit.models.onnx_file import is_onnx_file, load_onnx_model
    from edgekit.models.user import is_user_model, refuse_notebook

    refuse_notebook(name)
    if is_onnx_file(name):  # path/to/model.onnx: onnxruntime runs the file as the reference
        return load_onnx_model(name, input_shape, batch_axis, weights=weights, model_args=model_args,
                               zoo_options=options != DEFAULT_OPTIONS)
    if is_user_model(name):
        if options != DEFAULT_OPTIONS:
            raise UsageError(
                "--num-classes, --width and --input-size apply to zoo models; for a model from a "
                "file use --model-args and --input-shape"
            )
        return _load_user_model(name, weights, input_shape, model_args, batch_axis)
    if name.endswith(".py"):
        raise UsageError(f"{name}: name the model class or factory function too, e.g. {name}:MyNet")
    if name not in MODELS and _looks_like_path(name):
        raise UsageError(_missing_model_file(name))
    spec = MODELS.get(name)
    if batch_axis:
        raise UsageError(f"{name} takes its batch first; --batch-axis is for models from a file")
    if model_args:
        raise UsageError("--model-args applies only to your own model (file.py:NAME or package.module:NAME)")
    check_options(spec, options)
    resolved = spec.resolve(options)
    input_spec = spec.input_spec(resolved)
    if input_shape is not None and tuple(input_shape) != input_spec.shape:
        raise UsageError(
            f"{name} takes input {input_spec.shape}; --input-shape is for models from a file "
            "(use --input-size)"
        )
    module = spec.build(resolved).eval()
    loaded = LoadedModel(
        name=name,
        module=module,
        task=spec.task,
        input_spec=input_spec,
        preprocessing=spec.preprocessing(resolved),
        num_classes=resolved.num_classes,
        options={
            "num_classes": resolved.num_classes,
            "width": resolved.width,
            "input_size": resolved.input_size,
        },
        params=0,
        macs=None,
        weights=_load_weights(module, weights),
        builtin_calibration=spec.builtin_calibration,
        static_int8=spec.static_int8,
    )
    return _count(loaded)


def _load_user_model(
    name: str, weights: Path | None, input_shape: tuple[int, ...] | None, model_args: dict | None,
    batch_axis: int | None = None,
) -> LoadedModel:
    from edgekit.models.describe import describe_user_model
    from edgekit.models.user import build_user_model

    if input_shape is None:
        raise UsageError(f"{name}: a model from a file needs --input-shape (with the batch), e.g. 1,1,28,28")
    module, code = build_user_model(name, model_args)
    module.eval()
    info = _load_weights(module, weights)  # before the trial run, so its errors come first
    about = describe_user_model(module, input_shape, name, batch_axis or 0)
    loaded = LoadedModel(
        name=name,
        module=module,
        task=about.task,
        input_spec=about.inputs[0],
        preprocessing=about.preprocessing,
        num_classes=about.num_classes,
        options={"model_args": dict(model_args or {}), "code": code,
                 "input_shape": [list(s.shape) for s in about.inputs] if len(about.inputs) > 1
                 else list(about.inputs[0].shape)},
        params=0,
        macs=None,
        weights=info,
        builtin_calibration=None,
        output_batch_axis=about.output_batch_axis,
        extra_inputs=about.inputs[1:],
        output_names=about.output_names,
    )
    return _count(loaded)


def _load_weights(module: nn.Module, path: Path | None) -> dict | None:
    if path is None:
        return None
    from edgekit.models.weights import apply_weights, load_weights_file, reshape_to_state_dict

    state, info = load_weights_file(Path(path))
    if (info.get("edgekit") or {}).get("pruning", {}).get("settings", {}).get("method") == "structured":
        reshape_to_state_dict(module, state)  # a pruned checkpoint: its layers are smaller
    notes = apply_weights(module, state, str(path))
    return {**info, "notes": notes} if notes else info


def _count(loaded: LoadedModel) -> LoadedModel:
    from edgekit.models.complexity import count_macs, count_params
    from edgekit.models.recurrent import int8_plan

    int8_plan(loaded)
    loaded.params = count_params(loaded.module)
    loaded.macs = count_macs(loaded.module, loaded.example_inputs())
    return loaded


def _looks_like_path(name: str) -> bool:
    """A model reference that names a file (a folder in it, or a checkpoint's suffix), not a zoo name."""
    from edgekit.models.weights import WEIGHTS_SUFFIXES

    return "/" in name or "\\" in name or Path(name).suffix.lower() in WEIGHTS_SUFFIXES


def _missing_model_file(name: str) -> str:
    """Why MODEL, a path, names no model: it is a folder, or no such file (and where a file of that
    name is, when one is close by: the current folder, checkpoints/, the nearest existing folder
    of the path)."""
    from edgekit.models.weights import WEIGHTS_SUFFIXES

    path = Path(name).expanduser()
    if path.is_dir():
        return (f"{name} is a folder; pass the checkpoint file inside it (from `edgekit train`), or a zoo "
                f"name ({', '.join(MODELS.names())})")
    what = "checkpoint" if path.suffix.lower() in WEIGHTS_SUFFIXES else "model file"
    above = path.parent
    while above != above.parent and not above.is_dir():
        above = above.parent  # the nearest folder of the path that exists: was the file moved up?
    near = [p for p in (Path(path.name), Path("checkpoints") / path.name, above / path.name)
            if p != path and p.is_file()]
    where = f"; a file of that name is at {near[0]}" if near else ""
    return (f"{what} {name} does not exist{where}; check the path (or name a zoo model: "
            f"{', '.join(MODELS.names())})")
