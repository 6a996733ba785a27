"""Pruning: channels really removed and kept consistent, exactness where it can be proven, the
classifier and --keep layers kept, unstructured sparsity, pruned checkpoints that reload."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from edgekit.cpu import CpuInfo, prune_round_to, this_cpu
from edgekit.errors import UsageError
from edgekit.export.prune import PruneSettings, prune_model, rounded_keep, sparsity_of
from edgekit.models import load_model
from edgekit.models.spec import ModelOptions
from edgekit.models.weights import reshape_to_state_dict

QUIET = dict(report=lambda line: None)


def seeded(name, options=None):
    torch.manual_seed(0)
    return load_model(name, options or ModelOptions())


@pytest.mark.parametrize("name, options, classifier", [
    ("resnet50", ModelOptions(width=0.5, input_size=64), "fc"),
    ("googlenet", ModelOptions(width=0.5, input_size=64), "fc"),
    ("vgg16", ModelOptions(width=0.25, input_size=32), "classifier.6"),
    ("lenet5", ModelOptions(), "classifier.3"),
])
def test_structured_pruning_shrinks_layers_and_keeps_the_classifier(name, options, classifier):
    model = seeded(name, options)
    x = model.example_input()
    outputs = model.module.get_submodule(classifier).out_features
    report = prune_model(model, PruneSettings(0.3), **QUIET)
    assert report.kept == [classifier]
    assert model.module.get_submodule(classifier).out_features == outputs
    assert model.module(x).shape == (1, outputs)  # residuals, concatenations and the head still fit
    assert report.macs_after / report.macs_before <= 0.55  # about 0.7^2: channels in and out shrink
    assert report.params_after < 0.6 * report.params_before
    assert report.layers and all(after < before for before, after in report.layers.values())
    # the reported counts are the model's own
    assert model.params == report.params_after and model.macs == report.macs_after


def test_a_kept_layer_keeps_its_channels():
    model = seeded("resnet50", ModelOptions(input_size=64))
    before = model.module.layer1[0].conv1.out_channels
    report = prune_model(model, PruneSettings(0.3, keep=("layer1.0.conv1",)), **QUIET)
    assert model.module.layer1[0].conv1.out_channels == before
    assert "layer1.0.conv1" in report.kept and "layer1.0.conv1" not in report.layers
    assert model.module.layer1[0].conv2.out_channels < model.module.layer1[0].conv2.in_channels + 1


def _kill(conv_out: nn.Module, bias, conv_next: nn.Module, idx) -> None:
    with torch.no_grad():
        conv_out.weight[idx] = 0
        if bias is not None:
            bias[idx] = 0
        conv_next.weight[:, idx] = 0


def test_removing_dead_channels_leaves_the_output_unchanged():
    """Channels that carry nothing (all their weights zero) have the least magnitude, so pruning
    exactly those must not change a single output: the surviving weights were sliced right."""
    model = seeded("vgg16", ModelOptions(width=0.25, input_size=32))
    convs = [m for m in model.module.features if isinstance(m, nn.Conv2d)]
    for conv, nxt in zip(convs, convs[1:]):
        dead = torch.arange(0, conv.out_channels, 3)[: int(0.34 * conv.out_channels) + 1]
        _kill(conv, conv.bias, nxt, dead)
    last = next(n for n, m in model.module.named_modules() if m is convs[-1])  # feeds the classifier
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        want = model.module(x)
    keep = (last, "classifier.0", "classifier.3")  # live channels: only the dead ones may go
    report = prune_model(model, PruneSettings(0.3, keep=keep, round_to=1), **QUIET)  # exact counts
    assert len(report.layers) == len(convs) - 1
    with torch.no_grad():
        torch.testing.assert_close(model.module(x), want, rtol=1e-5, atol=1e-6)


def test_lstm_hidden_units_are_pruned_across_all_four_gates_exactly():
    model = seeded("lstm")
    lstm, head = model.module.lstm, model.module.head
    hidden = lstm.hidden_size
    dead = torch.arange(0, hidden, 4)  # a quarter of the units: every weight and bias touching them
    gates = torch.cat([dead + g * hidden for g in range(4)])
    with torch.no_grad():
        lstm.weight_ih_l0[gates] = 0
        lstm.weight_hh_l0[gates] = 0
        lstm.weight_hh_l0[:, dead] = 0
        lstm.bias_ih_l0[gates] = 0
        lstm.bias_hh_l0[gates] = 0
        head.weight[:, dead] = 0
    x = torch.rand(3, *model.input_spec.shape[1:])
    with torch.no_grad():
        want = model.module(x)
    report = prune_model(model, PruneSettings(0.25, round_to=1), **QUIET)
    assert lstm.hidden_size == hidden - len(dead) and head.in_features == lstm.hidden_size
    assert report.layers == {"lstm": [hidden, hidden - len(dead)]}
    with torch.no_grad():
        torch.testing.assert_close(model.module(x), want, rtol=1e-5, atol=1e-6)


def test_a_pruned_state_dict_reloads_into_a_fresh_model():
    model = seeded("googlenet", ModelOptions(width=0.25, input_size=64))
    prune_model(model, PruneSettings(0.4, scope="global"), **QUIET)
    fresh = seeded("googlenet", ModelOptions(width=0.25, input_size=64))
    resized = reshape_to_state_dict(fresh.module, model.module.state_dict())
    fresh.module.load_state_dict(model.module.state_dict())
    assert resized and "fc" in resized  # the classifier's inputs shrank too
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(fresh.module.eval()(x), model.module(x))


def _pruned_widths(model) -> dict[str, int]:
    return {n: m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
            for n, m in model.module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def test_pruned_channel_counts_are_multiples_of_round_to_and_the_record_says_so():
    model = seeded("vgg16", ModelOptions(width=0.25, input_size=32))  # 16 to 1024 channels
    report = prune_model(model, PruneSettings(0.3, round_to=8), **QUIET)
    widths = _pruned_widths(model)
    assert report.layers and all(widths[n] == after for n, (_, after) in report.layers.items())
    assert all(after % 8 == 0 and after < before for before, after in report.layers.values())
    assert report.to_dict()["round_to"] == {"multiple": 8, "chosen": {"cpu": this_cpu().describe(),
                                                                      "why": "given with --round-to"}}
    assert 0.45 <= report.macs_after / report.macs_before <= 0.55  # nearest multiple: still about 0.7^2


def test_round_to_defaults_to_what_this_cpus_int8_kernels_take():
    multiple, why = prune_round_to(this_cpu())
    model = seeded("lenet5")  # 6, 16, 120 and 84 channels
    record = prune_model(model, PruneSettings(0.3), **QUIET).to_dict()
    assert record["settings"]["round_to"] is None  # not given: chosen, and the record says which and why
    assert record["round_to"] == {"multiple": multiple, "chosen": {"cpu": this_cpu().describe(), "why": why}}
    wide = [after for before, after in record["layers"].values() if before > multiple]
    assert wide and all(after % multiple == 0 for after in wide)


EPYC = {"avx2", "avx512f", "avx512bw", "avx512_vnni"}


@pytest.mark.parametrize("machine, flags, multiple", [
    ("x86_64", EPYC, 16),  # AVX-512: 16 int8 channels a vector
    ("x86_64", {"avx2", "fma"}, 8),
    ("x86_64", {"avx2", "avx_vnni"}, 8),  # AVX-VNNI is 256-bit
    ("aarch64", {"asimd", "asimddp"}, 16),  # dot product: 16-channel tiles
    ("aarch64", {"asimd"}, 8),
    ("riscv64", set(), 8),
])
def test_round_to_follows_the_cpu(machine, flags, multiple):
    chosen, why = prune_round_to(CpuInfo(machine, frozenset(flags)))
    assert chosen == multiple and why.startswith(machine)


@pytest.mark.parametrize("channels, keep, multiple, rounded", [
    (64, 44, 16, 48),  # nearest, not Torch-Pruning's down (32: half the layer)
    (2048, 1433, 16, 1440),
    (16, 11, 16, 11),  # no multiple of 16 below 16: the ratio's count
    (48, 43, 16, 32),  # rounding up would prune nothing: the multiple below
    (64, 3, 16, 16),  # never rounded to zero
    (64, 44, 1, 44),
])
def test_kept_channels_round_to_the_nearest_multiple_that_still_prunes(channels, keep, multiple, rounded):
    assert rounded_keep(channels, keep, multiple) == rounded


def test_unstructured_pruning_zeroes_weights_but_keeps_sizes():
    model = seeded("resnet50", ModelOptions(width=0.25, input_size=64))
    params, macs = model.params, model.macs
    report = prune_model(model, PruneSettings(0.5, method="unstructured"), **QUIET)
    assert report.sparsity == pytest.approx(0.5, abs=1e-3)
    assert report.params_after == params and report.macs_after == macs  # nothing faster for dense runtimes
    assert "no faster" in report.note
    assert int((model.module.fc.weight == 0).sum()) == 0  # the classifier is kept whole
    assert not any(name.endswith("_mask") for name, _ in model.module.named_buffers())  # permanent
    assert sparsity_of(model.module, [model.module.fc]) == pytest.approx(report.sparsity)


@pytest.mark.parametrize("settings, match", [
    (PruneSettings(0.0), "between 0 and 1"),
    (PruneSettings(1.0), "between 0 and 1"),
    (PruneSettings(0.3, method="random"), "unknown pruning method"),
    (PruneSettings(0.3, finetune_epochs=2), "needs --dataset"),
    (PruneSettings(0.3, keep=("layer9.conv1",)), "no layer of this model"),
])
def test_bad_settings_are_one_line_errors(settings, match):
    with pytest.raises(UsageError, match=match):
        prune_model(seeded("resnet50", ModelOptions(width=0.125, input_size=32)), settings, **QUIET)


def test_a_misspelt_kept_layer_gets_a_suggestion():
    with pytest.raises(UsageError, match="did you mean 'layer1.0.conv1'"):
        prune_model(seeded("resnet50", ModelOptions(width=0.125, input_size=32)),
                    PruneSettings(0.3, keep=("layer1.0.cnv1",)), **QUIET)


def test_multi_layer_lstms_are_refused_for_structured_pruning():
    model = seeded("lstm")
    model.module.lstm = nn.LSTM(7, 16, num_layers=2, batch_first=True)
    model.module.head = nn.Linear(16, 7)
    with pytest.raises(UsageError, match="single-layer, unidirectional LSTMs"):
        prune_model(model, PruneSettings(0.3), **QUIET)
