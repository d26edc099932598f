"""Training engine: the loop, checkpoints, logs, distributed training, and trained runs loaded back."""
from .checkpoint import config_from_checkpoint, load_checkpoint, save_checkpoint
from .data import load_splits
from .trained import TrainedModel, load_trained
from .trainer import Trainer, build_data, build_model, build_objective, check_compatible, train

__all__ = ["Trainer", "build_data", "build_model", "build_objective", "check_compatible", "train",
           "load_checkpoint", "save_checkpoint", "config_from_checkpoint", "TrainedModel", "load_trained",
           "load_splits"]
