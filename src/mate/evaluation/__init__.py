"""Adaptive-inference evaluation (cost per exit, anytime, budgeted) built on the engine's
per-exit logits."""
from ..engine.evaluate import ExitLogits, collect_exit_logits, format_exit_table

__all__ = ["ExitLogits", "collect_exit_logits", "format_exit_table"]
