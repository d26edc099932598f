"""Matplotlib figures for comparisons and run reports (Agg backend: files, no screen)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_exit_accuracy(summary: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, row in summary.items():
        xs = range(1, len(row["exit_acc"]) + 1)
        means = [m for m, _ in row["exit_acc"]]
        stds = [s for _, s in row["exit_acc"]]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=name)
    ax.set_xlabel("exit")
    ax.set_ylabel("test accuracy (%)")
    ax.set_xticks(list(range(1, len(next(iter(summary.values()))["exit_acc"]) + 1)))
    ax.set_title("Per-exit test accuracy (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_improvement(summary: dict, baseline: str, path: Path, paired: dict | None = None) -> None:
    """Bars: mean per-seed paired difference to ``baseline`` per exit; error bars: its std over seeds."""
    base = [m for m, _ in summary[baseline]["exit_acc"]]
    others = [n for n in summary if n != baseline]
    k = len(base)
    width = 0.8 / max(1, len(others))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for j, name in enumerate(others):
        if paired is not None:
            diff = [d[0] for d in paired[name]["exit"]]
            err = [d[1] for d in paired[name]["exit"]]
        else:
            diff, err = [m - b for (m, _), b in zip(summary[name]["exit_acc"], base)], None
        ax.bar([i + 1 + (j - (len(others) - 1) / 2) * width for i in range(k)], diff, width, yerr=err, capsize=2,
               label=name)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("exit")
    ax.set_ylabel(f"accuracy − {baseline} (percentage points)")
    ax.set_xticks(list(range(1, k + 1)))
    ax.set_title(f"Improvement over {baseline} per exit (paired per-seed difference, mean ± std)", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sweep_key(rows: list[dict], key: str, path: Path) -> None:
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
