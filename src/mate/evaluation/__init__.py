"""Adaptive-inference evaluation (cost per exit, anytime, budgeted) built on the engine's
per-exit logits."""
from ..engine.evaluate import ExitLogits, collect_exit_logits, format_exit_table
from .anytime import AnytimePoint, anytime_points, format_anytime_table, write_anytime_csv
from .budget import (QS, BudgetPoint, budget_curve, calibrate_thresholds, exit_decisions, geometric_shares,
                     simulate, thresholds_for_budget, write_budget_csv)
from .flops import ExitCosts, count_flops, count_params, exit_costs, format_cost_table
from .scores import SCORES, exit_scores, score_step

__all__ = ["ExitLogits", "collect_exit_logits", "format_exit_table", "AnytimePoint", "anytime_points",
           "format_anytime_table", "write_anytime_csv", "QS", "BudgetPoint", "budget_curve",
           "calibrate_thresholds", "exit_decisions", "geometric_shares", "simulate", "thresholds_for_budget",
           "write_budget_csv", "ExitCosts", "count_flops", "count_params", "exit_costs", "format_cost_table",
           "SCORES", "exit_scores", "score_step"]
