import pytest
import torch

import mate
from mate.errors import ConfigError
from mate.models import MODELS
from mate.models.base import _resize_conv_geometry


# The built-in architectures (``width`` scales them); model.name=timm has its own tests (test_timm.py).
BUILT_IN = [name for name in mate.list_models() if "width" in MODELS.options(name)]


def test_every_model_but_timm_is_built_in():
    assert set(mate.list_models()) - set(BUILT_IN) == {"timm"}


@pytest.mark.parametrize("name", BUILT_IN)
@pytest.mark.parametrize("in_channels,size", [(3, 32), (1, 28)])
def test_every_model_exits_have_the_right_shapes(name, in_channels, size):
    torch.manual_seed(0)
    model = mate.create_model(name, num_classes=7, in_channels=in_channels, width=8, input_size=size)
    out = model(torch.randn(2, in_channels, size, size))
    # one exit per stage: wide ResNets have three groups, the other backbones four stages
    assert out.num_exits == model.num_exits == (3 if name in ("wide_resnet", "wrn16_4", "wrn28_10") else 4)
    last_c, last_h, last_w = model.stage_shapes[-1]
    assert model.feature_dim == last_c
    for k, (z, h) in enumerate(zip(out.exit_logits, out.exit_features)):
        assert z.shape == (2, 7)
        assert h.shape == (2, model.feature_dim)
        if k < model.num_exits - 1:
            # the exit's resize branch produces the last stage's exact feature-map shape
            stage_out = torch.randn(2, *model.stage_shapes[k])
            assert model.exits[k].resize(stage_out).shape[1:] == (last_c, last_h, last_w)
    assert out.stacked_logits().shape == (2, model.num_exits, 7)
    assert out.stacked_features().shape == (2, model.num_exits, model.feature_dim)


def test_cifar_resnet18_stage_shapes_follow_method_md():
    model = mate.create_model("resnet18", num_classes=100, in_channels=3, width=64, input_size=32)
    assert model.stage_shapes == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
    # s x s conv with stride s, s = 8, 4, 2 (the second conv of each resize branch)
    strides = [model.exits[k].resize[1][0].stride[0] for k in range(3)]
    assert strides == [8, 4, 2]


def test_resize_geometry_for_non_integer_ratios():
    assert _resize_conv_geometry(32, 4) == (8, 0)
    assert _resize_conv_geometry(28, 4) == (7, 0)
    assert _resize_conv_geometry(14, 4) == (4, 1)
    assert _resize_conv_geometry(7, 4) == (2, 1)


def test_exit_stages_selects_where_exits_sit():
    model = mate.create_model("resnet18", num_classes=10, in_channels=3, width=8, input_size=32, exit_stages=[2, 4])
    assert model.num_exits == 2
    assert [s[1] for s in model.stage_shapes] == [16, 4]
    out = model(torch.randn(1, 3, 32, 32))
    assert len(out.exit_logits) == 2


def test_impossible_exit_stages_are_a_clear_error():
    with pytest.raises(ConfigError, match="exit_stages must be stage numbers in 1..4"):
        mate.create_model("resnet18", num_classes=10, width=8, exit_stages=[5])


def test_unknown_model_names_the_choices():
    with pytest.raises(ConfigError, match="unknown model 'resnet19'.*resnet18"):
        mate.create_model("resnet19", num_classes=10)
