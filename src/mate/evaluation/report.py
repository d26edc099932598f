"""``mate budget``: anytime and budgeted evaluation of one or more checkpoints, as CSV, PNG and text."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..engine.trained import load_trained
from ..errors import MateError
from .anytime import anytime_points, format_anytime_table, write_anytime_csv
from .budget import budget_curve, write_budget_csv
from .flops import exit_costs
from .logits import collect_exit_logits
from .plots import plot_budget_curves
from .scores import check_score

# Rows of the printed summary (the CSV holds all 39).
SUMMARY_QS = (0.05, 0.25, 0.5, 0.75, 1.0, 1.5, 1.95)


def budget_report(checkpoints: Sequence[str], overrides: Sequence[str], scores: Sequence[str], out: Path) -> str:
    for score in scores:
        check_score(score)
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
                     "| q | avg MFLOPs | test acc (%) | exit shares |", "|---:|---:|---:|---|"]
            for p in points:
                if any(abs(p.q - q) < 1e-9 for q in SUMMARY_QS):
                    shares = " / ".join(f"{s:.2f}" for s in p.shares)
                    text.append(f"| {p.q:.2f} | {p.avg_flops / 1e6:.2f} | {p.accuracy:.2f} | {shares} |")
            text.append("")
    csv_path = write_budget_csv(curves, out / "budget.csv")
    any_path = write_anytime_csv(anytime, out / "anytime.csv")
    png_path = plot_budget_curves(curves, out / "budget.png", anytime)
    text.append(f"wrote {csv_path}, {any_path} and {png_path}")
    return "\n".join(text)
