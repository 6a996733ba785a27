"""edgekit: take trained neural networks to edge devices (ONNX, TFLite/LiteRT, OpenVINO)."""

__version__ = "0.1.0"
