"""Training engine: the loop, checkpoints, logs and per-exit evaluation."""
from .checkpoint import load_checkpoint, save_checkpoint
from .evaluate import ExitLogits, collect_exit_logits, format_exit_table, selection_score
from .trainer import Trainer, build_data, build_model, build_objective, check_compatible, train

__all__ = ["Trainer", "build_data", "build_model", "build_objective", "check_compatible", "train",
           "load_checkpoint", "save_checkpoint", "ExitLogits", "collect_exit_logits", "format_exit_table",
           "selection_score"]
