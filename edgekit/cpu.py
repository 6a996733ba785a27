"""This CPU's int8 instructions, and the int8 configuration they make fastest at the same accuracy.

The formats read it when they quantize (``export --int8``) and record the choice and its reason in
the artefact's scheme (``"chosen": {"cpu": ..., "why": ...}``), so a manifest says what CPU it was
tuned for. Measured on an AMD EPYC with AVX-512 VNNI (benchmarks/results/raw_best.md).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

# The flags that matter for int8 matmul/conv kernels, in the order they are reported.
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "avx512bw", "avx2", "asimddp", "i8mm", "sve")
ARM = ("aarch64", "arm64", "armv8l", "armv7l")


@dataclass(frozen=True)
class CpuInfo:
    machine: str  # platform.machine(), "x86_64" / "aarch64" spelled as Linux does
    flags: frozenset[str]

    def int8_flags(self) -> list[str]:
        return [f for f in INT8_FLAGS if f in self.flags]

    def describe(self) -> str:
        """"x86_64 avx512_vnni avx512bw avx2": the machine and its int8-relevant flags."""
        return " ".join([self.machine, *self.int8_flags()])

    @property
    def x86(self) -> bool:
        return self.machine in ("x86_64", "amd64", "i686", "i386")

    @property
    def vnni(self) -> bool:
        """uint8 x int8 dot products in one instruction (vpdpbusd), no int16 saturation."""
        return bool(self.flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def this_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """This machine's CPU: its flags from /proc/cpuinfo (x86 "flags", ARM "Features"); none elsewhere."""
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    flags: set[str] = set()
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                flags.update(value.split())
                break
    except OSError:  # macOS, Windows: no flags; the portable choice is taken
        pass
    return CpuInfo(machine, frozenset(flags))


@dataclass(frozen=True)
class OrtInt8Choice:
    """How onnxruntime.quantization quantizes for a CPU: activation type and weight range."""

    activations: str  # "uint8" (U8S8) or "int8" (S8S8); weights are always int8
    reduce_range: bool  # 7-bit weights: avoids the int16 saturation of x86 without VNNI
    cpu: str
    why: str

    def record(self) -> dict:
        return {"cpu": self.cpu, "activations": self.activations, "weights": "int8",
                "reduce_range": self.reduce_range, "why": self.why}


def ort_int8_choice(cpu: CpuInfo) -> OrtInt8Choice:
    """onnxruntime's fastest static int8 at the same accuracy on ``cpu`` (QDQ, per-channel weights).

    x86 with VNNI: U8S8. MLAS multiplies uint8 activations by int8 weights with vpdpbusd; S8S8 is
    emulated (resnet50, 2 threads, EPYC: 13 ms vs 29 ms, same SQNR). x86 without VNNI: U8S8 with
    7-bit weights (``reduce_range``), as onnxruntime advises, since vpmaddubsw sums pairs into int16
    and saturates with full-range weights. ARM and others: S8S8, onnxruntime's default and what its
    dot-product (sdot/i8mm) kernels take.
    """
    desc = cpu.describe()
    if cpu.x86 and cpu.vnni:
        return OrtInt8Choice("uint8", False, desc, "x86 with VNNI: onnxruntime's U8S8 kernels use vpdpbusd "
                             "(uint8 x int8), S8S8 is emulated; U8S8 measured ~2x faster at the same SQNR")
    if cpu.x86:
        return OrtInt8Choice("uint8", True, desc, "x86 without VNNI: U8S8 uses vpmaddubsw, which saturates "
                             "int16 sums with 8-bit weights, so weights keep 7 bits (reduce_range)")
    return OrtInt8Choice("int8", False, desc, "not x86: S8S8 QDQ, onnxruntime's recommended int8 on ARM "
                         "(sdot/i8mm kernels)")


def prune_round_to(cpu: CpuInfo) -> tuple[int, str]:
    """The channel multiple structured pruning keeps on ``cpu`` (``--round-to`` unset): (multiple, why).

    Odd channel counts cost more than their MACs: onnxruntime runs a U8S8 int8 conv on MLAS's direct
    "symmetric" kernels only when its input channels are a multiple of 4 and its output channels a
    multiple of 4 (AVX-512), 8 (AVX2, AVX-VNNI) or 16 (ARM dot product), else it falls back to
    im2col + a general int8 GEMM (MLAS convsym.cpp, MlasConvSymPackWSize). Unrounded, resnet50
    ``--prune 0.3`` has 49 of its 53 convs off that path and its ONNX int8 gains far less than its
    MACs say (benchmarks/results/pruning.md). oneDNN (OpenVINO) blocks channels by 16 on AVX-512 and 8
    on AVX2, and XNNPACK's int8 GEMMs (TFLite, ExecuTorch) take 16 output channels a tile with AVX-512
    VNNI or ARM dot product, 8 with AVX2 or plain NEON; a multiple of the tile wastes no lanes.
    """
    desc = cpu.describe()
    if cpu.x86 and cpu.flags & {"avx512bw", "avx512_vnni", "amx_int8"}:
        return 16, (f"{desc}: AVX-512 int8 kernels work 16 channels a vector (oneDNN blocks, XNNPACK tiles) "
                    "and onnxruntime's direct U8S8 conv needs multiples of 4")
    if cpu.x86:
        return 8, (f"{desc}: AVX2 int8 kernels work 8 channels a tile (oneDNN, XNNPACK) and onnxruntime's "
                   "direct U8S8 conv needs output channels in multiples of 8")
    if cpu.flags & {"asimddp", "i8mm"}:
        return 16, (f"{desc}: ARM dot-product int8 kernels take 16 output channels a tile (onnxruntime's "
                    "direct conv, XNNPACK)")
    return 8, f"{desc}: 8, the int8 tile of NEON and AVX2 kernels (no wider SIMD reported)"
