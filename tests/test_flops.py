import json

import torch
from torch import nn

import mate
from mate.cli import main
from mate.evaluation import count_flops, count_params, exit_costs
from mate.models import MultiExitNetwork


def test_conv_and_linear_flops_are_twice_the_multiply_accumulates():
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_flops(conv, torch.zeros(1, 3, 10, 10)) == 2 * (8 * 10 * 10) * (3 * 3 * 3)  # 43,200
    linear = nn.Linear(16, 10)
    assert count_flops(linear, torch.zeros(1, 16)) == 2 * 16 * 10


def tiny_network():
    stem = nn.Conv2d(1, 4, 3, padding=1, bias=False)
    stages = [nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False)]
    return MultiExitNetwork(stem, stages, num_classes=3, in_channels=1, input_size=8)


def test_cumulative_flops_of_a_hand_counted_network():
    costs = exit_costs(tiny_network())
    stem = 2 * 4 * 64 * 9  # 1 -> 4 channels, 3x3, 8x8 output
    stage1 = 2 * 4 * 64 * 4 * 9
    # exit 1 resizes 4x8x8 to the last stage's 8x4x4: 1x1 to 2, 2x2 stride 2 to 2, 1x1 to 8, Linear 8 -> 3
    exit1 = 2 * 2 * 64 * 4 + 2 * 2 * 16 * 2 * 4 + 2 * 8 * 16 * 2 + 2 * 8 * 3
    stage2 = 2 * 8 * 16 * 4 * 9
    exit2 = 2 * 8 * 3  # pool + Linear
    assert costs.flops == [stem + stage1 + exit1, stem + stage1 + exit1 + stage2 + exit2]
    assert costs.flops == [25136, 34400]


def test_last_exit_costs_the_full_forward_and_costs_grow_with_k():
    model = mate.create_model("resnet18", num_classes=10, in_channels=1, width=8, input_size=28)
    costs = exit_costs(model)
    assert costs.num_exits == 4
    assert costs.flops[-1] == count_flops(model, torch.zeros(1, 1, 28, 28))
    assert all(a < b for a, b in zip(costs.flops, costs.flops[1:]))
    assert all(a < b for a, b in zip(costs.params, costs.params[1:]))
    assert costs.params[-1] == count_params(model)
    assert costs.relative()[-1] == 1.0
    assert model.training  # measuring does not change the model's mode


def test_training_only_parts_are_not_counted(capsys):
    model = mate.create_model("resnet18", num_classes=10, in_channels=1, width=8, input_size=28)
    objective = mate.create_objective("mate", num_exits=model.num_exits, feature_dim=model.feature_dim, num_classes=10)
    weight_net = count_params(objective)
    assert weight_net > 0  # MATE's weight network lives in the objective ...
    costs = exit_costs(model)
    assert costs.params[-1] == sum(p.numel() for p in model.parameters())  # ... and never in an exit's cost
    # the exits' cost is the same whichever objective a config trains: `mate flops` of a MATE config and of a
    # CE config both give the bare model's costs, without MATE's weight network
    reported = {}
    for name in ("mate", "ce"):
        assert main(["flops", "fashion_mnist_quick", "model.width=8", f"objective.name={name}", "--json"]) == 0
        reported[name] = json.loads(capsys.readouterr().out)
    assert reported["mate"] == reported["ce"]
    assert (reported["mate"]["flops"], reported["mate"]["params"]) == (costs.flops, costs.params)


def test_flops_command_on_a_config(capsys):
    """The dataset's registered shape is enough: no Fashion-MNIST file is found (nor read) here."""
    assert main(["flops", "fashion_mnist_quick", "model.width=8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    model = mate.create_model("resnet18", num_classes=10, in_channels=1, width=8, input_size=28)
    costs = exit_costs(model)
    assert out == {"input_shape": [1, 28, 28], "flops": costs.flops, "macs": [f // 2 for f in costs.flops],
                   "params": costs.params}
    assert main(["flops", "fashion_mnist_quick", "model.width=8"]) == 0
    text = capsys.readouterr().out
    assert "2 x multiply-accumulates" in text and f"| 4 | {costs.flops[-1] / 1e6:.2f} | {costs.flops[-1] / 2e6:.2f} | 1.000 |" in text


def test_flops_of_an_image_file_dataset_at_another_size_reads_no_file(capsys, tmp_path):
    assert main(["flops", "cub200_imagenet_resnet18", f"data.root={tmp_path / 'nothing'}", "model.width=4",
                 "data.image_size=112", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    model = mate.create_model("imagenet_resnet18", num_classes=200, in_channels=3, width=4, input_size=112)
    costs = exit_costs(model)
    assert out == {"input_shape": [3, 112, 112], "flops": costs.flops, "macs": [f // 2 for f in costs.flops],
                   "params": costs.params}
    assert main(["flops", "fashion_mnist_quick", "data.image_size=32", "--json"]) == 2
    assert "fashion_mnist holds 28x28 images" in capsys.readouterr().err
