"""Multi-exit architectures. Importing this package registers every architecture."""
# Importing the modules registers the architectures (timm_backbone imports timm only when a model is built).
from . import imagenet_resnet, mobilenetv2, resnet, timm_backbone, vgg, wide_resnet  # noqa: F401
from .base import HeadExit, MultiExitNetwork, MultiExitOutput, ResizeExit
from .memory_format import to_channels_last
from .registry import MODELS, create_model, list_models, register_model

__all__ = [
    "HeadExit", "MultiExitNetwork", "MultiExitOutput", "ResizeExit",
    "MODELS", "create_model", "list_models", "register_model", "to_channels_last",
]
