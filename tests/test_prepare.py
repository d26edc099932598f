"""prepare_for_inference: BatchNorm folded into the convolutions, NHWC on CPU, same logits."""
import pytest
import torch
from torch import nn

import mate
from mate import prepare_for_inference
from test_architectures import TINY_STAGES

ARCHITECTURES = sorted(TINY_STAGES) + ["resnet18", "resnet50"]


def _bn_count(module):
    return sum(isinstance(m, nn.BatchNorm2d) for m in module.modules())


def _randomise_batchnorm(model):
    """Running statistics and affine parameters far from their initial values, so that folding
    them into the convolutions is a real change of weights."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.2)
            m.weight.data.copy_(torch.randn(c, generator=g))
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.5)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_folded_model_gives_the_same_logits(name):
    torch.manual_seed(0)
    size = 64 if name.startswith("imagenet") else 32
    model = mate.create_model(name, num_classes=7, in_channels=3, width=4, input_size=size)
    _randomise_batchnorm(model)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(5, 3, size, size)
    with torch.no_grad():
        expected = model(x).exit_logits
        prepared = prepare_for_inference(model)
        got = prepared(x).exit_logits
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4 * float(e.abs().max()))
    # the trained model itself is untouched
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # every conv -> BN pair is folded; only pre-activation BatchNorms (BN before a conv, or after
    # a residual sum) stay
    expected_left = {"wrn16_4": 2 * 3 + 1, "wrn28_10": 4 * 3 + 1, "wide_resnet": 2 * 3 + 1}.get(name, 0)
    assert _bn_count(prepared) == expected_left
    assert _bn_count(model) > expected_left
    assert not any(p.requires_grad for p in prepared.parameters())
    convs = [m for m in prepared.modules() if isinstance(m, nn.Conv2d) and m.weight.dim() == 4]
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)


def test_nchw_and_no_folding_on_request():
    model = mate.create_model("resnet18", num_classes=3, in_channels=1, width=4, input_size=16).eval()
    kept = prepare_for_inference(model, fold=False, channels_last=False)
    assert _bn_count(kept) == _bn_count(model)
    assert kept.stem[0].weight.is_contiguous()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model(x).exit_logits, kept(x).exit_logits))


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
            return self.bn(self.conv(x))
        return -self.bn(self.conv(x))


def test_an_untraceable_block_is_left_unfolded_with_a_warning():
    from mate.inference import fold_batchnorm

    block = _Untraceable().eval()
    x = torch.randn(3, 2, 5, 5)
    with torch.no_grad():
        expected = block(x)
        with pytest.warns(UserWarning, match="BatchNorm left unfolded in _Untraceable"):
            same = fold_batchnorm(block)
        assert same is block and torch.equal(same(x), expected)
