"""Loss pieces shared by the objectives."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def kl_t(target_logits: Tensor, student_logits: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(softmax(p/T) || softmax(q/T)), summed over classes, averaged over the batch.

    ``batchmean`` (not ``mean``, which would also divide by the class count). The T^2 factor
    keeps the gradient scale independent of T (Hinton et al.). Gradients flow into both
    arguments; callers detach whichever side is a fixed target.
    """
    log_p = F.log_softmax(target_logits / temperature, dim=-1)
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1)
    return temperature**2 * kl.mean()


def pairwise_kl_t(target_logits: Tensor, student_logits: Tensor, temperature: float) -> Tensor:
    """All pairs at once: out[m, k] = kl_t(target_logits[:, m], student_logits[:, k]).

    Inputs are B x M x C and B x K x C. One einsum instead of M * K separate KL calls.
    """
    log_p = F.log_softmax(target_logits / temperature, dim=-1)
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    p = log_p.exp()
    neg_entropy = (p * log_p).sum(-1)  # B x M
    cross = torch.einsum("bmc,bkc->mk", p, log_q) / p.shape[0]  # M x K, batch-averaged
    return temperature**2 * (neg_entropy.mean(0)[:, None] - cross)


def pairwise_kl_t_per_sample(target_logits: Tensor, student_logits: Tensor, temperature: float) -> Tensor:
    """Per sample: out[b, m, k] = T^2 KL(softmax(p_bm/T) || softmax(q_bk/T)); B x M x K."""
    log_p = F.log_softmax(target_logits / temperature, dim=-1)
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    p = log_p.exp()
    neg_entropy = (p * log_p).sum(-1)  # B x M
    return temperature**2 * (neg_entropy[:, :, None] - torch.einsum("bmc,bkc->bmk", p, log_q))


def masked_feature_mse(feature: Tensor, target: Tensor) -> Tensor:
    """EED's feature distillation: mean of (f - t)^2 where f > 0 or t > 0 (elsewhere both are
    inactive ReLU outputs and the distance is not counted), averaged over every element."""
    mask = ((feature > 0) | (target > 0)).to(feature.dtype)
    return ((feature - target) ** 2 * mask).mean()


def exits_cross_entropy(exit_logits: list[Tensor], targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Per-exit cross-entropy as a K-vector; ``label_smoothing`` (``optim.label_smoothing``) mixes
    the one-hot targets with the uniform distribution (``F.cross_entropy``'s option)."""
    return torch.stack([F.cross_entropy(z, targets, label_smoothing=label_smoothing) for z in exit_logits])


def kd_rampup(epoch: float, rampup_epochs: float) -> float:
    """OKDDip/mean-teacher ramp-up exp(-5 (1 - min(e, R)/R)^2); 1 when R <= 0."""
    if rampup_epochs <= 0:
        return 1.0
    t = 1.0 - min(epoch, rampup_epochs) / rampup_epochs
    return math.exp(-5.0 * t * t)
