"""The added architectures (WRN, VGG-16, MobileNetV2, ImageNet-style ResNets): shapes, structure,
and a short training of every architecture on both dataset families (in memory and streamed)."""
import json

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual

import mate
from fake_layouts import make_image_folder
from mate.config import load_config
from mate.engine import train
from mate.errors import ConfigError
from mate.models.wide_resnet import WideBasicBlock
from test_data import make_fake_cifar

TINY_STAGES = {  # width 4, 32x32 input
    "wrn16_4": [(4, 32, 32), (8, 16, 16), (16, 8, 8)],
    "wrn28_10": [(4, 32, 32), (8, 16, 16), (16, 8, 8)],
    "wide_resnet": [(4, 32, 32), (8, 16, 16), (16, 8, 8)],
    "vgg16": [(8, 16, 16), (16, 8, 8), (32, 4, 4), (32, 2, 2)],
    "mobilenetv2": [(8, 32, 32), (8, 16, 16), (16, 8, 8), (160, 4, 4)],
    "imagenet_resnet18": [(4, 8, 8), (8, 4, 4), (16, 2, 2), (32, 1, 1)],
    "imagenet_resnet50": [(16, 8, 8), (32, 4, 4), (64, 2, 2), (128, 1, 1)],
}


def test_the_added_architectures_are_registered():
    assert set(TINY_STAGES) <= set(mate.list_models())


@pytest.mark.parametrize("name", sorted(TINY_STAGES))
def test_tiny_exits_share_the_last_stage_shape(name):
    torch.manual_seed(0)
    model = mate.create_model(name, num_classes=5, in_channels=3, width=4, input_size=32)
    assert model.stage_shapes == TINY_STAGES[name]
    out = model(torch.randn(3, 3, 32, 32))
    assert out.num_exits == len(TINY_STAGES[name]) and model.feature_dim == TINY_STAGES[name][-1][0]
    assert [z.shape for z in out.exit_logits] == [(3, 5)] * out.num_exits
    assert [h.shape for h in out.exit_features] == [(3, model.feature_dim)] * out.num_exits
    for k, shape in enumerate(model.stage_shapes[:-1]):
        assert model.exits[k].resize(torch.randn(2, *shape)).shape[1:] == model.stage_shapes[-1]


def _count(model, kind):
    return [sum(isinstance(m, kind) for m in stage.modules()) for stage in model.stages]


def test_depths_follow_the_published_networks():
    assert _count(mate.create_model("wrn16_4", num_classes=5, width=4), WideBasicBlock) == [2, 2, 2]
    assert _count(mate.create_model("wrn28_10", num_classes=5, width=4), WideBasicBlock) == [4, 4, 4]
    assert _count(mate.create_model("wide_resnet", num_classes=5, width=4, depth=22), WideBasicBlock) == [3, 3, 3]
    vgg = mate.create_model("vgg16", num_classes=5, width=4)
    assert sum(isinstance(m, nn.Conv2d) for m in [*vgg.stem.modules(), *vgg.stages.modules()]) == 13
    assert _count(vgg, nn.MaxPool2d) == [1, 1, 1, 1]  # exits after blocks 2..5, each after one pool
    assert _count(mate.create_model("mobilenetv2", num_classes=5, width=4), InvertedResidual) == [3, 3, 7, 4]
    r50 = mate.create_model("imagenet_resnet50", num_classes=5, width=4, input_size=64)
    assert _count(r50, torchvision.models.resnet.Bottleneck) == [3, 4, 6, 3]


def test_bad_wide_resnet_depth_is_a_config_error():
    with pytest.raises(ConfigError, match="6n \\+ 4"):
        mate.create_model("wide_resnet", num_classes=5, width=4, depth=15)


def test_imagenet_resnet18_backbone_is_torchvisions():
    model = mate.create_model("imagenet_resnet18", num_classes=10, input_size=64)
    rename = {"conv1": "stem.0", "bn1": "stem.1", **{f"layer{i + 1}": f"stages.{i}" for i in range(4)}}
    reference = torchvision.models.resnet18(weights=None).state_dict()
    mapped = {rename[k.split(".")[0]] + "." + k.split(".", 1)[1]: v for k, v in reference.items()
              if not k.startswith("fc.")}
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    assert unexpected == [] and all(k.startswith("exits.") for k in missing)  # torchvision's weights fit as is
    backbone = sum(p.numel() for p in [*model.stem.parameters(), *model.stages.parameters()])
    assert backbone == 11_689_512 - (512 * 1000 + 1000)  # torchvision's ResNet-18 without its fc


def test_exit_stages_place_exits_on_the_new_backbones():
    vgg = mate.create_model("vgg16", num_classes=5, width=4, exit_stages=[2, 4])
    assert vgg.num_exits == 2 and vgg.stage_shapes == [(16, 8, 8), (32, 2, 2)]
    wrn = mate.create_model("wrn16_4", num_classes=5, width=4, exit_stages=[1])
    assert wrn.num_exits == 2  # the last group always keeps its exit


def test_mobilenetv2_with_the_original_strides():
    model = mate.create_model("mobilenetv2", num_classes=5, width=4, input_size=64, small_input=False)
    assert [s[1] for s in model.stage_shapes] == [16, 8, 4, 2]


# -- every architecture x dataset family: one short training -------------------------------------

@pytest.fixture(scope="module")
def families(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_fake_cifar(root / "cifar", "cifar100", n_per_file=16)
    make_image_folder(root / "folder")
    return {
        "cifar100-in-memory": ["data.name=cifar100", f"data.root={root / 'cifar'}", "data.val_size=4",
                               "data.test_subset=8"],
        "image_folder-streamed": ["data.name=image_folder", f"data.root={root / 'folder'}", "data.val_size=2",
                                  "data.image_size=32", "data.in_memory=false", "data.num_workers=0"],
    }


@pytest.mark.parametrize("family", ["cifar100-in-memory", "image_folder-streamed"])
@pytest.mark.parametrize("name", [n for n in mate.list_models() if n != "timm"])  # timm: test_timm.py
def test_every_architecture_trains_on_every_dataset_family(tmp_path, families, name, family):
    config = load_config(None, [*families[family], "data.batch_size=4", "data.eval_batch_size=8",
                                "data.download=false", f"model.name={name}", "model.width=4", "optim.epochs=1",
                                "optim.lr=0.05", "run.progress=false", "run.tensorboard=false",
                                f"run.out_dir={tmp_path}"])
    results = train(config, log=lambda line: None)
    record = json.loads(next(tmp_path.glob("*/metrics.jsonl")).read_text().splitlines()[0])
    num_exits = mate.create_model(name, num_classes=3, width=4).num_exits
    assert len(results["test"]["exit_acc"]) == num_exits
    assert results["test"]["n"] == (8 if family.startswith("cifar") else 6)
    assert torch.isfinite(torch.tensor(record["train"]["loss"]))
