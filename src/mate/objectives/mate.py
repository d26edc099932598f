"""MATE: multi-exit self-distillation with appropriate teachers (Sun et al., FITEE 2024).

One ensemble teacher per exit. Teacher m's logits are t_m = sum_j A[m, j] z_j, where the
weights A come from a self-attention weight network over the exits' pooled features. Exit k
learns the labels, mainly its own teacher (share ``primary_share``) and a little every other
teacher; the teachers learn their weights from the students' outputs (two-way learning).

    L = sum_k CE(z_k, y)
      + lambda(e) sum_k sum_m w[k, m] KL_T(sg(t_m) || z_k)            students
      + lambda(e) sum_m sum_k w[k, m] KL_T(t_m || sg(z_k))            teachers
      + teacher_ce_weight sum_m CE(t_m, y)

Reconstructed choices (see docs/method.md) are options of this class, and so are the
reconstruction candidates tested against the paper's claim (docs/claim_protocol.md): a convex
CE/KD split per exit, KD weights decaying with depth, confidence-aware off-diagonal shares, the
teacher update's own weight and direction, and teachers that mix only deeper exits (or only
the other exits). The weight
network is part of this module, so the optimizer and checkpoints see it; inference never calls it.
"""
from __future__ import annotations

import math
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.base import MultiExitOutput
from ..options import NonNegativeFloat, PositiveFloat, PositiveInt, UnitFloat
from .functional import exits_cross_entropy, kd_rampup, pairwise_kl_t, pairwise_kl_t_per_sample
from .registry import register_objective


class WeightNetwork(nn.Module):
    """OKDDip-style attention: A = softmax(Q K^T / s) with Q = H Wq^T, K = H Wk^T.

    Row m is computed from exit m's query, so teacher m is exit m's primary teacher.
    Wq and Wk are shared by all exits.
    """

    def __init__(self, feature_dim: int, proj_dim: int, scale: float):
        super().__init__()
        self.query = nn.Linear(feature_dim, proj_dim, bias=False)
        self.key = nn.Linear(feature_dim, proj_dim, bias=False)
        self.scale = scale

    def forward(self, features: Tensor, mask: Optional[Tensor] = None) -> Tensor:  # B x K x d -> B x K x K
        q, k = self.query(features), self.key(features)
        scores = q @ k.transpose(1, 2) / self.scale
        if mask is not None:  # K x K, True where teacher m may use exit j
            scores = scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=-1)


def primary_share_matrix(num_exits: int, primary_share: float) -> Tensor:
    """w[k, m]: how much student k learns from teacher m. gamma on the diagonal."""
    off = (1.0 - primary_share) / (num_exits - 1)
    w = torch.full((num_exits, num_exits), off)
    w.fill_diagonal_(primary_share)
    return w


@register_objective("mate")
class MATEObjective(nn.Module):
    """MATE.

    Args:
        temperature: KD temperature T.
        kd_weight: lambda_max, the weight of both KD terms after the ramp-up.
        rampup_epochs: R of lambda(e) = kd_weight * exp(-5 (1 - min(e, R)/R)^2); 0 for none.
        primary_share: gamma, the share of exit k's KD that comes from its own teacher.
        teacher_ce_weight: mu, the weight of the teachers' own CE (keeps them accurate).
        detach_policy: "d2" (only the weight network learns from the teacher loss) or "d1"
            (nothing detached: the teacher loss also reaches the exits through the teachers).
        attention_scale: "one" (OKDDip) or "sqrt" (sqrt of the projection size).
        proj_dim: size of the query/key projections; default feature_dim // 8.
        teacher: "attention" (the weight network) or "uniform" (every weight 1/K: a control).
        kd_mix: None (CE_k + lambda KD_k), or alpha: each exit's loss is the convex split
            (1 - alpha r(e)) CE_k + alpha r(e) kd_weight KD_k, r the ramp-up (BYOT, IMTA).
        kd_depth_decay: beta; exit k's KD is multiplied by beta^(k-1) (BEED, LOTH: less KD deeper).
        offdiag: "uniform" ((1 - gamma)/(K - 1) to every other teacher) or "confidence": per sample,
            the other teachers share 1 - gamma in proportion to 1 - softmax_j(CE_j), so a teacher
            that is wrong on that sample pulls less (CA-MKD's teacher weights).
        teacher_kd_weight: the teacher KL's own lambda_max; None: kd_weight.
        teacher_kl: "forward" KL_T(t_m || sg z_k) or "reverse" KL_T(sg z_k || t_m).
        teacher_mask: "all" (teacher m mixes every exit), "deeper" (teacher m mixes exits m..K,
            so no teacher is built from shallower exits than its own student) or "others" (teacher
            m mixes every exit but m, so no teacher can become its own student's logits).
        label_smoothing: from ``optim.label_smoothing``, not an objective key; it applies to the
            exits' CE and to the teachers' CE alike (every CE against the labels), not to the
            per-sample CE that weighs the teachers under offdiag="confidence".
    """

    def __init__(
        self,
        num_exits: int,
        feature_dim: int,
        num_classes: int = 0,
        temperature: PositiveFloat = 3.0,
        kd_weight: NonNegativeFloat = 1.0,
        rampup_epochs: NonNegativeFloat = 0.0,
        primary_share: UnitFloat = 0.7,
        teacher_ce_weight: NonNegativeFloat = 1.0,
        detach_policy: Literal["d2", "d1"] = "d2",
        attention_scale: Literal["one", "sqrt"] = "one",
        proj_dim: Optional[PositiveInt] = None,
        teacher: Literal["attention", "uniform"] = "attention",
        kd_mix: Optional[UnitFloat] = None,
        kd_depth_decay: PositiveFloat = 1.0,
        offdiag: Literal["uniform", "confidence"] = "uniform",
        teacher_kd_weight: Optional[NonNegativeFloat] = None,
        teacher_kl: Literal["forward", "reverse"] = "forward",
        teacher_mask: Literal["all", "deeper", "others"] = "all",
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.label_smoothing = label_smoothing
        # The options' ranges and choices are checked from their annotations (mate.options) by
        # create_objective and the config; what is left is what the model decides.
        if num_exits < 2:
            raise ConfigError("objective 'mate' needs a model with at least 2 exits")
        self.num_exits = num_exits
        self.temperature = float(temperature)
        self.kd_weight = float(kd_weight)
        self.rampup_epochs = float(rampup_epochs)
        self.teacher_ce_weight = float(teacher_ce_weight)
        self.detach_policy = detach_policy
        self.teacher = teacher
        proj = proj_dim or max(1, feature_dim // 8)
        scale = math.sqrt(proj) if attention_scale == "sqrt" else 1.0
        self.weight_net = WeightNetwork(feature_dim, proj, scale) if teacher == "attention" else None
        self.register_buffer("share", primary_share_matrix(num_exits, primary_share), persistent=False)
        self.kd_mix = kd_mix
        self.offdiag = offdiag
        self.teacher_kd_weight = self.kd_weight if teacher_kd_weight is None else float(teacher_kd_weight)
        self.teacher_kl = teacher_kl
        self.register_buffer("depth_weights", kd_depth_decay ** torch.arange(num_exits, dtype=torch.float32),
                             persistent=False)
        # mask[m, j]: teacher m may mix exit j
        mask = torch.ones(num_exits, num_exits, dtype=torch.bool)
        if teacher_mask == "deeper":
            mask = torch.triu(mask)
        elif teacher_mask == "others":
            mask.fill_diagonal_(False)
        self.register_buffer("teacher_mask", mask, persistent=False)

    def teacher_weights(self, features: Tensor) -> Tensor:
        """A (B x K x K) from the stacked exit features."""
        masked = not bool(self.teacher_mask.all())
        if self.weight_net is None:
            b, k, _ = features.shape
            uniform = self.teacher_mask.to(features.dtype)
            return (uniform / uniform.sum(-1, keepdim=True)).expand(b, k, k)
        return self.weight_net(features, self.teacher_mask if masked else None)

    def teachers(self, outputs: MultiExitOutput) -> tuple[Tensor, Tensor]:
        """Teacher logits T = A Z (B x K x C) and A, detached as the policy says.

        Under D2 the weight network reads detached features and mixes detached logits, so
        the teacher loss trains Wq, Wk alone. Under D1 nothing is detached here.
        """
        z, h = outputs.stacked_logits(), outputs.stacked_features()
        if self.detach_policy == "d2":
            z, h = z.detach(), h.detach()
        attention = self.teacher_weights(h)
        return attention @ z, attention

    @torch.no_grad()
    def eval_teachers(self, outputs: MultiExitOutput) -> tuple[Tensor, Tensor]:
        """The teachers on an evaluation batch (the engine logs their accuracy beside the exits'),
        in float32 like the training loss."""
        with torch.autocast(outputs.exit_logits[0].device.type, enabled=False):
            return self.teachers(outputs.float())

    def student_shares(self, teacher_logits: Tensor, targets: Tensor) -> Tensor:
        """w[k, m], K x K, or per sample (B x K x K) when the off-diagonal shares follow confidence."""
        if self.offdiag == "uniform":
            return self.share
        k = self.num_exits
        with torch.no_grad():  # a confidence measure, not a loss: plain CE, whatever optim.label_smoothing
            ce = F.cross_entropy(teacher_logits.transpose(1, 2), targets[:, None].expand(-1, k),
                                 reduction="none")  # B x M, each teacher's CE on each sample
            conf = 1.0 - torch.softmax(ce, dim=-1)  # CA-MKD: a teacher with a larger CE weighs less
            off = ~torch.eye(k, dtype=torch.bool, device=ce.device)
            raw = conf[:, None, :] * off  # B x K(student) x M(teacher), own teacher excluded
            w = (1.0 - self.share[0, 0]) * raw / raw.sum(-1, keepdim=True).clamp_min(1e-12)
            return w + torch.diag_embed(self.share.diagonal().expand_as(conf))

    def student_loss(self, teacher_logits: Tensor, exit_logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """sum_k beta^(k-1) sum_m w[k, m] KL_T(sg(t_m) || z_k), and the KL matrix [m, k].

        With uniform shares the weighted K x K matrix is summed in one reduction, as it always was,
        so the default loss keeps its exact floating-point value."""
        t = teacher_logits.detach()
        shares = self.student_shares(t, targets)
        if shares.dim() == 2:
            kl = pairwise_kl_t(t, exit_logits, self.temperature)
            return (shares.t() * kl * self.depth_weights[None, :]).sum(), kl
        per_sample = pairwise_kl_t_per_sample(t, exit_logits, self.temperature)  # B x M x K
        kd = (shares.transpose(1, 2) * per_sample).sum(1).mean(0)
        return (self.depth_weights * kd).sum(), per_sample.mean(0).detach()

    def teacher_loss(self, teacher_logits: Tensor, exit_logits: Tensor, targets: Tensor,
                     lam: float) -> tuple[Tensor, Tensor]:
        """lambda_t sum_m sum_k w[k, m] D(t_m, sg z_k) + mu sum_m CE(t_m, y), and the teachers' CEs.

        D is KL_T(t_m || sg z_k) ("forward") or KL_T(sg z_k || t_m) ("reverse")."""
        if self.teacher_kl == "forward":
            kl = pairwise_kl_t(teacher_logits, exit_logits.detach(), self.temperature)  # [m, k]
        else:
            kl = pairwise_kl_t(exit_logits.detach(), teacher_logits, self.temperature).t()  # [k, m] -> [m, k]
        ce = torch.stack([F.cross_entropy(teacher_logits[:, m], targets, label_smoothing=self.label_smoothing)
                          for m in range(self.num_exits)])
        return lam * (self.share.t() * kl).sum() + self.teacher_ce_weight * ce.sum(), ce

    def forward(self, outputs: MultiExitOutput, targets: Tensor, epoch: float = 0.0):
        z = outputs.stacked_logits()
        teacher_logits, attention = self.teachers(outputs)
        ramp = kd_rampup(epoch, self.rampup_epochs)
        ce = exits_cross_entropy(outputs.exit_logits, targets, self.label_smoothing)
        kd, kl = self.student_loss(teacher_logits, z, targets)
        if self.kd_mix is None:
            lam = self.kd_weight * ramp
            loss = ce.sum() + lam * kd
        else:
            a = self.kd_mix * ramp
            lam = a * self.kd_weight
            loss = (1 - a) * ce.sum() + lam * kd
        t_loss, teacher_ce = self.teacher_loss(teacher_logits, z, targets, self.teacher_kd_weight * ramp)
        # A uniform teacher under D2 has no parameter to learn: its loss is a constant, skipped.
        if teacher_logits.requires_grad:
            loss = loss + t_loss
        logs = {"ce": ce.detach(), "teacher_ce": teacher_ce.detach(), "teacher_student_kl": kl.detach(),
                "attention": attention.detach().mean(0), "kd_lambda": torch.tensor(lam)}
        return loss, logs
