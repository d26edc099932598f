"""Matplotlib figures for comparisons and sweeps (Agg backend: files, no screen). Each function
saves its figure, closes it and returns it, so that its artists can still be read."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# The methods mate ships keep these colours in every figure of every comparison: CE, the reference
# the others are measured against, in grey, MATE in red.
METHOD_COLOURS = {"ce": "tab:gray", "byot": "tab:blue", "phuong": "tab:orange", "eed": "tab:green",
                  "beed": "tab:olive", "sdn": "tab:purple", "okddip": "tab:brown", "mate": "tab:red"}
# Colours of the other methods (variants, objectives of your own): the rest of tab10, then tab20's light shades.
OTHER_COLOURS = ["tab:cyan", "tab:pink", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
                 "#f7b6d2", "#dbdb8d", "#9edae5", "#c7c7c7"]


def method_colours(methods: Sequence[str]) -> dict[str, str]:
    """The one colour of each method in every figure of a comparison: the shipped methods their fixed
    colour (the same in every comparison), the others the free colours in the order of their names
    (so the order in which the methods are listed changes nothing)."""
    out = {m: METHOD_COLOURS[m] for m in methods if m in METHOD_COLOURS}
    others = sorted(m for m in set(methods) if m not in METHOD_COLOURS)
    for i, name in enumerate(others):
        out[name] = OTHER_COLOURS[i % len(OTHER_COLOURS)]
    return {m: out[m] for m in methods}


def plot_exit_accuracy(summary: dict, path: Path) -> Figure:
    colours = method_colours(list(summary))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, row in summary.items():
        xs = range(1, len(row["exit_acc"]) + 1)
        means = [m for m, _ in row["exit_acc"]]
        stds = [s for _, s in row["exit_acc"]]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=name, color=colours[name])
    ax.set_xlabel("exit")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(list(range(1, len(next(iter(summary.values()))["exit_acc"]) + 1)))
    ax.set_title("Per-exit test accuracy (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def plot_improvement(summary: dict, baseline: str, path: Path, paired: dict) -> Figure:
    """Bars: the mean over seeds of each method's per-seed difference to ``baseline`` per exit; error
    bars: the std of those differences (``paired[method]``: compare.paired_differences). The paired
    spread, not the two methods' own spreads: seed s gives both the same initialisation and data order,
    so what varies with the seed in both cancels out of the difference."""
    colours = method_colours(list(summary))
    others = [n for n in summary if n != baseline]
    k = len(summary[baseline]["exit_acc"])
    width = 0.8 / max(1, len(others))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for j, name in enumerate(others):
        diff = [d[0] for d in paired[name]["exit"]]
        err = [d[1] for d in paired[name]["exit"]]
        ax.bar([i + 1 + (j - (len(others) - 1) / 2) * width for i in range(k)], diff, width, yerr=err, capsize=2,
               label=name, color=colours[name])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("exit")
    ax.set_ylabel(f"accuracy − {baseline} (percentage points)")
    ax.set_xticks(list(range(1, k + 1)))
    n = next(iter(paired.values()))["n"] if paired else 0
    ax.set_title(f"Improvement over {baseline} per exit: mean of the per-seed differences ± their std "
                 f"({n} seed{'s' if n != 1 else ''})", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def plot_sweep_key(rows: list[dict], key: str, path: Path) -> Figure:
    """Test accuracy (mean over exits) against one numeric key: one line per value of the other keys,
    error bars = std over seeds."""
    others = [k for k in rows[0]["values"] if k != key]
    lines: dict = {}
    for r in rows:
        label = ", ".join(f"{k.split('.')[-1]}={r['values'][k]}" for k in others) or "sweep"
        lines.setdefault(label, []).append((r["values"][key], *r["mean_acc"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, pts in lines.items():
        pts.sort()
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", capsize=3,
                    label=label)
    ax.set_xlabel(key)
    ax.set_ylabel("test accuracy, mean over exits (%)")
    ax.set_title(f"Accuracy against {key} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig
