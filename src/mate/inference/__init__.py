"""Deployment: the batched early-exit predictor and ONNX export."""
from .export import export_onnx
from .onnx_predictor import OnnxEarlyExitPredictor, OnnxEarlyExitResult
from .optimize import fold_batchnorm, prepare_for_inference
from .predictor import EarlyExitPredictor, EarlyExitResult

__all__ = ["EarlyExitPredictor", "EarlyExitResult", "OnnxEarlyExitPredictor", "OnnxEarlyExitResult", "export_onnx",
           "fold_batchnorm", "prepare_for_inference"]
