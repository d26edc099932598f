"""Deployment: the batched early-exit predictor and ONNX export."""
from .export import export_onnx
from .predictor import EarlyExitPredictor, EarlyExitResult

__all__ = ["EarlyExitPredictor", "EarlyExitResult", "export_onnx"]
