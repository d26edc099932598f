"""``mate report RUN_DIR``: one run as a Markdown page with figures.

Curves per exit (training CE, validation accuracy, the selected epoch marked) and, for MATE, the
learning-gap diagnostics: the batch-mean attention matrix at a few epochs (row m: teacher m's
weights over the exits), with the teachers that collapsed onto their student framed, whether the
weight network has given every exit one shared teacher, and the KL between each exit and its
primary teacher against the other teachers, over epochs.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..engine.logger import read_metrics  # noqa: E402
from ..errors import MateError  # noqa: E402
from ..evaluation.logits import format_exit_table  # noqa: E402


# A teacher whose attention row puts at least this share on its own exit has collapsed onto its
# student: its logits are (at least 90%) the student's own, so there is no gap left to learn from.
COLLAPSE_SHARE = 0.9
# Teachers whose rows differ by at most this total-variation distance are one shared teacher: the
# weight network gives every exit the same mixture of the exits, whichever exit it teaches.
SHARED_DISTANCE = 0.05
# The KL plot's floor on its log axis: a KL that rounds to zero (or just below, in float32) is drawn here.
KL_FLOOR = 1e-4


def collapsed_teachers(attention: Sequence[Sequence[float]], share: float = COLLAPSE_SHARE) -> list[int]:
    """The teachers (0-based rows m) whose weight on their own exit, A[m][m], is at least ``share``;
    one rule for every teacher, the last one included."""
    return [m for m, row in enumerate(attention) if row[m] >= share]


def teacher_distance(attention: Sequence[Sequence[float]]) -> float:
    """The largest total-variation distance between two teachers' rows, max over m, n of
    ½ Σ_j |A[m, j] − A[n, j]|: 0 when every teacher is the same mixture, 1 when two share no exit."""
    return max((sum(abs(a - b) for a, b in zip(r, q)) / 2 for r in attention for q in attention), default=0.0)


def teachers_apart_from(records: Sequence[dict]) -> Optional[int]:
    """The first epoch from which the teachers' rows stay apart (``teacher_distance`` above
    ``SHARED_DISTANCE`` at every later epoch, ``train.attention`` of metrics.jsonl records); None
    when they end shared."""
    return next((r["epoch"] for i, r in enumerate(records)
                 if all(teacher_distance(q["train"]["attention"]) > SHARED_DISTANCE for q in records[i:])), None)


def plot_curves(records: list[dict], path: Path, selected_epoch: Optional[int] = None) -> Figure:
    """Training loss per exit and validation accuracy over epochs; ``selected_epoch`` (the epoch
    of best.pt) is marked on both."""
    epochs = [r["epoch"] for r in records]
    k = len(records[0]["train"]["ce"]) if isinstance(records[0]["train"].get("ce"), list) else 0
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i in range(k):
        axes[0].plot(epochs, [r["train"]["ce"][i] for r in records], marker=".", label=f"exit {i + 1}")
    axes[0].plot(epochs, [r["train"]["loss"] for r in records], "k--", label="total loss")
    axes[0].set_title("training loss: each exit's cross-entropy, and the objective's total")
    axes[0].set_ylabel("loss (nats, log scale)")
    axes[0].set_yscale("log")
    validated = [r for r in records if "val" in r]  # run.val_every > 1 validates some epochs only
    if validated:
        vx = [r["epoch"] for r in validated]
        for i in range(len(validated[0]["val"]["exit_acc"])):
            axes[1].plot(vx, [r["val"]["exit_acc"][i] for r in validated], marker=".", label=f"exit {i + 1}")
        axes[1].plot(vx, [r["val"]["ensemble_acc"] for r in validated], "k--", label="ensemble")
    axes[1].set_title("validation accuracy")
    axes[1].set_ylabel("validation accuracy (%)")
    for ax in axes:
        if selected_epoch is not None:
            ax.axvline(selected_epoch, color="black", ls=":", lw=1.2, label=f"selected: epoch {selected_epoch}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def _attention(records: list[dict], path: Path) -> list[int]:
    picks = sorted({0, len(records) // 2, len(records) - 1})
    fig, axes = plt.subplots(1, len(picks), figsize=(3.6 * len(picks), 3.4), squeeze=False)
    for ax, idx in zip(axes[0], picks):
        a = records[idx]["train"]["attention"]
        k = len(a)
        im = ax.imshow(a, vmin=0, vmax=1, cmap="viridis")
        for m in range(k):
            for j in range(k):
                ax.text(j, m, f"{a[m][j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if a[m][j] < 0.6 else "black")
        for m in collapsed_teachers(a):
            ax.add_patch(Rectangle((m - 0.5, m - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
        ax.set_xticks(range(k), [f"z{j + 1}" for j in range(k)])
        ax.set_yticks(range(k), [f"t{m + 1}" for m in range(k)])
        ax.set_title(f"epoch {records[idx]['epoch']}")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="attention weight")
    fig.suptitle(f"teacher weights A (row m = teacher m over exits' logits); red frame: collapsed, "
                 f"A[m, m] ≥ {COLLAPSE_SHARE}")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return [records[i]["epoch"] for i in picks]


def plot_kl(records: list[dict], path: Path) -> Figure:
    """Each exit's KL to its own teacher and to the others (mean), over epochs, on a log axis: values
    below ``KL_FLOOR`` are drawn at the floor, and the figure says so when there are any."""
    epochs = [r["epoch"] for r in records]
    k = len(records[0]["train"]["teacher_student_kl"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    clipped = False
    for s in range(k):
        color = f"C{s}"
        primary = [r["train"]["teacher_student_kl"][s][s] for r in records]
        others = [sum(r["train"]["teacher_student_kl"][m][s] for m in range(k) if m != s) / (k - 1) for r in records]
        clipped |= min(primary + others) < KL_FLOOR
        ax.plot(epochs, [max(v, KL_FLOOR) for v in primary], color=color, marker=".", label=f"exit {s + 1}: own teacher")
        ax.plot(epochs, [max(v, KL_FLOOR) for v in others], color=color, ls="--",
                label=f"exit {s + 1}: other teachers (mean)")
    if clipped:
        ax.axhline(KL_FLOOR, color="black", lw=0.8, ls=":", label=f"values below {KL_FLOOR:g} drawn at {KL_FLOOR:g}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("KL_T(teacher || student), T² batchmean (nats, log scale)")
    ax.set_yscale("log")
    ax.set_title("learning gap: each exit against its teachers")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def distillation_signal(records: Sequence[dict], last: Optional[int] = None) -> tuple[list[float], list[float]]:
    """What each exit is pulled towards at the end of training, from ``train.teacher_student_kl``
    (row = teacher m, column = exit k): per exit k, the mean over the last ``last`` logged epochs
    (default: the last quarter, at least one) of KL_T(t_k ‖ z_k), its own (primary) teacher's pull,
    and of the mean over the other teachers, KL_T(t_m ‖ z_k) for m ≠ k. A teacher that is mostly
    its student's own logits pulls little."""
    rows = [r["train"]["teacher_student_kl"] for r in records if "teacher_student_kl" in r.get("train", {})]
    if not rows:
        raise MateError("no train.teacher_student_kl in these records: not a MATE run")
    rows = rows[-(last if last is not None else max(1, len(rows) // 4)):]
    k = len(rows[0])
    own = [sum(kl[j][j] for kl in rows) / len(rows) for j in range(k)]
    others = [sum(sum(kl[m][j] for m in range(k) if m != j) / (k - 1) for kl in rows) / len(rows) for j in range(k)]
    return own, others


def teachers_against_students(val: dict) -> list[str]:
    """Markdown on what the exits can teach, from a run's validation results: the headroom of the
    exits' ensemble over the last exit and, for MATE, each teacher's accuracy beside its student's."""
    exits, ensemble = val["exit_acc"], val["ensemble_acc"]
    headroom = ensemble - exits[-1]
    lines = [f"Ensemble headroom (validation): the exits' ensemble {ensemble:.2f} % against the last exit's "
             f"{exits[-1]:.2f} % ({headroom:+.2f} points). " + (
                 "The average of the exits is stronger than the last exit: a teacher made from the exits has "
                 "something to teach every exit." if headroom > 0 else
                 "The average of the exits is no stronger than the last exit: teachers made from the exits can "
                 "lift the shallow exits but have little to teach the last one (the claim protocol chose a "
                 "regime where this headroom is positive, docs/claim_protocol.md)."), ""]
    if "teacher_acc" in val:
        k = len(exits)
        lines += ["| | " + " | ".join(f"exit {m + 1}" for m in range(k)) + " |", "|---|" + "---:|" * k,
                  "| student (the exit) | " + " | ".join(f"{a:.2f}" for a in exits) + " |",
                  "| its teacher | " + " | ".join(f"{t:.2f}" for t in val["teacher_acc"]) + " |",
                  "| teacher − student | " + " | ".join(f"{t - a:+.2f}" for t, a in zip(val["teacher_acc"], exits))
                  + " |", ""]
    return lines


def render_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    records = read_metrics(run_dir)
    if not records:
        raise MateError(f"{run_dir} has no metrics.jsonl: is it a run folder written by `mate train`?")
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    lines = [f"# Run report: {run_dir.name}", ""]
    cfg_path = run_dir / "config.yaml"
    if cfg_path.exists():
        lines += ["```yaml", cfg_path.read_text().strip(), "```", ""]
    results_path = run_dir / "results.json"
    selected = None
    if results_path.exists():
        results = json.loads(results_path.read_text())
        selected = results["best_epoch"]
        rows = {k: results[k] for k in ("val", "test") if k in results}
        lines += [f"Best epoch {results['best_epoch']} (selected on validation, '{results['select']}' accuracy); "
                  f"training time {results['train_time_s']:.0f} s.", "", format_exit_table(rows), ""]
        if "val" in results:
            lines += teachers_against_students(results["val"])
    plot_curves(records, out / "curves.png", selected)
    lines += ["## Training curves", "", "![curves](curves.png)", ""]
    if "attention" in records[0]["train"]:
        shown = _attention(records, out / "attention.png")
        plot_kl(records, out / "teacher_student_kl.png")
        last = records[-1]["train"]
        k = len(last["attention"])
        diag = [last["attention"][m][m] for m in range(k)]
        primary_kl = [last["teacher_student_kl"][m][m] for m in range(k)]
        collapsed = collapsed_teachers(last["attention"])
        verdict = (", ".join(f"teacher {m + 1} (A[{m + 1}, {m + 1}] = {diag[m]:.2f})" for m in collapsed)
                   if collapsed else "none")
        lines += [
            "## Learning-gap diagnostics", "",
            f"Attention matrix A (batch mean over the epoch) at epochs {', '.join(map(str, shown))}. Row m holds "
            f"the weights teacher m gives to the exits' logits. A teacher whose row puts at least {COLLAPSE_SHARE} "
            "on its own exit (A[m, m] ≥ "
            f"{COLLAPSE_SHARE}) has collapsed onto its student: its logits are mostly the student's own, so there "
            "is little gap left to learn from. Collapsed teachers are framed in red.", "",
            "![attention](attention.png)", "",
            "KL between each exit and its own (primary) teacher (solid) and the other teachers (dashed).", "",
            "![kl](teacher_student_kl.png)", "",
        ]
        own, others = distillation_signal(records)
        quarter = max(1, len(records) // 4)
        lines += [
            f"What each exit learns from, over the last quarter of training (the last {quarter} epoch"
            f"{'s' if quarter > 1 else ''}, mean): the KL from its own teacher and the mean KL from the other "
            "teachers. With the primary share γ and even off-diagonal shares, exit k's distillation term is "
            "γ × own + (1 − γ) × others. An own-teacher KL near zero means that teacher predicts as the exit does "
            "(it is mostly the exit itself, or exits that agree with it): the exit then learns from the other "
            "teachers only.", "",
            "| | " + " | ".join(f"exit {m + 1}" for m in range(k)) + " |", "|---|" + "---:|" * k,
            "| own teacher | " + " | ".join(f"{max(v, 0.0):.4f}" for v in own) + " |",
            "| other teachers (mean) | " + " | ".join(f"{max(v, 0.0):.4f}" for v in others) + " |", "",
            f"Last epoch: diagonal weights A[m, m] = {', '.join(f'{d:.2f}' for d in diag)}; primary KL = "
            f"{', '.join(f'{v:.3f}' for v in primary_kl)}; collapsed teachers (A[m, m] ≥ {COLLAPSE_SHARE}): "
            f"{verdict}.", "",
        ]
        distance = teacher_distance(last["attention"])
        apart = teachers_apart_from(records)
        lines += [
            f"Largest distance between two teachers' rows (total variation, ½ Σ_j |A[m, j] − A[n, j]|) at the last "
            f"epoch: {distance:.2f}. " + (
                f"At most {SHARED_DISTANCE}: every exit has one shared teacher, the same mixture of the exits "
                "(the weight network ignores which exit it teaches)." if distance <= SHARED_DISTANCE else
                f"The teachers differ (more than {SHARED_DISTANCE}) from epoch {apart} on."), "",
        ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
