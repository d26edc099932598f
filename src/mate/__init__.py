"""MATE: multi-exit self-distillation with appropriate teachers, and the tools around it.

Python API::

    import mate
    model = mate.create_model("resnet18", num_classes=10, in_channels=1, width=16, input_size=28)
    objective = mate.create_objective("mate", num_exits=model.num_exits,
                                      feature_dim=model.feature_dim, num_classes=10)
    loss, logs = objective(model(images), labels, epoch)
"""
__version__ = "0.1.0"

from .errors import CheckpointError, ConfigError, DataError, MateError, TrainingDiverged  # noqa: E402
from .models import MultiExitNetwork, MultiExitOutput, create_model, list_models  # noqa: E402
from .objectives import create_objective, list_objectives  # noqa: E402
from .data import list_datasets, load_dataset  # noqa: E402
from .config import Config, load_config  # noqa: E402
from .inference import EarlyExitPredictor, prepare_for_inference  # noqa: E402
from .runtime import tune_cpu_allocator  # noqa: E402

__all__ = [
    "__version__", "create_model", "list_models", "create_objective", "list_objectives",
    "load_dataset", "list_datasets", "Config", "load_config", "MultiExitNetwork", "MultiExitOutput",
    "MateError", "ConfigError", "DataError", "CheckpointError", "TrainingDiverged",
    "EarlyExitPredictor", "prepare_for_inference", "tune_cpu_allocator",
]
