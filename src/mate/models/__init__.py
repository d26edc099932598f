"""Multi-exit architectures. Importing this package registers every architecture."""
from . import imagenet_resnet, mobilenetv2, resnet, vgg, wide_resnet  # noqa: F401  (registers the architectures)
from .base import HeadExit, MultiExitNetwork, MultiExitOutput, ResizeExit
from .registry import MODELS, create_model, list_models, register_model

__all__ = [
    "HeadExit", "MultiExitNetwork", "MultiExitOutput", "ResizeExit",
    "MODELS", "create_model", "list_models", "register_model",
]
