"""Deployment: the batched early-exit predictor and ONNX export."""
from .export import export_onnx
from .optimize import fold_batchnorm, prepare_for_inference
from .predictor import EarlyExitPredictor, EarlyExitResult

__all__ = ["EarlyExitPredictor", "EarlyExitResult", "export_onnx", "fold_batchnorm", "prepare_for_inference"]
