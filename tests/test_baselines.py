"""Golden values of the baseline objectives on fixed tensors, against their formulas written out."""
import math

import pytest
import torch
import torch.nn.functional as F

import mate
from mate.errors import ConfigError
from mate.models import MultiExitOutput
from test_objectives import _hand_kl_t, _fixed_outputs

Y = torch.tensor([0, 3, 4])


def _ce(out):
    return [F.cross_entropy(z, Y).item() for z in out.exit_logits]


def test_byot_formula():
    out = _fixed_outputs()
    loss, logs = mate.create_objective("byot", num_exits=4, kd_weight=0.3, temperature=2.0, feature_weight=1e-3)(out, Y)
    z, h = out.exit_logits, out.exit_features
    kd = sum(_hand_kl_t(z[3].tolist(), z[k].tolist(), 2.0) for k in range(3))
    hint = sum(float(((h[k] - h[3]) ** 2).sum()) for k in range(3))
    assert loss.item() == pytest.approx(0.7 * sum(_ce(out)) + 0.3 * kd + 1e-3 * hint, rel=1e-5)


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


@pytest.mark.parametrize("distill", ["kl", "mse"])
def test_eed_formula(distill):
    out = _fixed_outputs()
    loss, _ = mate.create_objective("eed", num_exits=4, kd_weight=0.1, temperature=3.0, distill=distill)(out, Y)
    e = out.stacked_logits().mean(1)
    if distill == "kl":
        kd = sum(_hand_kl_t(e.tolist(), z.tolist(), 3.0) for z in out.exit_logits)
    else:
        kd = sum(float(((z - e) ** 2).mean()) for z in out.exit_logits)
    assert loss.item() == pytest.approx(sum(_ce(out)) + 0.1 * kd, rel=1e-5)


def test_eed_option_error():
    with pytest.raises(ConfigError, match="distill"):
        mate.create_objective("eed", num_exits=4, distill="l1")


def test_beed_formula():
    out = _fixed_outputs()
    loss, _ = mate.create_objective("beed", num_exits=4)(out, Y)
    w = [1.6**k for k in range(4)]
    e = sum(w[k] * out.exit_logits[k] for k in range(4)) / sum(w)
    ce = _ce(out)
    expected = 0.0
    for k in range(4):  # exit k+1: a^(K-k-1)
        a = 1.15 ** (3 - k)
        expected += (2 - a) * ce[k] + a * _hand_kl_t(e.tolist(), out.exit_logits[k].tolist(), 3.0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_sdn_weights():
    out = _fixed_outputs()
    obj = mate.create_objective("sdn", num_exits=4, rampup_epochs=10)
    ce = _ce(out)
    loss, _ = obj(out, Y, 5.0)
    expected = 0.5 * (0.3 * ce[0] + 0.6 * ce[1] + 0.9 * ce[2]) + ce[3]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert obj.weights(0.0)[:3].tolist() == pytest.approx([0.003, 0.006, 0.009])
    with pytest.raises(ConfigError, match="needs 3 values"):
        mate.create_objective("sdn", num_exits=4, exit_weights=[1.0])


@pytest.mark.parametrize("name", ["ce", "byot", "phuong", "eed", "beed", "sdn", "mate"])
def test_each_objective_trains_a_tiny_model(name):
    """A few steps on a fixed batch: finite losses that go down."""
    torch.manual_seed(0)
    model = mate.create_model("resnet18", num_classes=4, in_channels=1, width=4, input_size=16)
    obj = mate.create_objective(name, num_exits=model.num_exits, feature_dim=model.feature_dim, num_classes=4)
    opt = torch.optim.SGD([*model.parameters(), *obj.parameters()], lr=0.05, momentum=0.9)
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
