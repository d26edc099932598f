import json
import math
import re
from pathlib import Path

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


# ---- the manifest is strict JSON, and a damaged export folder is one clear error -------------------

def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture()
def copy_of(exported, tmp_path):
    import shutil

    return Path(shutil.copytree(exported[1], tmp_path / "export"))


def test_infinite_thresholds_are_written_as_strict_json_and_read_back(exported, tmp_path):
    from mate.inference import OnnxEarlyExitPredictor

    model, _, _ = exported
    export_onnx(model, tmp_path, thresholds=[float("inf"), 0.8, 0.7], score="max_prob", mean=[0.286], std=[0.353])
    manifest = strict_json((tmp_path / "manifest.json").read_text())
    assert manifest["thresholds"] == ["inf", 0.8, 0.7]
    assert OnnxEarlyExitPredictor(tmp_path).thresholds.tolist() == [math.inf, pytest.approx(0.8), pytest.approx(0.7),
                                                                    -math.inf]


def test_a_manifest_written_with_infinity_by_an_earlier_version_is_read(copy_of):
    from mate.inference import OnnxEarlyExitPredictor

    text = (copy_of / "manifest.json").read_text().replace("0.9,", "Infinity,", 1)
    (copy_of / "manifest.json").write_text(text)
    assert OnnxEarlyExitPredictor(copy_of).thresholds[:2].tolist() == [math.inf, pytest.approx(0.8)]


def test_stage_paths_outside_the_export_folder_are_refused(copy_of):
    from mate.errors import MateError
    from mate.inference import OnnxEarlyExitPredictor

    manifest = json.loads((copy_of / "manifest.json").read_text())
    (copy_of.parent / "stage_2.onnx").write_bytes((copy_of / "stage_2.onnx").read_bytes())
    for name in ("../stage_2.onnx", str(copy_of.parent / "stage_2.onnx")):
        manifest["stages"][1] = name
        (copy_of / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(MateError, match=rf"^{copy_of}/manifest.json names the stage file {re.escape(name)}, "
                                            r"which is not inside the export folder; export the model again"):
            OnnxEarlyExitPredictor(copy_of)


def test_a_corrupt_stage_file_is_one_clear_error(copy_of):
    from mate.errors import MateError
    from mate.inference import OnnxEarlyExitPredictor

    (copy_of / "stage_3.onnx").write_bytes(b"not a graph")
    with pytest.raises(MateError, match=rf"^cannot load {copy_of}/stage_3.onnx: the file is damaged or not an ONNX "
                                        r"graph \(.+\); export the model again$"):
        OnnxEarlyExitPredictor(copy_of)


@pytest.mark.parametrize("change, message", [
    ({"input_shape": [1, 32, 32]}, "manifest.json gives the input shape 1 x 32 x 32, but stage_1.onnx takes "
                                   "1 x 28 x 28"),
    ({"num_exits": 3}, "manifest.json gives 3 exits but lists 4 stage files and 4 costs"),
    ({"flops": None}, "manifest.json has no valid 'flops'"),
    ({"stages": ["stage_1.onnx", "stage_3.onnx", "stage_2.onnx", "stage_4.onnx"]},
     "manifest.json lists stages that do not chain: stage_1.onnx gives 8 x 28 x 28, stage_3.onnx takes 16 x 14 x 14"),
])
def test_a_manifest_that_disagrees_with_its_graphs_is_one_clear_error(copy_of, change, message):
    from mate.errors import MateError
    from mate.inference import OnnxEarlyExitPredictor

    manifest = json.loads((copy_of / "manifest.json").read_text())
    manifest.update(change)
    (copy_of / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MateError, match="^" + re.escape(f"{copy_of}/{message}")):
        OnnxEarlyExitPredictor(copy_of)


def test_the_command_line_reports_a_damaged_export_in_one_line(copy_of, tmp_path, capsys):
    from PIL import Image

    from mate.cli import main

    (tmp_path / "imgs").mkdir()
    Image.new("L", (28, 28)).save(tmp_path / "imgs" / "a.png")
    (copy_of / "stage_2.onnx").write_bytes(b"\0" * 10)
    assert main(["predict", str(copy_of), "--images", str(tmp_path / "imgs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"mate: error: cannot load {copy_of}/stage_2.onnx")
