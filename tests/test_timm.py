"""Exits on timm backbones (a CNN and a vision transformer), pretrained weights from files, and a
smaller learning rate for a pretrained backbone. Every model is small and randomly initialised;
a "pretrained" file is a state dict the test saves itself, and nothing is downloaded."""
import json
import math
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

import mate
from fake_layouts import make_image_folder
from mate import EarlyExitPredictor, prepare_for_inference
from mate.cli import main
from mate.config import load_config
from mate.engine import Trainer, load_checkpoint, load_trained, train
from mate.errors import ConfigError, MateError
from mate.evaluation import exit_costs, exit_decisions, exit_scores

timm = pytest.importorskip("timm")

VIT = "vit_tiny_patch16_224"
VIT_KWARGS = dict(patch_size=8, embed_dim=32, depth=4, num_heads=2)  # 32 pixels: 16 patches + the class token
VIT_OVERRIDE = "model.timm_kwargs={patch_size: 8, embed_dim: 32, depth: 4, num_heads: 2}"


def cnn(**options):
    return mate.create_model("timm", backbone="resnet10t", num_classes=5, input_size=32, **options)


def vit(**options):
    return mate.create_model("timm", backbone=VIT, num_classes=5, input_size=32, timm_kwargs=VIT_KWARGS, **options)


def timm_vit(img_size=32, **kwargs):
    return timm.create_model(VIT, num_classes=5, img_size=img_size, **{**VIT_KWARGS, **kwargs})


def saved(tmp_path, module, name="weights.pth"):
    path = tmp_path / name
    torch.save(module.state_dict(), path)
    return str(path)


def block_outputs(net, x):
    h, out = net.stem(x), []
    for block in net.stages:
        h = block(h)
        out.append(h)
    return out


# -- the networks ---------------------------------------------------------------------------------

@torch.no_grad()
def test_cnn_stages_end_at_timms_feature_levels(tmp_path):
    torch.manual_seed(0)
    reference = timm.create_model("resnet10t").eval()  # an ImageNet-shaped file: 1000 classes
    path = saved(tmp_path, reference)
    levels = timm.models.FeatureListNet(reference, out_indices=range(5))  # timm's features_only, same modules
    x = torch.randn(3, 3, 32, 32)
    expected = levels(x)

    net = cnn(pretrained=path).eval()
    assert net.stage_shapes == [(64, 16, 16), (64, 8, 8), (128, 4, 4), (256, 2, 2), (512, 1, 1)]
    assert net.num_exits == 5 and net.feature_dim == 512 and isinstance(net.stem, torch.nn.Identity)
    assert all(torch.equal(a, b) for a, b in zip(block_outputs(net, x), expected))

    some = cnn(pretrained=path, exit_levels=[3, 5]).eval()  # blocks grouped: exits after levels 3 and 5
    assert some.num_exits == 2 and some.stage_shapes == [(128, 4, 4), (512, 1, 1)]
    got = block_outputs(some, x)
    assert torch.equal(got[0], expected[2]) and torch.equal(got[1], expected[4])
    assert [type(e).__name__ for e in some.exits] == ["ResizeExit", "HeadExit"]


@torch.no_grad()
def test_a_3_channel_file_fills_a_1_channel_first_convolution(tmp_path):
    torch.manual_seed(0)
    reference = timm.create_model("resnet10t")
    net = mate.create_model("timm", backbone="resnet10t", num_classes=5, in_channels=1, input_size=32,
                            pretrained=saved(tmp_path, reference))
    first = net.stages[0].conv1[0].weight
    assert first.shape == (24, 1, 3, 3)
    assert torch.equal(first, reference.conv1[0].weight.sum(dim=1, keepdim=True))  # timm's adapt_input_conv


@torch.no_grad()
def test_vit_blocks_are_timms_and_the_last_exit_is_its_head(tmp_path):
    torch.manual_seed(0)
    reference = timm_vit().eval()
    net = vit(pretrained=saved(tmp_path, reference)).eval()
    assert net.num_exits == 4 and net.feature_dim == 32 and net.stage_shapes == [(17, 32)] * 4
    x = torch.randn(3, 3, 32, 32)
    blocks = block_outputs(net, x)
    # timm's intermediate-features API: every block's tokens (prefix and patch tokens apart)
    intermediates = reference.forward_intermediates(x, output_fmt="NLC", return_prefix_tokens=True,
                                                    intermediates_only=True)
    for got, (patches, prefix) in zip(blocks, intermediates):
        assert torch.equal(got, torch.cat([prefix, patches], dim=1))
    out = net(x)
    pre_logits = reference.forward_head(reference.forward_features(x), pre_logits=True)
    assert torch.equal(out.exit_features[-1], pre_logits)  # the model's own final norm and pooling
    assert not torch.equal(net.exits[-1].fc.weight, reference.head.weight)  # the classifier is not loaded
    net.exits[-1].fc.load_state_dict(reference.head.state_dict())
    assert torch.equal(net(x).exit_logits[-1], reference(x))
    # the other exits are norm -> class token -> Linear, initialised anew
    assert [type(e.norm).__name__ for e in net.exits] == ["LayerNorm"] * 4
    assert torch.equal(net.exits[0].norm.weight, torch.ones(32)) and net.exits[0].pool == "token"


@torch.no_grad()
def test_vit_exit_levels_are_block_numbers_and_mean_pooling_follows_timm():
    torch.manual_seed(0)
    net = mate.create_model("timm", backbone=VIT, num_classes=5, input_size=32, exit_levels=[1, 3],
                            timm_kwargs={**VIT_KWARGS, "global_pool": "avg"}).eval()
    assert net.num_exits == 3 and net.exit_stages == [1, 3, 4]
    assert [len(list(stage.children())) if isinstance(stage, torch.nn.Sequential) else 1
            for stage in net.stages] == [1, 2, 1]
    x = torch.randn(2, 3, 32, 32)
    tokens = block_outputs(net, x)[0]
    exit_ = net.exits[0]
    expected = exit_.fc_norm(exit_.norm(tokens)[:, 1:].mean(dim=1))  # the patch tokens' mean
    assert torch.equal(net(x).exit_features[0], expected)


def test_vit_flops_count_attention_exactly():
    """FLOPs = 2 x MACs: patch embedding, then per block qkv, Q K^T, attention x V, proj, MLP, and a
    Linear per exit (PyTorch's counter misses the CPU attention kernel; mate counts it)."""
    net = vit()
    n, d, c = 17, 32, 5
    stem = 2 * (3 * 8 * 8) * d * 16
    block = 2 * n * d * 3 * d + 2 * n * n * d + 2 * n * n * d + 2 * n * d * d + 2 * n * d * 4 * d * 2
    costs = exit_costs(net)
    assert costs.flops == [stem + k * (block + 2 * d * c) for k in range(1, 5)]
    assert costs.params[-1] == sum(p.numel() for p in net.parameters())


# -- training, early exit, deployment ----------------------------------------------------------------

def timm_config(out, root, backbone, *extra):
    return load_config(None, [
        "data.name=image_folder", f"data.root={root}", "data.image_size=32", "data.num_workers=0",
        "data.batch_size=6", "data.eval_batch_size=6", "data.download=false", "model.name=timm",
        f"model.backbone={backbone}", "objective.name=mate", "optim.epochs=2", "optim.lr=0.05",
        "run.progress=false", "run.tensorboard=false", f"run.out_dir={out}", *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """MATE trained for 2 epochs of 3 steps on a timm CNN (from a pretrained file, its backbone at a
    tenth of the learning rate) and on a ViT (exits after blocks 2, 3 and 4)."""
    root = make_image_folder(tmp_path_factory.mktemp("images"), test=True)
    out = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    weights = saved(out, timm.create_model("resnet10t"), "resnet10t.pth")
    configs = {
        "cnn": timm_config(out, root, "resnet10t", "run.name=cnn", f"model.pretrained={weights}",
                           "optim.backbone_lr_scale=0.1"),
        "vit": timm_config(out, root, VIT, "run.name=vit", VIT_OVERRIDE, "model.exit_levels=[2, 3]"),
    }
    results = {name: train(config, log=lambda line: None) for name, config in configs.items()}
    Path(weights).unlink()  # the runs' checkpoints no longer need the pretrained file
    return {"root": root, "out": out, "weights": weights, "configs": configs, "results": results}


@pytest.mark.parametrize("name,num_exits", [("cnn", 5), ("vit", 3)])
def test_mate_trains_on_timm_backbones(runs, name, num_exits):
    results = runs["results"][name]
    assert len(results["test"]["exit_acc"]) == num_exits and results["test"]["n"] == 6
    record = json.loads((Path(results["run_dir"]) / "metrics.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(record["train"]["loss"])
    assert len(record["train"]["attention"]) == num_exits  # MATE's teachers over every exit
    groups = load_checkpoint(Path(results["run_dir"]) / "last.pt")["optimizer"]["param_groups"]
    if name == "cnn":  # exits and objective at lr, the pretrained backbone at lr x 0.1
        assert [g["initial_lr"] for g in groups] == [0.05, 0.05 * 0.1]
    else:
        assert [g["initial_lr"] for g in groups] == [0.05]


def thresholds_between_scores(scores):
    """Per exit, a threshold in the widest gap between two scores of the middle half, so that
    float rounding of a compacted batch cannot move a score across it."""
    out = []
    for s in scores[:-1]:
        v = s.sort().values
        n = len(v)
        gaps = v[n // 4 + 1: 3 * n // 4] - v[n // 4: 3 * n // 4 - 1]
        i = n // 4 + int(gaps.argmax())
        out.append(float((v[i] + v[i + 1]) / 2))
    return out


def assert_predictor_equals_offline_simulation(model, x):
    with torch.no_grad():
        logits = torch.stack(model(x).exit_logits)  # K x N x C, the whole batch at once
    scores = exit_scores(logits, "max_prob")
    thresholds = thresholds_between_scores(scores)
    exits = exit_decisions(scores, torch.tensor([*thresholds, -math.inf]))
    predictions = logits[exits, torch.arange(len(x))].argmax(-1)
    result = EarlyExitPredictor(model, thresholds=thresholds)(x)
    assert torch.equal(result.exits, exits)
    assert torch.equal(result.predictions, predictions)
    assert len(set(exits.tolist())) >= 3  # samples leave at several exits, so compaction is exercised
    return thresholds


@pytest.mark.parametrize("name", ["cnn", "vit"])
def test_early_exit_predictor_equals_the_offline_simulation(runs, name):
    model = load_trained(Path(runs["results"][name]["run_dir"]) / "best.pt").model  # pretrained file gone
    torch.manual_seed(1)
    assert_predictor_equals_offline_simulation(model, torch.randn(40, 3, 32, 32))


def test_prepared_timm_cnn_folds_batchnorm_and_still_equals_its_simulation(runs):
    model = load_trained(Path(runs["results"]["cnn"]["run_dir"]) / "best.pt").model
    prepared = prepare_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in prepared.modules())
    torch.manual_seed(2)
    x = torch.randn(40, 3, 32, 32)
    with torch.no_grad():
        for a, b in zip(model(x).exit_logits, prepared(x).exit_logits):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert_predictor_equals_offline_simulation(prepared, x)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # timm's input-size asserts, traced as constants
@pytest.mark.parametrize("name", ["cnn", "vit"])
def test_onnx_export_runs_the_same_in_onnx_runtime(runs, name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from mate.inference import OnnxEarlyExitPredictor, export_onnx

    model = load_trained(Path(runs["results"][name]["run_dir"]) / "best.pt").model
    torch.manual_seed(3)
    x = torch.randn(40, 3, 32, 32)
    with torch.no_grad():
        expected = model(x).exit_logits
    thresholds = thresholds_between_scores(exit_scores(torch.stack(expected), "max_prob"))
    manifest = export_onnx(model, tmp_path, thresholds=thresholds, score="max_prob")
    assert manifest["flops"] == exit_costs(model).flops
    full = ort.InferenceSession(str(tmp_path / "multi_exit.onnx"), providers=["CPUExecutionProvider"])
    for got, want in zip(full.run(None, {"image": x.numpy()}), expected):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-5)
    predictor = OnnxEarlyExitPredictor(tmp_path)
    result = predictor(x.numpy())
    offline = predictor.offline_exits(predictor.stage_logits(x.numpy()))
    np.testing.assert_array_equal(result.exits, offline.exits)
    np.testing.assert_array_equal(result.predictions, offline.predictions)
    assert len(set(result.exits.tolist())) >= 3


@pytest.mark.parametrize("name", ["cnn", "vit"])
def test_mate_flops_reads_a_timm_config(runs, name, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(runs["configs"][name].to_dict()))  # JSON is YAML; the CNN's weights file is gone
    assert main(["flops", str(config), "--json"]) == 0
    flops = json.loads(capsys.readouterr().out)["flops"]
    model = load_trained(Path(runs["results"][name]["run_dir"]) / "best.pt").model
    assert flops == exit_costs(model).flops and len(flops) == model.num_exits


def test_a_mate_checkpoint_is_a_pretrained_backbone(runs):
    checkpoint = Path(runs["results"]["vit"]["run_dir"]) / "best.pt"
    saved_state = load_checkpoint(checkpoint)["model"]
    net = vit(exit_levels=[2, 3], pretrained=str(checkpoint))
    own = net.state_dict()
    backbone = [k for k in own if k.startswith(("stem.", "stages."))]
    assert backbone and all(torch.equal(own[k], saved_state[k]) for k in backbone)
    assert not torch.equal(own["exits.0.fc.weight"], saved_state["exits.0.fc.weight"])  # exits start anew
    with pytest.raises(ConfigError, match=r"does not fit the backbone of timm 'vit_tiny_patch16_224':\n"
                                          r"  24 keys missing from the file: stages.0.norm1.weight, .*\n"
                                          r"  24 keys unexpected in the file: stages.0.0.norm1.weight, "):
        vit(pretrained=str(checkpoint))  # other exit levels: blocks 1 and 2 were one stage, here they are two


def test_exact_resume_keeps_the_backbone_learning_rate(runs, tmp_path):
    def config(name, epochs):
        return timm_config(tmp_path, runs["root"], "resnet10t", f"run.name={name}", "model.exit_levels=[4, 5]",
                           "optim.backbone_lr_scale=0.5", f"optim.epochs={epochs}")

    full = train(config("full", 2), log=lambda line: None)
    train(config("resumed", 1), log=lambda line: None)
    resumed = train(config("resumed", 2), resume=True, log=lambda line: None)
    a = load_checkpoint(Path(full["run_dir"]) / "last.pt")
    b = load_checkpoint(Path(resumed["run_dir"]) / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [g["lr"] for g in b["optimizer"]["param_groups"]] == [g["lr"] for g in a["optimizer"]["param_groups"]]
    changed = timm_config(tmp_path, runs["root"], "resnet10t", "run.name=resumed", "model.exit_levels=[4, 5]",
                          "optim.backbone_lr_scale=0.25", "optim.epochs=3")
    with pytest.raises(ConfigError, match=r"cannot apply a new optim.backbone_lr_scale"):
        Trainer(changed, resume=True, log=lambda line: None)


# -- pretrained files: what does not fit is named -------------------------------------------------

def test_a_wrong_state_dict_names_every_misfit(tmp_path):
    torch.manual_seed(0)
    state = timm.create_model("resnet10t").state_dict()
    del state["layer4.0.bn2.bias"]
    state["extra.weight"] = torch.zeros(3)
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(ConfigError) as error:
        cnn(pretrained=str(path))
    assert str(error.value) == (
        f"model.pretrained={path} does not fit timm 'resnet10t':\n"
        "  1 key missing from the file: layer4.0.bn2.bias\n"
        "  1 key unexpected in the file: extra.weight\n"
        "  1 key of another shape: layer1.0.conv1.weight (file 64x64x1x1, model 64x64x3x3)\n"
        "Pass the state dict of a timm 'resnet10t' (timm.create_model('resnet10t').state_dict(), the same "
        "model.timm_kwargs), or a mate checkpoint of this model.")


def test_another_architectures_weights_are_refused(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match=r"does not fit timm 'vit_tiny_patch16_224':\n.*"
                                          r"keys of another shape: cls_token \(file 1x1x64, model 1x1x32\)"):
        vit(pretrained=saved(tmp_path, timm_vit(embed_dim=64)))
    with pytest.raises(ConfigError, match=r"\n  64 keys unexpected in the file: conv1.weight, layer1.1.conv1.weight"):
        cnn(pretrained=saved(tmp_path, timm.create_model("resnet18")))


@torch.no_grad()
def test_a_vit_file_of_another_input_size_is_resampled_as_timm_does(tmp_path):
    torch.manual_seed(0)
    reference = timm_vit(img_size=64)  # 8 x 8 patches
    net = vit(pretrained=saved(tmp_path, reference))  # 4 x 4 patches
    expected = timm.layers.resample_abs_pos_embed(reference.pos_embed, new_size=(4, 4), num_prefix_tokens=1)
    assert torch.equal(net.stem.vit.pos_embed, expected)
    assert torch.equal(net.stages[0].attn.qkv.weight, reference.blocks[0].attn.qkv.weight)


@torch.no_grad()
def test_safetensors_and_wrapped_state_dicts_load(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    state = timm.create_model("resnet10t").state_dict()
    safetensors.save_file(state, tmp_path / "model.safetensors")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "train.pth")
    for name in ("model.safetensors", "train.pth"):  # timm's training script wraps a DDP model's state dict
        net = cnn(pretrained=str(tmp_path / name))
        assert torch.equal(net.stages[4].layer4[0].conv2.weight, state["layer4.0.conv2.weight"])


def test_files_that_are_not_weights_are_named(tmp_path):
    with pytest.raises(ConfigError, match="model.pretrained=.*nothing.pth: no such file"):
        cnn(pretrained=str(tmp_path / "nothing.pth"))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ConfigError, match="list.pth is not a state dict"):
        cnn(pretrained=str(tmp_path / "list.pth"))
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="text.pth cannot be read as weights"):
        cnn(pretrained=str(tmp_path / "text.pth"))


def test_pretrained_true_offline_asks_for_a_file(tmp_path, monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # fails at once, whatever the network
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    with pytest.raises(ConfigError, match=r"model.pretrained=true: timm could not get its pretrained weights for "
                                          r"'resnet10t' \(.*\)\. Without internet access, .* pass the file instead: "
                                          r"model.pretrained=/path/to/weights.pth"):
        cnn(pretrained=True)


def test_a_trained_run_no_longer_needs_its_pretrained_file(runs):
    config = runs["configs"]["cnn"]
    assert config.model["pretrained"] == runs["weights"] and not Path(runs["weights"]).exists()
    with pytest.raises(ConfigError, match="no such file"):
        mate.create_model("timm", num_classes=3, input_size=32, **config.model_options())
    trained = load_trained(Path(runs["results"]["cnn"]["run_dir"]) / "best.pt")  # the checkpoint's weights
    assert trained.model.num_exits == 5


# -- torchvision's ImageNet ResNets ---------------------------------------------------------------

@torch.no_grad()
def test_imagenet_resnet_takes_a_torchvision_state_dict(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18().eval()
    path = saved(tmp_path, reference)
    net = mate.create_model("imagenet_resnet18", num_classes=5, input_size=64, pretrained=path).eval()
    x = torch.randn(2, 3, 64, 64)
    h, r = net.stem(x), reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
    assert torch.equal(h, r)
    for block, layer in zip(net.stages, [reference.layer1, reference.layer2, reference.layer3, reference.layer4]):
        h, r = block(h), layer(r)
        assert torch.equal(h, r)
    assert not torch.equal(net.exits[-1].fc.weight[:5], reference.fc.weight[:5])  # fc is not loaded
    with pytest.raises(ConfigError, match=r"does not fit torchvision's resnet18:\n  \d+ keys of another shape: "
                                          r"conv1.weight \(file 64x3x7x7, model 32x3x7x7\)"):
        mate.create_model("imagenet_resnet18", num_classes=5, input_size=64, width=32, pretrained=path)


def test_imagenet_resnet_pretrained_true_offline_asks_for_a_file(monkeypatch):
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    with pytest.raises(ConfigError, match=r"torchvision could not get its pretrained weights for resnet18 "
                                          r"\(URLError: .*\)\. Without internet access"):
        mate.create_model("imagenet_resnet18", num_classes=5, input_size=64, pretrained=True)


# -- options ----------------------------------------------------------------------------------------

def test_parameter_groups_put_the_backbone_at_a_scaled_learning_rate():
    torch.manual_seed(0)
    net = cnn(exit_levels=[4, 5])
    extra = [torch.nn.Parameter(torch.zeros(2))]
    one = net.parameter_groups(0.1, 1.0, extra)
    assert len(one) == 1 and one[0]["lr"] == 0.1 and one[0]["params"] == [*net.parameters(), *extra]
    head, backbone = net.parameter_groups(0.1, 0.25, extra)
    assert head["lr"] == 0.1 and backbone["lr"] == 0.1 * 0.25
    assert backbone["params"] == [*net.stages.parameters()]  # the stem is empty for a timm CNN
    assert head["params"] == [*net.exits.parameters(), *extra]
    vit_net = vit()
    assert {id(p) for p in vit_net.backbone_parameters()} == {
        id(p) for p in [*vit_net.stem.parameters(), *vit_net.stages.parameters()]}


def test_option_errors_are_clear(runs, tmp_path):
    with pytest.raises(ConfigError, match="model.name=timm needs model.backbone="):
        mate.create_model("timm", num_classes=5)
    with pytest.raises(ConfigError, match="'resnet10x' is not a timm model; close names: .*resnet10t"):
        mate.create_model("timm", backbone="resnet10x", num_classes=5)
    with pytest.raises(ConfigError, match="model.timm_kwargs cannot set img_size, num_classes"):
        cnn(timm_kwargs={"num_classes": 3, "img_size": 64})
    with pytest.raises(ConfigError, match=r"model.exit_levels must be level numbers in 1..4 .*got \[0, 2\]"):
        vit(exit_levels=[0, 2])
    with pytest.raises(ConfigError, match="global_pool='map'"):
        mate.create_model("timm", backbone=VIT, num_classes=5, input_size=32,
                          timm_kwargs={**VIT_KWARGS, "global_pool": "map"})
    with pytest.raises(ConfigError, match=r"^config key 'optim.backbone_lr_scale' must be > 0, got 0.0$"):
        timm_config(tmp_path, runs["root"], "resnet10t", "optim.backbone_lr_scale=0")
    with pytest.raises(ConfigError, match="config key 'model.pretrained' must be"):
        load_config(None, ["model.name=timm", "model.backbone=resnet10t", "model.pretrained=3"])


def test_without_timm_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(MateError, match=r"pip install 'mate-distill\[timm\]'"):
        cnn()
