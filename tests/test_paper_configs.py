"""Every shipped paper config builds its model at full size and takes one training step.

No dataset is read: the model gets the class count, channels and input size of the config's
dataset, and the step runs on random images of that shape.
"""
from types import SimpleNamespace

import pytest
import torch
import yaml

from mate.config import SHIPPED_CONFIGS, load_config
from mate.engine import build_model, build_objective

DATASETS = {  # num_classes, in_channels, input_size
    "cifar100": (100, 3, 32), "tiny_imagenet": (200, 3, 64), "cub200": (200, 3, 224),
    "stanford_dogs": (120, 3, 224), "fgvc_aircraft": (100, 3, 224),
}
CIFAR_RESNET = [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]
IMAGENET_RESNET18 = [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]
STAGE_SHAPES = {
    "cifar100_resnet18": CIFAR_RESNET,
    "cifar100_resnet34": CIFAR_RESNET,
    "cifar100_resnet50": [(256, 32, 32), (512, 16, 16), (1024, 8, 8), (2048, 4, 4)],
    "cifar100_wrn16_4": [(64, 32, 32), (128, 16, 16), (256, 8, 8)],
    "cifar100_wrn28_10": [(160, 32, 32), (320, 16, 16), (640, 8, 8)],
    "cifar100_vgg16": [(128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)],
    "cifar100_mobilenetv2": [(24, 32, 32), (32, 16, 16), (96, 8, 8), (1280, 4, 4)],
    "tiny_imagenet_resnet18": [(64, 64, 64), (128, 32, 32), (256, 16, 16), (512, 8, 8)],
    "cub200_imagenet_resnet18": IMAGENET_RESNET18,
    "cub200_imagenet_resnet50": [(256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)],
    "stanford_dogs_imagenet_resnet18": IMAGENET_RESNET18,
    "fgvc_aircraft_imagenet_resnet18": IMAGENET_RESNET18,
}


def test_every_shipped_config_of_a_paper_dataset_is_checked_here():
    paper = {p.stem for p in SHIPPED_CONFIGS.glob("*.yaml")
             if (yaml.safe_load(p.read_text()) or {}).get("data", {}).get("name") in DATASETS}
    assert paper == set(STAGE_SHAPES)


@pytest.mark.parametrize("name", sorted(STAGE_SHAPES))
def test_paper_config_builds_and_takes_one_training_step(name):
    torch.manual_seed(0)
    config = load_config(name)
    num_classes, in_channels, size = DATASETS[config.data.name]
    splits = SimpleNamespace(num_classes=num_classes, in_channels=in_channels, input_size=size)
    model = build_model(config, splits)
    assert model.stage_shapes == STAGE_SHAPES[name]
    objective = build_objective(config, model)
    params = [*model.parameters(), *objective.parameters()]
    optimizer = torch.optim.SGD(params, lr=config.optim.lr, momentum=config.optim.momentum,
                                weight_decay=config.optim.weight_decay)
    x, y = torch.randn(2, in_channels, size, size), torch.randint(0, num_classes, (2,))
    outputs = model(x)
    assert [z.shape for z in outputs.exit_logits] == [(2, num_classes)] * model.num_exits
    assert {h.shape for h in outputs.exit_features} == {(2, model.feature_dim)}
    loss, _ = objective(outputs, y, 0.0)
    assert torch.isfinite(loss)
    before = model.exits[0].fc.weight.detach().clone()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert not torch.equal(before, model.exits[0].fc.weight)
