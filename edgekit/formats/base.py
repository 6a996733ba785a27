"""The interface every export format implements: one small class per format."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from edgekit.models.spec import LoadedModel


@dataclass(frozen=True)
class Int8Result:
    """What ``export_int8`` did. ``scheme`` is recorded verbatim in the manifest."""

    path: Path
    scheme: dict  # e.g. {"type": "static", "weights": "int8 per-channel symmetric", ...}


class Session(ABC):
    """A loaded artefact in its own runtime. ``run`` takes and returns float32 numpy arrays."""

    runtime: str = ""
    runtime_version: str = ""
    device: str = "CPU"

    @abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """Run one batch (float32, the model's input layout); return the float32 output."""


class Format(ABC):
    """One export target. ``extension`` is the main file's suffix (".onnx", ".tflite", ".xml")."""

    name: str = ""
    extension: str = ""
    extra: str = ""  # the pip extra that installs this format's tools
    requires: tuple[tuple[str, str], ...] = ()  # (module to import, package that provides it)

    def check_available(self) -> None:
        """Raise MissingDependencyError (naming the extra) before any work starts."""
        from edgekit.errors import require
        from edgekit.formats._util import quiet

        with quiet():  # some runtimes log from C++ while they load
            for module, package in self.requires:
                require(module, package, self.extra)

    @abstractmethod
    def export_fp32(self, model: LoadedModel, path: Path) -> Path:
        """Write the fp32 artefact at ``path`` (companion files beside it); return ``path``."""

    @abstractmethod
    def export_int8(
        self, model: LoadedModel, fp32_path: Path, calib: np.ndarray, path: Path
    ) -> Int8Result:
        """Write the int8 artefact at ``path`` using calibration samples ``calib`` (N, ...)."""

    @abstractmethod
    def open(self, path: Path, threads: int | None = None) -> Session:
        """Load an artefact in this format's runtime (``threads``: intra-op threads, None = default)."""

    def open_exact(self, path: Path) -> Session:
        """Open with settings that keep fp32 numerics exact (used to verify fp32 artefacts)."""
        return self.open(path)

    @abstractmethod
    def tool_versions(self) -> dict[str, str]:
        """Versions of the converters and runtimes this format uses."""

    def files(self, path: Path) -> list[Path]:
        """All files that make up the artefact at ``path`` (OpenVINO has a .bin beside the .xml)."""
        return [path]
