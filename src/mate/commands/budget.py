"""``mate budget``: anytime and budgeted evaluation of one or more checkpoints, as CSV, PNG and text."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..engine import load_trained
from ..errors import MateError
from ..evaluation import (anytime_points, budget_curve, collect_exit_logits, exit_costs, format_anytime_table,
                          write_anytime_csv, write_budget_csv)
from ..evaluation.budget import format_budget_table
from ..evaluation.plots import plot_budget_curves
from ..evaluation.scores import check_score


def budget_command(checkpoints: Sequence[str], overrides: Sequence[str] = (), scores: Sequence[str] = ("max_prob",),
                   out: str | Path = "budget") -> int:
    """One anytime table per checkpoint and one budget curve per (checkpoint, score): thresholds
    calibrated on each run's validation split, accuracy and cost on its test split."""
    if not checkpoints:
        raise MateError("give at least one checkpoint")
    for score in scores:
        check_score(score)
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MateError(f"cannot create the output folder {out}: {exc.strerror}") from None
    curves, anytime, text = {}, {}, []
    for path in checkpoints:
        trained = load_trained(path, overrides)
        if trained.data.val is None:
            raise MateError(f"{path} was trained without a validation split (data.val_size=0); thresholds are "
                            "calibrated on it: add the override data.val_size=5000")
        label = trained.label
        if label in anytime:
            label = f"{label}/{Path(path).stem}"
        flops = exit_costs(trained.model).flops
        val = collect_exit_logits(trained.model, trained.data.val)
        test = collect_exit_logits(trained.model, trained.data.test)
        anytime[label] = anytime_points(test, flops)
        text += [f"{label}  ({path})", format_anytime_table(anytime[label]), ""]
        for score in scores:
            curves[(label, score)] = points = budget_curve(val, test, flops, score)
            text += [f"{label}, score {score}: thresholds from validation, accuracy on test",
                     format_budget_table(points), ""]
    csv_path = write_budget_csv(curves, out / "budget.csv")
    any_path = write_anytime_csv(anytime, out / "anytime.csv")
    png_path = plot_budget_curves(curves, out / "budget.png", anytime)
    text.append(f"wrote {csv_path}, {any_path} and {png_path}")
    print("\n".join(text))
    return 0
