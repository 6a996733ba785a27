"""Microcontroller targets: a Cortex-M running TensorFlow Lite Micro (``connect = "mcu"``), and one
with an Arm Ethos-U microNPU whose compiler is Vela (``connect = "ethos-u"``).

No runner runs on a microcontroller: it has no Python. Its artefacts are judged on this machine by
the tools that build its firmware, with the same kernels and cost model: TFLite Micro's reference
kernels (``tflite-micro``) run the file and measure the tensor arena it needs; Vela
(``ethos-u-vela``) compiles it for the NPU and estimates cycles and memory. ``check``, ``bench`` and
``eval`` hand such targets to ``edgekit.mcu`` (``Device.judged_here``). The profile's budgets are the
part's real RAM and flash; KB is 1024 bytes, as datasheets count.
"""

from __future__ import annotations

from edgekit.devices.base import Device, Key
from edgekit.errors import DeviceError, UsageError

KB = 1024


def size_text(n: int | float) -> str:
    """Bytes as an MCU datasheet says them: "256 KB", "1.9 MB", "612 B" (1 KB = 1024 bytes)."""
    if n >= KB * KB:
        return f"{n / KB / KB:.3g} MB"
    if n >= KB:
        return f"{n / KB:.3g} KB"
    return f"{int(n)} B"


class MCUDevice(Device):
    name = "a microcontroller (judged here in TensorFlow Lite Micro)"
    connect = "mcu"
    label = "microcontroller"
    how = "is a microcontroller, judged on this machine"
    judged_here = True
    runs_formats = ("tflite",)  # TensorFlow Lite Micro runs flatbuffers only
    keys = (
        Key("cpu", str, ""),  # "cortex-m4", "cortex-m7": what the firmware is built for
        Key("ram_kb", int),  # RAM for the tensor arena (and the rest of the firmware)
        Key("flash_kb", int),  # flash for the model (and the rest of the firmware)
        Key("clock_mhz", int),
        Key("boards", list, ()),  # boards this profile stands for, for people
    )

    @classmethod
    def check_profile(cls, values: dict, where: str) -> None:
        for key in ("ram_kb", "flash_kb"):
            if not isinstance(values.get(key), int) or values[key] <= 0:
                raise UsageError(f"{where}: {key} must be a positive integer (KB, 1024 bytes), got "
                                 f"{values.get(key)!r}", hint="give the part's RAM and flash, e.g. "
                                 "ram_kb = 256 and flash_kb = 1024")

    @classmethod
    def from_values(cls, target, values: dict) -> Device:
        return cls(target.name, values)

    def __init__(self, target_name: str = "", values: dict | None = None):
        self.target_name, self.values = target_name, dict(values or {})
        self.name = f"{target_name} ({self.part()})" if target_name else self.name

    def part(self) -> str:
        cpu = self.values.get("cpu") or "microcontroller"
        return f"{cpu}, {size_text(self.ram_bytes)} RAM, {size_text(self.flash_bytes)} flash"

    @property
    def ram_bytes(self) -> int:
        return int(self.values.get("ram_kb") or 0) * KB

    @property
    def flash_bytes(self) -> int:
        return int(self.values.get("flash_kb") or 0) * KB

    def stage(self, files):
        raise DeviceError(f"{self.target_name} is a microcontroller: edgekit copies nothing to it",
                          hint="build the firmware from the run's firmware/ folder")

    def run(self, spec: dict, timeout: float) -> dict:
        raise DeviceError(f"{self.target_name} is a microcontroller: it has no Python to run the runner")

    def probe(self, args=(), timeout: float = 120) -> dict:
        """What judges the artefacts here: TFLite Micro's interpreter (and Vela), with versions."""
        import platform

        from edgekit.formats._util import dist_version, versions

        tools = versions("tflite-micro", *(("ethos-u-vela",) if self.vela else ()))
        return {"python": platform.python_version(), "machine": platform.machine(),
                "numpy": dist_version("numpy"), "runtimes": {d: {"version": v} for d, v in tools.items()}}


class EthosUDevice(MCUDevice):
    name = "a Cortex-M with an Ethos-U NPU (Vela's estimate)"
    connect = "ethos-u"
    label = "Ethos-U"
    how = "is an Ethos-U microNPU, estimated on this machine by Vela"
    vela = True
    keys = MCUDevice.keys + (
        Key("npu", str, "ethos-u55-128"),  # Vela's --accelerator-config
        Key("system_config", str, "Ethos_U55_High_End_Embedded"),  # a [System_Config.*] of the .ini
        Key("memory_mode", str, "Shared_Sram"),  # a [Memory_Mode.*] of the .ini
        Key("vela_config", str, "Arm/vela.ini"),  # Vela's own file, or the path of the user's
    )

    def part(self) -> str:
        return f"{self.values.get('npu')}, {super().part()}"

    def vela_config(self):
        from edgekit.mcu.vela import VelaConfig

        v = self.values
        return VelaConfig(accelerator=v["npu"], system_config=v["system_config"],
                          memory_mode=v["memory_mode"], config_file=v["vela_config"])

