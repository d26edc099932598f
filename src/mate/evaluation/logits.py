"""Per-exit evaluation: logits of every exit on a whole split, accuracies from them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
from torch import Tensor


@dataclass
class ExitLogits:
    logits: Tensor  # K x N x C, float32, CPU
    labels: Tensor  # N
    # Training-time teachers (e.g. MATE's), when the objective has them: their logits (K x N x C)
    # and the per-sample teacher weights (N x K x K, row m = teacher m's weights over the exits).
    teacher_logits: Optional[Tensor] = None
    attention: Optional[Tensor] = None

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
        out = {"exit_acc": accs, "ensemble_acc": self.ensemble_accuracy(),
               "mean_acc": sum(accs) / len(accs), "n": int(self.labels.numel())}
        if self.teacher_logits is not None:
            correct = self.teacher_logits.argmax(-1) == self.labels[None]
            out["teacher_acc"] = (correct.float().mean(1) * 100).tolist()
        if self.attention is not None:
            out["attention"] = self.attention.mean(0).tolist()
        return out


TeacherFn = Callable[..., tuple[Tensor, Tensor]]  # outputs -> (B x K x C teacher logits, B x K x K weights)


@torch.no_grad()
def collect_exit_logits(model: torch.nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
                        to_input: Callable[[Tensor], Tensor] = lambda x: x,
                        teachers: Optional[TeacherFn] = None) -> ExitLogits:
    """Every exit's logits on a whole split; ``to_input`` is applied to each batch of images (the
    trainer's memory format). With ``teachers`` (an objective's ``eval_teachers``) also the
    teachers' logits and weights, so a teacher's accuracy can be set beside its student's."""
    was_training = model.training
    model.eval()
    logits, labels, t_logits, weights = [], [], [], []
    for x, y in batches:
        out = model(to_input(x))
        logits.append(torch.stack([z.float() for z in out.exit_logits]).cpu())
        labels.append(y.cpu())
        if teachers is not None:
            t, a = teachers(out)
            t_logits.append(t.float().transpose(0, 1).cpu())
            weights.append(a.float().cpu())
    model.train(was_training)
    if not t_logits:
        return ExitLogits(torch.cat(logits, dim=1), torch.cat(labels))
    return ExitLogits(torch.cat(logits, dim=1), torch.cat(labels), torch.cat(t_logits, dim=1), torch.cat(weights))


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
