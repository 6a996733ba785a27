"""Parameter and MAC counts.

Convention (the one behind torchvision's "GFLOPS" column, which is really GMACs): a MAC is one
multiply-accumulate of a convolution, a linear layer, a matrix multiply (including attention) or
a recurrent layer (LSTM, GRU, RNN). Bias additions, batch norm, activations, pooling and
element-wise additions are not counted. Counts are for one forward pass on the example inputs
(batch 1, every input), in eval mode.

Convolutions, linear layers and matmuls are counted by ``torch.utils.flop_counter`` (MACs =
FLOPs / 2). It does not see inside ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (their fused kernels are not
in its table), so those are added analytically per time step and layer:
``gates * (input_size * hidden + hidden * hidden)`` with 4 gates for an LSTM, 3 for a GRU, 1
for a plain RNN (plus ``hidden * proj_size`` for an LSTM with a projection), times directions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def recurrent_layers(module: nn.Module) -> list[str]:
    """"path (Kind)" of every recurrent layer in ``module`` at any depth: ``nn.LSTM``, ``nn.GRU``,
    ``nn.RNN`` (any number of layers, bidirectional, batch-first or not) and their cells."""
    import torch.nn as nn

    kinds = (nn.RNNBase, nn.RNNCellBase)
    return [f"{name or '(the model)'} ({type(m).__name__}"
            + (", bidirectional" if getattr(m, "bidirectional", False) else "")
            + (f", {m.num_layers} layers" if getattr(m, "num_layers", 1) > 1 else "") + ")"
            for name, m in module.named_modules() if isinstance(m, kinds)]


def count_params(module: nn.Module) -> int:
    """Number of parameters (trainable or not; buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in module.parameters())


def rnn_macs(rnn: nn.RNNBase, batch: int, steps: int) -> int:
    """MACs of one forward pass of ``rnn`` over ``steps`` time steps for ``batch`` sequences."""
    gates = _GATES[rnn.mode]
    dirs = 2 if rnn.bidirectional else 1
    hidden = rnn.hidden_size
    out = rnn.proj_size or hidden  # what each step emits and feeds back
    total = 0
    for layer in range(rnn.num_layers):
        inp = rnn.input_size if layer == 0 else out * dirs
        per_step = gates * (inp * hidden + out * hidden)
        if rnn.proj_size:
            per_step += hidden * rnn.proj_size
        total += per_step * dirs
    return total * batch * steps


def _rnn_shape(rnn: nn.RNNBase, x) -> tuple[int, int]:
    """(batch, steps) of an RNN's input, which may be a PackedSequence."""
    from torch.nn.utils.rnn import PackedSequence

    if isinstance(x, PackedSequence):  # every real step of every sequence, counted once
        return 1, int(x.data.shape[0])
    if x.dim() == 2:  # unbatched (T, C)
        return 1, int(x.shape[0])
    return (int(x.shape[0]), int(x.shape[1])) if rnn.batch_first else (int(x.shape[1]), int(x.shape[0]))


def count_macs(module: nn.Module, example_input: torch.Tensor | tuple) -> int:
    """MACs of one eval-mode forward pass of ``module`` on ``example_input`` (see module doc): a
    tensor, or ``LoadedModel.example_inputs()``, one tensor per input (``module(*inputs)``)."""
    import torch
    import torch.nn as nn
    from torch.utils.flop_counter import FlopCounterMode

    rnn_counts: list[tuple[str, int]] = []
    names = {m: n for n, m in module.named_modules()}

    def hook(rnn, args):
        rnn_counts.append((names[rnn], rnn_macs(rnn, *_rnn_shape(rnn, args[0]))))

    handles = [m.register_forward_pre_hook(hook) for m in module.modules() if isinstance(m, nn.RNNBase)]
    was_training = module.training
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    try:
        module.eval()
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(*inputs)
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    flops = counter.get_total_flops()
    per_module = counter.get_flop_counts()
    root = type(module).__name__
    for name, macs in rnn_counts:
        # If a build of torch ever decomposes the RNN into counted matmuls, keep those instead.
        seen = per_module.get(f"{root}.{name}" if name else root, {})
        if not sum(seen.values()):
            flops += 2 * macs
    return int(flops // 2)


def scale_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded to the nearest integer, at least 1 (no rounding to multiples
    of 8: small variants stay small, and width 1.0 gives exactly the paper's channels)."""
    return max(1, int(round(channels * width)))
