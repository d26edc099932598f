"""Training engine: the loop, the training step, checkpoints, logs, distributed training, and trained runs
loaded back."""
from .checkpoint import config_from_checkpoint, load_checkpoint, resolve_checkpoint, save_checkpoint
from .step import TrainStep
from .trained import TrainedModel, load_trained
from .trainer import Trainer, build_model, build_objective, check_compatible, train

__all__ = ["Trainer", "TrainStep", "build_model", "build_objective", "check_compatible", "train",
           "load_checkpoint", "resolve_checkpoint", "save_checkpoint", "config_from_checkpoint", "TrainedModel",
           "load_trained"]
