"""MATE: multi-exit self-distillation with appropriate teachers, and the tools around it.

Python API::

    import mate
    model = mate.create_model("resnet18", num_classes=10, in_channels=1, width=16, input_size=28)
    objective = mate.create_objective("mate", num_exits=model.num_exits,
                                      feature_dim=model.feature_dim, num_classes=10)
    loss, logs = objective(model(images), labels, epoch)

Your own models, datasets and objectives join the registries with the decorators
``mate.register_model``, ``mate.register_dataset`` and ``mate.register_objective``; a config (or
``mate train --import MODULE``) names the module that holds them in ``imports``.
"""
from ._version import __version__
from .errors import CheckpointError, ConfigError, DataError, MateError, TrainingDiverged
from .models import MultiExitNetwork, MultiExitOutput, create_model, list_models, register_model
from .objectives import create_objective, list_objectives, register_objective
from .data import DatasetInfo, list_datasets, load_dataset, register_dataset
from .config import Config, load_config
from .inference import EarlyExitPredictor, prepare_for_inference
from .runtime import tune_cpu_allocator

__all__ = [
    "__version__", "create_model", "list_models", "register_model", "create_objective", "list_objectives",
    "register_objective", "load_dataset", "list_datasets", "register_dataset", "DatasetInfo", "Config",
    "load_config", "MultiExitNetwork", "MultiExitOutput",
    "MateError", "ConfigError", "DataError", "CheckpointError", "TrainingDiverged",
    "EarlyExitPredictor", "prepare_for_inference", "tune_cpu_allocator",
]
