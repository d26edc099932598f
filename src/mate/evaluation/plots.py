"""Accuracy-vs-cost figures (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from .anytime import AnytimePoint
from .budget import BudgetPoint


def budget_figure(curves: dict[tuple[str, str], List[BudgetPoint]],
                  anytime: Optional[dict[str, List[AnytimePoint]]] = None,
                  title: str = "Budgeted batch classification"):
    """The figure of ``plot_budget_curves``: one line per (checkpoint, score); each checkpoint's
    single exits as circles in its colour, each labelled with its exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(label for label, _ in curves))
    colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    styles = ["-", "--", ":", "-."]
    scores = list(dict.fromkeys(score for _, score in curves))
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for (label, score), points in curves.items():
        ax.plot([p.avg_flops / 1e6 for p in points], [p.accuracy for p in points],
                styles[scores.index(score) % len(styles)], color=colours[label], lw=1.6,
                label=f"{label} ({score})" if len(scores) > 1 else label)
    for label, points in (anytime or {}).items():
        exits = [p for p in points if p.name.startswith("exit")]
        colour = colours.get(label, "k")
        ax.plot([p.flops / 1e6 for p in exits], [p.accuracy for p in exits], "o", ms=5, color=colour, mfc="none")
        for p in exits:
            ax.annotate(p.name, (p.flops / 1e6, p.accuracy), xytext=(4, -10), textcoords="offset points",
                        fontsize=7, color=colour)
    ax.set_xlabel("average cost per test image (MFLOPs; 1 MFLOP = 0.5 MMACs)")
    ax.set_ylabel("test top-1 accuracy (%)")
    ax.set_title(title + ("" if not anytime else "\n(lines: early exit; circles: single exits)"), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def plot_budget_curves(curves: dict[tuple[str, str], List[BudgetPoint]], path: str | Path,
                       anytime: Optional[dict[str, List[AnytimePoint]]] = None,
                       title: str = "Budgeted batch classification") -> Path:
    """``budget_figure`` written to ``path`` (PNG)."""
    import matplotlib.pyplot as plt

    fig = budget_figure(curves, anytime, title)
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
