"""Which int8 a model gets, by what it contains: a recurrent layer anywhere makes it dynamic or
weight-only (see RECURRENT_REASON), whatever the model is called."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgekit.models.spec import LoadedModel

RECURRENT_REASON = (
    "recurrent layers found ({layers}): static int8 of their gate activations and cell state "
    "breaks them (the state is re-quantized every step), so their weights are int8 and their "
    "activations stay float (dynamic int8 where the format has it, weight-only otherwise)"
)


def int8_plan(loaded: LoadedModel) -> None:
    """Choose static or dynamic/weight-only int8 by what the module contains, not by its name: any
    recurrent layer (``nn.LSTM``/``GRU``/``RNN`` or a cell, at any depth) makes it dynamic."""
    from edgekit.models.complexity import recurrent_layers

    found = recurrent_layers(loaded.module)
    loaded.recurrent = tuple(found)
    if found:
        loaded.static_int8 = False
        loaded.int8_reason = recurrent_reason(found)


def recurrent_reason(found: list[str]) -> str:
    """Why int8 is dynamic / weight-only for a model with the recurrent layers ``found`` ("" for none)."""
    if not found:
        return ""
    shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
    return RECURRENT_REASON.format(layers=shown)
