"""MATE's reconstruction candidates (docs/claim_protocol.md) and gradient equilibrium, each against
its formula written out with explicit loops over exits, teachers and samples."""
import math

import pytest
import torch
import torch.nn.functional as F

import mate
from mate.errors import ConfigError
from test_objectives import _fixed_outputs, _hand_kl_t, _mate

Y = torch.tensor([0, 3, 4])


def _hand_loss(obj, out, y, epoch, *, gamma=0.7, mu=1.0, kd_weight=1.0, ramp_r=0.0, mix=None, decay=1.0,
               confidence=False, teacher_kd_weight=None, reverse=False, temperature=3.0):
    """The whole MATE loss with plain loops; teachers from obj.teachers (tested elsewhere: T = A Z)."""
    k_exits = 4
    t, _ = obj.teachers(out)
    z = out.exit_logits
    r = 1.0 if ramp_r <= 0 else math.exp(-5 * (1 - min(epoch, ramp_r) / ramp_r) ** 2)
    ce = [F.cross_entropy(zk, y).item() for zk in z]
    n = len(y)

    def shares(b):  # w[k][m] for sample b
        if not confidence:
            return [[gamma if k == m else (1 - gamma) / 3 for m in range(4)] for k in range(4)]
        ces = [-math.log(torch.softmax(t[b, m], -1)[y[b]].item()) for m in range(4)]
        soft = [math.exp(c) / sum(math.exp(c2) for c2 in ces) for c in ces]
        conf = [1 - s for s in soft]
        w = []
        for k in range(4):
            others = sum(conf[m] for m in range(4) if m != k)
            w.append([gamma if m == k else (1 - gamma) * conf[m] / others for m in range(4)])
        return w

    kd = [0.0] * k_exits
    for b in range(n):
        w = shares(b)
        for k in range(4):
            for m in range(4):
                kd[k] += w[k][m] * _hand_kl_t([t[b, m].tolist()], [z[k][b].tolist()], temperature) / n
    kd = [decay**k * v for k, v in enumerate(kd)]
    if mix is None:
        lam = kd_weight * r
        loss = sum(ce) + lam * sum(kd)
    else:
        a = mix * r
        loss = (1 - a) * sum(ce) + a * kd_weight * sum(kd)
    lam_t = (kd_weight if teacher_kd_weight is None else teacher_kd_weight) * r
    w = shares(0) if not confidence else [[gamma if k == m else (1 - gamma) / 3 for m in range(4)] for k in range(4)]
    for k in range(4):
        for m in range(4):
            if reverse:
                d = _hand_kl_t(z[k].tolist(), t[:, m].tolist(), temperature)
            else:
                d = _hand_kl_t(t[:, m].tolist(), z[k].tolist(), temperature)
            loss += lam_t * w[k][m] * d
    loss += mu * sum(F.cross_entropy(t[:, m], y).item() for m in range(4))
    return loss


@pytest.mark.parametrize("opts,hand", [
    (dict(), dict()),
    (dict(kd_mix=0.6, rampup_epochs=4), dict(mix=0.6, ramp_r=4)),
    (dict(kd_mix=0.5, kd_weight=2.0), dict(mix=0.5, kd_weight=2.0)),
    (dict(kd_depth_decay=0.5), dict(decay=0.5)),
    (dict(offdiag="confidence"), dict(confidence=True)),
    (dict(teacher_kd_weight=0.25, rampup_epochs=4), dict(teacher_kd_weight=0.25, ramp_r=4)),
    (dict(teacher_kl="reverse"), dict(reverse=True)),
    (dict(primary_share=0.5, teacher_ce_weight=0.3, offdiag="confidence", kd_depth_decay=0.8),
     dict(gamma=0.5, mu=0.3, confidence=True, decay=0.8)),
])
def test_candidate_losses_match_the_formulas(opts, hand):
    obj = _mate(**opts)
    out = _fixed_outputs()
    loss, logs = obj(out, Y, 1.5)
    assert loss.item() == pytest.approx(_hand_loss(obj, out, Y, 1.5, **hand), rel=1e-5)
    assert logs["teacher_student_kl"].shape == (4, 4)


def test_defaults_leave_the_loss_unchanged():
    from test_objectives import GOLDEN_MATE_LOSS

    loss, _ = _mate()(_fixed_outputs(), torch.tensor([0, 3, 4]), 100.0)
    assert loss.item() == pytest.approx(GOLDEN_MATE_LOSS, rel=1e-6)


def test_confidence_shares_favour_the_right_teacher():
    """A teacher that is right on a sample gets a larger off-diagonal share than one that is wrong."""
    obj = _mate(offdiag="confidence", teacher="uniform")
    y = torch.tensor([1])
    t = torch.full((1, 4, 3), 0.0)
    t[0, 1, 1] = 5.0  # teacher 2 is confidently right; teachers 1, 3, 4 are unsure or wrong
    t[0, 2, 0] = 5.0
    w = obj.student_shares(t, y)[0]
    assert torch.allclose(w.sum(-1), torch.ones(4), atol=1e-6)
    assert torch.allclose(w.diagonal(), torch.full((4,), 0.7))
    assert w[0, 1] > w[0, 3] > w[0, 2]  # for student 1: right > unsure > wrong


def test_deeper_teacher_mask():
    for teacher in ("attention", "uniform"):
        obj = _mate(teacher_mask="deeper", teacher=teacher)
        _, a = obj.teachers(_fixed_outputs())
        assert torch.allclose(a.sum(-1), torch.ones(3, 4), atol=1e-6)
        for m in range(4):
            assert (a[:, m, :m] == 0).all() and (a[:, m, m:] > 0).all()
        assert torch.allclose(a[:, 3, 3], torch.ones(3))  # the last teacher is the last exit
    uniform = _mate(teacher_mask="deeper", teacher="uniform").teachers(_fixed_outputs())[1][0]
    assert torch.allclose(uniform[1], torch.tensor([0.0, 1 / 3, 1 / 3, 1 / 3]))


def test_others_teacher_mask_bars_each_teacher_from_its_own_exit():
    for teacher in ("attention", "uniform"):
        obj = _mate(teacher_mask="others", teacher=teacher)
        t, a = obj.teachers(_fixed_outputs())
        assert torch.allclose(a.sum(-1), torch.ones(3, 4), atol=1e-6)
        eye = torch.eye(4, dtype=torch.bool)
        assert (a[:, eye] == 0).all() and (a[:, ~eye] > 0).all()
        z = _fixed_outputs().stacked_logits()
        for m in range(4):  # t_m = sum over the other exits only
            want = sum(a[:, m, j:j + 1] * z[:, j] for j in range(4) if j != m)
            assert torch.allclose(t[:, m], want, atol=1e-6)
    uniform = _mate(teacher_mask="others", teacher="uniform").teachers(_fixed_outputs())[1][0]
    assert torch.allclose(uniform[2], torch.tensor([1 / 3, 1 / 3, 0.0, 1 / 3]))
    # two exits: each teacher is the other exit
    two = _mate(teacher_mask="others", num_exits=2)
    out = _fixed_outputs(k=2)
    t, a = two.teachers(out)
    assert torch.equal(a[0], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert torch.equal(t[:, 0], out.exit_logits[1]) and torch.equal(t[:, 1], out.exit_logits[0])


def _loss_and_grads(obj, epoch=100.0):
    out = _fixed_outputs(requires_grad=True)
    loss, _ = obj(out, Y, epoch)
    loss.backward()
    return loss.detach(), [z.grad for z in out.exit_logits] + [h.grad for h in out.exit_features]


def test_a_uniform_teacher_under_d2_ignores_the_teacher_loss_options():
    """Under D2 a uniform teacher has no parameter for its own loss to reach, so the options of that
    loss (and of the absent weight network) change neither the loss nor any gradient: the uniform
    control of a setting that changes only them trains exactly as `mate_uniform`."""
    teacher_only = dict(teacher_kd_weight=0.5, teacher_kl="reverse", teacher_ce_weight=0.3,
                        attention_scale="sqrt", proj_dim=3)
    base_loss, base_grads = _loss_and_grads(_mate(teacher="uniform"))
    loss, grads = _loss_and_grads(_mate(teacher="uniform", **teacher_only))
    assert torch.equal(loss, base_loss)
    assert all(g is None and b is None or torch.equal(g, b) for g, b in zip(grads, base_grads))
    assert base_grads[0].abs().sum() > 0  # the exits do learn
    # under D1 the teacher loss reaches the exits through the teachers: the options do matter there
    d1_loss, d1_grads = _loss_and_grads(_mate(teacher="uniform", detach_policy="d1"))
    loss, grads = _loss_and_grads(_mate(teacher="uniform", detach_policy="d1", teacher_kd_weight=0.5))
    assert not torch.equal(loss, d1_loss) and not torch.equal(grads[0], d1_grads[0])


@pytest.mark.parametrize("bad,match", [
    (dict(kd_mix=1.5), "kd_mix"), (dict(kd_depth_decay=0.0), "kd_depth_decay"),
    (dict(offdiag="max"), "offdiag"), (dict(teacher_kl="both"), "teacher_kl"),
    (dict(teacher_mask="shallower"), "teacher_mask"), (dict(teacher_mask="self"), "teacher_mask"),
])
def test_candidate_option_errors(bad, match):
    with pytest.raises(ConfigError, match=match):
        _mate(**bad)


def test_gradient_equilibrium_rescales_each_stage_by_the_exits_reading_it():
    """IMTA's GE: stage i (0-based) of K receives 1/(K - i) of the plain gradient, whatever the loss;
    the exits' own parameters and the forward pass are unchanged."""
    torch.manual_seed(0)
    plain = mate.create_model("resnet18", num_classes=5, in_channels=1, width=4, input_size=16)
    ge = mate.create_model("resnet18", num_classes=5, in_channels=1, width=4, input_size=16,
                           gradient_equilibrium=True)
    ge.load_state_dict(plain.state_dict())
    x, y = torch.randn(4, 1, 16, 16), torch.tensor([0, 1, 2, 3])
    outs = []
    for net in (plain, ge):
        out = net(x)
        loss = sum((k + 1) * F.cross_entropy(z, y) for k, z in enumerate(out.exit_logits))
        loss = loss + out.exit_features[1].pow(2).mean()
        loss.backward()
        outs.append(out)
    for a, b in zip(outs[0].exit_logits, outs[1].exit_logits):
        assert torch.equal(a, b)
    k = plain.num_exits
    groups = [("stem", 1.0 / k)] + [(f"stages.{i}.", 1.0 / (k - i)) for i in range(k)] + [("exits.", 1.0)]
    for (name, p), (_, q) in zip(plain.named_parameters(), ge.named_parameters()):
        factor = next(f for prefix, f in groups if name.startswith(prefix))
        assert torch.allclose(q.grad, p.grad * factor, rtol=1e-4, atol=1e-7), name


def test_gradient_equilibrium_is_a_config_option_of_every_model():
    from mate.config import load_config

    for name in ("resnet18", "vgg16", "mobilenetv2"):
        cfg = load_config(None, [f"model.name={name}", "model.gradient_equilibrium=true"])
        assert cfg.model["gradient_equilibrium"] is True
    with pytest.raises(ConfigError, match="gradient_equilibrium"):
        load_config(None, ["model.gradient_equilibrium=3"])
