"""Data for calibration, verification and evaluation: built-ins, image folders, array files."""

from edgekit.data.calibration import BUILTINS, SampleSet, load_samples
from edgekit.data.images import load_image_folder, preprocess_image

__all__ = ["BUILTINS", "SampleSet", "load_image_folder", "load_samples", "preprocess_image"]
