"""What an artefact really stores and computes in 8 bits (``Int8Share``), as every format's
``int8_share`` reads it back from the written file."""

from __future__ import annotations

from dataclasses import dataclass

# An int8 artefact with fewer of its weight values stored in 8 bits than this is "partly int8".
INT8_WEIGHTS_FLOOR = 0.9


@dataclass(frozen=True)
class Int8Share:
    """What an artefact really stores and computes in 8 bits, read back from its file.

    Weights are the constant tensors of two or more dimensions (convolution kernels, matrices,
    recurrent gate weights), counted in values (parameters): biases, quantization scales, zero
    points and shapes are not weights here. Compute ops are convolutions, matrix multiplies and
    recurrent layers; one counts as int8 when its data input reaches it in 8 bits (static int8)
    or the runtime quantizes it on the fly (dynamic int8); a weight-only op computes in float.
    """

    int8_values: int = 0  # weight values stored in 8 bits or fewer
    float_values: int = 0
    other_values: int = 0  # e.g. int16 / int32 weights
    int8_ops: int = 0
    float_ops: int = 0
    read_from: str = ""  # what was read: "ONNX initializers and nodes", ...

    @property
    def weights(self) -> float:
        """The share of weight values stored in 8 bits (1.0 for a model without weights)."""
        total = self.int8_values + self.float_values + self.other_values
        return self.int8_values / total if total else 1.0

    @property
    def ops(self) -> float | None:
        total = self.int8_ops + self.float_ops
        return self.int8_ops / total if total else None

    @property
    def fully(self) -> bool:
        return self.weights >= INT8_WEIGHTS_FLOOR

    def label(self) -> str:
        """"int8" when (nearly) all weights are 8-bit, else "partly int8 (N% of weights)"."""
        return "int8" if self.fully else f"partly int8 ({percent(self.weights)} of weights)"

    def to_dict(self) -> dict:
        return {
            "weights": round(self.weights, 4),
            "ops": None if self.ops is None else round(self.ops, 4),
            "label": self.label(),
            "weight_values": {"int8": self.int8_values, "float": self.float_values,
                              "other": self.other_values},
            "compute_ops": {"int8": self.int8_ops, "float": self.float_ops},
            "read_from": self.read_from,
        }


def percent(share: float) -> str:
    """A share as a whole percentage that never rounds a partial share to 0% or 100%."""
    pct = share * 100
    if 0 < pct < 1:
        return "<1%"
    if 99 < pct < 100:
        return ">99%"
    return f"{pct:.0f}%"
