"""Golden values of the baseline objectives on fixed tensors, against their formulas written out."""
import math

import pytest
import torch
import torch.nn.functional as F

import mate
from mate.errors import ConfigError
from mate.experiments import load_method_specs
from mate.models import MultiExitOutput
from test_objectives import _hand_kl_t, _fixed_outputs

Y = torch.tensor([0, 3, 4])


def _ce(out):
    return [F.cross_entropy(z, Y).item() for z in out.exit_logits]


def _hand_norm(rows):
    return math.sqrt(sum(v * v for row in rows for v in row))


def test_byot_authors_recipe_written_out():
    """Authors' code: CE_K + sum_{k<K} [(1-a) CE_k + a softCE_T(z_k, sg z_K)] (no T^2)
    + b sum_{k<K-1} ||A_k(h_k) - sg h_K||_2 (torch.dist over the whole batch)."""
    out = _fixed_outputs()
    torch.manual_seed(0)
    obj = mate.create_objective("byot", num_exits=4, feature_dim=16, temperature=2.0)
    assert (obj.kd_weight, obj.feature_weight, obj.t_squared, obj.last_ce_weight) == (0.3, 0.03, False, "one")
    loss, logs = obj(out, Y)
    z, h = out.exit_logits, out.exit_features
    ce = _ce(out)
    kd = sum(_hand_kl_t(z[3].tolist(), z[k].tolist(), 2.0) for k in range(3)) / 4.0  # KL without T^2
    hint = 0.0
    assert len(obj.adapters) == 2  # exits 1 and 2; the code skips the exit just below the last
    for k, adapter in zip((0, 1), obj.adapters):
        w, bias = adapter.weight.tolist(), adapter.bias.tolist()
        adapted = [[sum(w[i][j] * row[j] for j in range(16)) + bias[i] for i in range(16)] for row in h[k].tolist()]
        hint += _hand_norm([[a - t for a, t in zip(ra, rt)] for ra, rt in zip(adapted, h[3].tolist())])
    expected = ce[3] + 0.7 * sum(ce[:3]) + 0.3 * kd + 0.03 * hint
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert logs["feature_hint"].item() == pytest.approx(hint, rel=1e-5)
    # the adaptation layers train with the network; the teacher's features and logits are fixed targets
    out = _fixed_outputs(requires_grad=True)
    obj(out, Y)[0].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in obj.parameters())
    assert out.exit_features[2].grad is None  # exit 3 gets no feature term


def test_byot_reimplementation_variant_written_out():
    """(1-a) sum_k CE_k + a sum_{k<K} KL_T(sg z_K || z_k) (with T^2) + b sum_{k<K} ||h_k - sg h_K||^2."""
    out = _fixed_outputs()
    spec = {s.name: s.objective for s in load_method_specs(["byot_reimpl"])}["byot_reimpl"]
    options = {k: v for k, v in spec.items() if k != "name"}
    assert options["kd_weight"] == 0.1 and options["feature_weight"] == 1e-6
    loss, _ = mate.create_objective("byot", num_exits=4, feature_dim=16, **{**options, "temperature": 2.0})(out, Y)
    z, h = out.exit_logits, out.exit_features
    kd = sum(_hand_kl_t(z[3].tolist(), z[k].tolist(), 2.0) for k in range(3))
    hint = sum(float(((h[k] - h[3]) ** 2).sum()) for k in range(3))
    assert loss.item() == pytest.approx(0.9 * sum(_ce(out)) + 0.1 * kd + 1e-6 * hint, rel=1e-5)


def test_byot_option_errors():
    with pytest.raises(ConfigError, match="last_ce_weight"):
        mate.create_objective("byot", num_exits=4, feature_dim=16, last_ce_weight="half")
    with pytest.raises(ConfigError, match="feature_loss"):
        mate.create_objective("byot", num_exits=4, feature_dim=16, feature_loss="l1")


def test_phuong_formula_and_temperature_annealing():
    out = _fixed_outputs()
    obj = mate.create_objective("phuong", num_exits=4)
    z = out.exit_logits
    loss, _ = obj(out, Y)
    kd = sum(_hand_kl_t(z[3].tolist(), z[k].tolist(), 1.0) for k in range(3))
    assert loss.item() == pytest.approx(0.5 * sum(_ce(out)) + 0.5 * kd, rel=1e-5)
    conf = torch.softmax(z[3], -1).max(-1).values.mean().item()
    assert float(obj.temperature) == pytest.approx(1.05 if conf > 0.5 else 1.0)
    # a very confident last exit keeps raising T, once per batch
    sharp = MultiExitOutput([z[0], z[1], z[2], z[3] * 50], out.exit_features)
    obj = mate.create_objective("phuong", num_exits=4)
    for _ in range(3):
        obj(sharp, Y)
    assert float(obj.temperature) == pytest.approx(1.05**3)
    obj.eval()
    obj(sharp, Y)  # evaluation never changes T
    assert float(obj.temperature) == pytest.approx(1.05**3)
    assert "temperature" in obj.state_dict()


def _hand_masked_mse(f, t):
    """EED's feature_loss_function: mean over elements of (f - t)^2 where f > 0 or t > 0."""
    vals = [(a - b) ** 2 * (1.0 if (a > 0 or b > 0) else 0.0) for ra, rb in zip(f, t) for a, b in zip(ra, rb)]
    return sum(vals) / len(vals)


def test_eed_defaults_are_the_released_code():
    """MSE on logits (weight 1) + masked feature MSE to the detached mean feature (weight 1), every exit."""
    out = _fixed_outputs()
    obj = mate.create_objective("eed", num_exits=4)
    assert (obj.distill, obj.kd_weight, obj.feature_weight) == ("mse", 1.0, 1.0)
    loss, logs = obj(out, Y)
    e = out.stacked_logits().mean(1)
    f = out.stacked_features().mean(1).tolist()
    kd = sum(float(((z - e) ** 2).mean()) for z in out.exit_logits)
    feat = sum(_hand_masked_mse(h.tolist(), f) for h in out.exit_features)
    assert loss.item() == pytest.approx(sum(_ce(out)) + kd + feat, rel=1e-5)
    assert logs["feature"].sum().item() == pytest.approx(feat, rel=1e-5)


def test_eed_kl_variant():
    out = _fixed_outputs()
    spec = {s.name: s.objective for s in load_method_specs(["eed_kl"])}["eed_kl"]
    loss, _ = mate.create_objective("eed", num_exits=4, **{k: v for k, v in spec.items() if k != "name"})(out, Y)
    e = out.stacked_logits().mean(1)
    f = out.stacked_features().mean(1).tolist()
    kd = sum(_hand_kl_t(e.tolist(), z.tolist(), 3.0) for z in out.exit_logits)
    feat = sum(_hand_masked_mse(h.tolist(), f) for h in out.exit_features)
    assert loss.item() == pytest.approx(sum(_ce(out)) + 0.1 * kd + feat, rel=1e-5)


def test_eed_option_error():
    with pytest.raises(ConfigError, match="distill"):
        mate.create_objective("eed", num_exits=4, distill="l1")


def test_beed_formula():
    out = _fixed_outputs()
    loss, _ = mate.create_objective("beed", num_exits=4)(out, Y)
    w = [1.6**k for k in range(4)]
    e = sum(w[k] * out.exit_logits[k] for k in range(4)) / sum(w)
    f = (sum(w[k] * out.exit_features[k] for k in range(4)) / sum(w)).tolist()
    ce = _ce(out)
    expected = 0.0
    for k in range(4):  # exit k+1: a^(K-k-1)
        a = 1.15 ** (3 - k)
        expected += (2 - a) * ce[k] + a * _hand_kl_t(e.tolist(), out.exit_logits[k].tolist(), 3.0)
        expected += 0.1 * _hand_masked_mse(out.exit_features[k].tolist(), f)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_sdn_ramp_is_the_released_code():
    """w_k(e) = min(c_k, 0.01 + e' c_k / E), e' = epoch number from 1, over the whole run by default."""
    out = _fixed_outputs()
    obj = mate.create_objective("sdn", num_exits=4, total_epochs=10)
    ce = _ce(out)
    c = [0.3, 0.6, 0.9]
    for epoch, frac in ((0.0, 0.1), (0.99, 0.1), (4.5, 0.5), (9.2, 1.0), (12.0, 1.0)):
        w = [min(ck, 0.01 + frac * 10 * ck / 10) for ck in c]  # epoch index floor(e) + 1 = frac * 10
        assert obj.weights(epoch)[:3].tolist() == pytest.approx(w)
        loss, _ = obj(out, Y, epoch)
        assert loss.item() == pytest.approx(sum(wk * ck for wk, ck in zip(w, ce)) + ce[3], rel=1e-5)
    assert obj.weights(0.0)[:3].tolist() == pytest.approx([0.04, 0.07, 0.10])
    const = mate.create_objective("sdn", num_exits=4, total_epochs=10, rampup_epochs=0)
    assert const.weights(0.0)[:3].tolist() == pytest.approx(c)
    with pytest.raises(ConfigError, match="needs 3 values"):
        mate.create_objective("sdn", num_exits=4, exit_weights=[1.0])


def test_sdn_gets_the_run_length_from_the_config(tmp_path):
    from mate.config import load_config
    from mate.engine import build_objective

    model = mate.create_model("resnet18", num_classes=4, in_channels=1, width=4, input_size=16)
    cfg = load_config(None, ["objective.name=sdn", "optim.epochs=7"])
    assert build_objective(cfg, model).rampup_epochs == 7.0
    with pytest.raises(ConfigError, match="total_epochs"):
        load_config(None, ["objective.name=sdn", "objective.total_epochs=3"])


def test_okddip_variant_has_okddips_peer_loss_gradients():
    """OKDDip: sum_k CE_k + lam sum_k KL_T(t_k || z_k) with nothing detached (the attention and every
    peer's logits learn through t_k). The `okddip` variant (gamma = 1, D1, mu = 0) must give the same
    gradients to every parameter of the network and of the weight network."""
    spec = {s.name: s.objective for s in load_method_specs(["okddip"])}["okddip"]
    assert spec == {"name": "mate", "primary_share": 1.0, "detach_policy": "d1", "teacher_ce_weight": 0.0}
    torch.manual_seed(0)
    model = mate.create_model("resnet18", num_classes=5, in_channels=1, width=4, input_size=16)
    obj = mate.create_objective("mate", num_exits=4, feature_dim=model.feature_dim, num_classes=5,
                                temperature=2.0, kd_weight=0.7, **{k: v for k, v in spec.items() if k != "name"})
    x, y = torch.randn(6, 1, 16, 16), torch.tensor([0, 1, 2, 3, 4, 0])
    params = [*model.parameters(), *obj.parameters()]
    out = model(x)
    loss, _ = obj(out, y, 5.0)
    grads = torch.autograd.grad(loss, params, retain_graph=True)
    t, _ = obj.teachers(out)
    from mate.objectives import kl_t
    peer = sum(F.cross_entropy(z, y) for z in out.exit_logits)
    peer = peer + 0.7 * sum(kl_t(t[:, k], out.exit_logits[k], 2.0) for k in range(4))
    ref = torch.autograd.grad(peer, params)
    assert loss.item() == pytest.approx(2 * peer.item() - sum(F.cross_entropy(z, y).item() for z in out.exit_logits),
                                        rel=1e-5)  # the KL appears once as student term, once as teacher term
    for a, b in zip(grads, ref):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("name", ["ce", "byot", "phuong", "eed", "beed", "sdn", "mate"])
def test_each_objective_trains_a_tiny_model(name):
    """A few steps on a fixed batch: finite losses that go down."""
    torch.manual_seed(0)
    model = mate.create_model("resnet18", num_classes=4, in_channels=1, width=4, input_size=16)
    obj = mate.create_objective(name, num_exits=model.num_exits, feature_dim=model.feature_dim, num_classes=4)
    opt_params = [*model.parameters(), *obj.parameters()]
    opt = torch.optim.SGD(opt_params, lr=0.05, momentum=0.9)
    x, y = torch.randn(16, 1, 16, 16), torch.arange(16) % 4
    losses = []
    for step in range(8):
        loss, _ = obj(model(x), y, float(step))
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
