"""Per-exit evaluation: logits of every exit on a whole split, accuracies from them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor


@dataclass
class ExitLogits:
    logits: Tensor  # K x N x C, float32, CPU
    labels: Tensor  # N

    @property
    def num_exits(self) -> int:
        return self.logits.shape[0]

    def exit_accuracy(self) -> list[float]:
        correct = self.logits.argmax(-1) == self.labels[None]
        return (correct.float().mean(1) * 100).tolist()

    def ensemble_accuracy(self) -> float:
        """The exits' ensemble: mean of the logits of all exits."""
        return float((self.logits.mean(0).argmax(-1) == self.labels).float().mean() * 100)

    def summary(self) -> dict:
        accs = self.exit_accuracy()
        return {"exit_acc": accs, "ensemble_acc": self.ensemble_accuracy(),
                "mean_acc": sum(accs) / len(accs), "n": int(self.labels.numel())}


@torch.no_grad()
def collect_exit_logits(model: torch.nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
                        prepare=lambda x: x) -> ExitLogits:
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for x, y in batches:
        out = model(prepare(x))
        logits.append(torch.stack([z.float() for z in out.exit_logits]).cpu())
        labels.append(y.cpu())
    model.train(was_training)
    return ExitLogits(torch.cat(logits, dim=1), torch.cat(labels))


def selection_score(summary: dict, select: str) -> float:
    if select == "last":
        return summary["exit_acc"][-1]
    if select == "ensemble":
        return summary["ensemble_acc"]
    return summary["mean_acc"]


def format_exit_table(rows: dict[str, dict], flops: list[float] | None = None) -> str:
    """A Markdown table: one column per split (e.g. val, test), one row per exit plus the ensemble."""
    splits = list(rows)
    k = len(next(iter(rows.values()))["exit_acc"])
    head = "| exit |" + (" MFLOPs |" if flops else "") + "".join(f" {s} acc (%) |" for s in splits)
    sep = "|---|" + ("---:|" if flops else "") + "---:|" * len(splits)
    lines = [head, sep]
    for i in range(k):
        cost = f" {flops[i] / 1e6:.1f} |" if flops else ""
        lines.append(f"| {i + 1} |{cost}" + "".join(f" {rows[s]['exit_acc'][i]:.2f} |" for s in splits))
    lines.append("| ensemble |" + (" |" if flops else "") + "".join(f" {rows[s]['ensemble_acc']:.2f} |" for s in splits))
    return "\n".join(lines)
