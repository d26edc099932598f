import json

import numpy as np
import pytest
import torch

import mate
from mate.evaluation import exit_costs
from mate.inference import export_onnx

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = mate.create_model("resnet18", num_classes=10, in_channels=1, width=8, input_size=28)
    for m in model.modules():  # non-trivial normalisation statistics, so BatchNorm is really exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    folder = tmp_path_factory.mktemp("onnx")
    manifest = export_onnx(model, folder, thresholds=[0.9, 0.8, 0.7], score="max_prob", mean=[0.286], std=[0.353])
    return model.eval(), folder, manifest


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_full_graph_gives_every_exit_like_pytorch(exported):
    model, folder, manifest = exported
    x = torch.randn(5, 1, 28, 28)  # another batch size than the export's example: the batch axis is dynamic
    with torch.no_grad():
        expected = model(x).exit_logits
    outputs = session(folder / manifest["multi_exit"]).run(None, {"image": x.numpy()})
    assert len(outputs) == 4
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)


def test_stage_graphs_chain_to_the_same_logits_with_compaction(exported):
    model, folder, manifest = exported
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        expected = model(x).exit_logits
    stages = [session(folder / name) for name in manifest["stages"]]
    rows = np.arange(6)
    features = x.numpy()
    for k, stage in enumerate(stages):
        name = "image" if k == 0 else "features_in"
        out = stage.run(None, {name: features})
        logits = out[-1]
        np.testing.assert_allclose(logits, expected[k].numpy()[rows], rtol=1e-4, atol=1e-4)
        if k < 3:  # drop one sample per stage, as an early-exit runtime would
            keep = np.arange(1, len(rows))
            features, rows = out[0][keep], rows[keep]
    assert len(stages[-1].get_outputs()) == 1 and len(stages[0].get_outputs()) == 2


def test_manifest(exported):
    model, folder, manifest = exported
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    assert manifest["flops"] == exit_costs(model).flops and manifest["num_exits"] == 4
    assert manifest["input_shape"] == [1, 28, 28] and manifest["thresholds"] == pytest.approx([0.9, 0.8, 0.7])
    assert manifest["stages"] == [f"stage_{k}.onnx" for k in range(1, 5)]


def test_export_leaves_the_model_untouched(tmp_path):
    torch.manual_seed(1)
    model = mate.create_model("resnet18", num_classes=10, in_channels=1, width=8, input_size=28)
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        before = model.eval()(x).exit_logits
        model.train()
        export_onnx(model, tmp_path)
        assert model.training  # its mode is restored ...
        after = model.eval()(x).exit_logits
    assert all(torch.equal(a, b) for a, b in zip(before, after))  # ... and no BatchNorm statistic moved
