"""Evaluation of multi-exit networks: every exit's logits on a split and the accuracies from them,
the cost of every exit, exit scores, anytime and budgeted (early-exit) evaluation.

This layer sits below the engine: the training loop validates with ``collect_exit_logits`` and
selects checkpoints with ``selection_score``; the early-exit predictors share its scores and
thresholds.
"""
from .anytime import AnytimePoint, anytime_points, format_anytime_table, write_anytime_csv
from .budget import (QS, BudgetPoint, budget_curve, calibrate_thresholds, exit_decisions, geometric_shares,
                     simulate, thresholds_for_budget, write_budget_csv)
from .flops import ExitCosts, count_flops, count_params, exit_costs, format_cost_table
from .logits import ExitLogits, collect_exit_logits, format_exit_table, selection_score
from .scores import SCORES, exit_scores, score_step

__all__ = ["ExitLogits", "collect_exit_logits", "format_exit_table", "selection_score", "AnytimePoint",
           "anytime_points", "format_anytime_table", "write_anytime_csv", "QS", "BudgetPoint", "budget_curve",
           "calibrate_thresholds", "exit_decisions", "geometric_shares", "simulate", "thresholds_for_budget",
           "write_budget_csv", "ExitCosts", "count_flops", "count_params", "exit_costs", "format_cost_table",
           "SCORES", "exit_scores", "score_step"]
