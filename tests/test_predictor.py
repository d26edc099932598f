"""The early-exit predictor against the offline simulation, on a model trained on the suite's Fashion-MNIST."""
import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mate import EarlyExitPredictor, prepare_for_inference
from mate.cli import main
from mate.engine import load_trained
from mate.errors import ConfigError, MateError
from mate.evaluation import (budget_curve, calibrate_thresholds, collect_exit_logits, exit_scores, geometric_shares,
                             simulate)


@pytest.fixture(scope="module")
def trained(tiny_run):
    checkpoint = Path(tiny_run("mate")["run_dir"]) / "best.pt"  # evaluation batches of 250
    t = load_trained(checkpoint)
    t.val_logits = collect_exit_logits(t.model, t.data.val)
    t.test_logits = collect_exit_logits(t.model, t.data.test)
    t.checkpoint = checkpoint
    return t


def run_predictor(predictor, loader):
    preds, exits, flops = [], [], []
    for x, _ in loader:
        r = predictor(x)
        preds.append(r.predictions), exits.append(r.exits), flops.append(r.flops)
    return torch.cat(preds), torch.cat(exits), torch.cat(flops)


@pytest.mark.parametrize("score", ["max_prob", "neg_entropy", "patience"])
def test_predictor_equals_the_offline_simulation(trained, score):
    val, test = trained.val_logits, trained.test_logits
    predictor_costs = None
    used_exits = set()
    for q in (0.5, 1.0, 1.5):
        thresholds = calibrate_thresholds(exit_scores(val.logits, score), geometric_shares(q, 4))
        predictor = EarlyExitPredictor(trained.model, thresholds=thresholds[:-1], score=score, costs=predictor_costs)
        predictor_costs = predictor.costs
        sim = simulate(test, exit_scores(test.logits, score), thresholds, predictor.costs.flops)
        preds, exits, flops = run_predictor(predictor, trained.data.test)
        assert torch.equal(exits, sim.exits)
        assert torch.equal(preds, sim.predictions)
        assert torch.equal(flops, sim.flops)
        used_exits |= set(exits.tolist())
    assert used_exits == {0, 1, 2, 3}  # the check covers samples leaving at every exit


@pytest.mark.parametrize("score", ["max_prob", "patience"])
def test_prepared_nhwc_model_equals_its_offline_simulation(trained, score):
    """BatchNorm folded, NHWC weights, NCHW inputs: compaction keeps the feature maps NHWC and the
    decisions are still exactly the simulation's on the prepared model's own logits."""
    prepared = prepare_for_inference(trained.model)
    stem_conv = next(m for m in prepared.stem.modules() if isinstance(m, torch.nn.Conv2d))
    assert stem_conv.weight.is_contiguous(memory_format=torch.channels_last) and stem_conv.bias is not None
    with torch.inference_mode():
        val = collect_exit_logits(prepared, trained.data.val)
        test = collect_exit_logits(prepared, trained.data.test)
    torch.testing.assert_close(test.logits, trained.test_logits.logits, rtol=1e-4, atol=1e-4)
    thresholds = calibrate_thresholds(exit_scores(val.logits, score), geometric_shares(1.0, 4))
    predictor = EarlyExitPredictor(prepared, thresholds=thresholds[:-1], score=score)
    sim = simulate(test, exit_scores(test.logits, score), thresholds, predictor.costs.flops)
    seen_formats = []
    stage = prepared.stages[1]
    hook = stage.register_forward_pre_hook(lambda m, inp: seen_formats.append(
        inp[0].is_contiguous(memory_format=torch.channels_last)))
    try:
        preds, exits, _ = run_predictor(predictor, trained.data.test)
    finally:
        hook.remove()
    assert torch.equal(exits, sim.exits) and torch.equal(preds, sim.predictions)
    assert set(exits.tolist()) == {0, 1, 2, 3}
    assert seen_formats and all(seen_formats)  # compacted batches stay NHWC


def test_samples_exactly_at_a_threshold_exit_in_both(trained):
    """Thresholds calibrated on the test logits themselves: each T_k is some test sample's own score,
    so those samples sit exactly on the tie and must pass in the predictor too."""
    test = trained.test_logits
    scores = exit_scores(test.logits, "max_prob")
    thresholds = calibrate_thresholds(scores, geometric_shares(1.0, 4))
    on_threshold = (scores[:3] == thresholds[:3, None]).any(0)
    assert on_threshold.sum() >= 3
    predictor = EarlyExitPredictor(trained.model, thresholds=thresholds[:-1])
    sim = simulate(test, scores, thresholds, predictor.costs.flops)
    preds, exits, _ = run_predictor(predictor, trained.data.test)
    assert torch.equal(exits, sim.exits) and torch.equal(preds, sim.predictions)


def test_single_samples_and_lone_survivors_match(trained):
    """A batch of one, and batches where one sample is left after an exit, run as batches of two."""
    test = trained.test_logits
    scores = exit_scores(test.logits, "max_prob")
    x, _ = next(iter(trained.data.test))
    n = 40
    thresholds = calibrate_thresholds(scores[:, :n], [0.3, 0.3, 0.3, 0.1])
    # Calibration puts each threshold exactly on a sample's score. A batch of one runs other conv
    # kernels than the batch of 250 the reference logits came from, and on some CPUs their last-bit
    # rounding differs, which can flip that tied sample. Move each finite threshold halfway down to the
    # next lower score: the same samples exit, and no score sits within rounding of a threshold.
    for k in range(len(thresholds) - 1):
        below = scores[k, :n][scores[k, :n] < thresholds[k]]
        if torch.isfinite(thresholds[k]) and below.numel():
            thresholds[k] = (thresholds[k] + below.max()) / 2
    predictor = EarlyExitPredictor(trained.model, thresholds=thresholds[:-1])
    sim = simulate(type(test)(test.logits[:, :n], test.labels[:n]), scores[:, :n], thresholds, predictor.costs.flops)
    for i in range(n):
        r = predictor(x[i:i + 1])
        assert (r.exits.item(), r.predictions.item()) == (sim.exits[i].item(), sim.predictions[i].item())
    late = (sim.exits == 3).nonzero().squeeze(1)
    assert late.numel() >= 1
    pair = torch.cat([late[:1], (sim.exits == 0).nonzero().squeeze(1)[:1]])  # one leaves at exit 1, one goes on
    r = predictor(x[pair])
    assert r.exits.tolist() == sim.exits[pair].tolist() and r.predictions.tolist() == sim.predictions[pair].tolist()


def test_extreme_thresholds_and_cost(trained):
    x, _ = next(iter(trained.data.test))
    logits = trained.model(x).exit_logits
    never = EarlyExitPredictor(trained.model, thresholds=math.inf)
    r = never(x)
    assert r.exits.eq(3).all() and torch.equal(r.predictions, logits[3].argmax(1))
    assert r.total_flops == never.costs.flops[3] * len(x)
    always = EarlyExitPredictor(trained.model, thresholds=-math.inf)
    r = always(x)
    assert r.exits.eq(0).all() and torch.equal(r.predictions, logits[0].argmax(1))
    assert r.mean_flops == always.costs.flops[0]


def test_budget_mode_picks_the_validation_operating_point(trained):
    flops = EarlyExitPredictor(trained.model, thresholds=0.5).costs.flops
    budget = 0.6 * flops[-1]
    predictor = EarlyExitPredictor(trained.model, budget_flops=budget, calibration=trained.val_logits)
    curve = budget_curve(trained.val_logits, trained.test_logits, flops)
    chosen = next(p for p in curve if p.q == predictor.q)
    assert chosen.val_avg_flops <= budget
    assert chosen.val_accuracy == max(p.val_accuracy for p in curve if p.val_avg_flops <= budget)
    assert predictor.thresholds.tolist()[:3] == pytest.approx(chosen.thresholds[:3])
    _, _, spent = run_predictor(predictor, trained.data.test)
    assert spent.mean().item() == pytest.approx(chosen.avg_flops)


def test_wrong_arguments_are_clear_errors(trained):
    with pytest.raises(ConfigError, match="either thresholds or a budget"):
        EarlyExitPredictor(trained.model)
    with pytest.raises(ConfigError, match="give 1 or 3 thresholds"):
        EarlyExitPredictor(trained.model, thresholds=[0.9, 0.8])
    with pytest.raises(ConfigError, match="needs calibration logits"):
        EarlyExitPredictor(trained.model, budget_flops=1e6)
    with pytest.raises(MateError, match="Raise --budget"):
        EarlyExitPredictor(trained.model, budget_flops=1.0, calibration=trained.val_logits)


def test_budget_command_plots_several_checkpoints(trained, tmp_path, capsys):
    ckpt = str(trained.checkpoint)
    last = str(trained.checkpoint.parent / "last.pt")
    assert main(["budget", ckpt, last, "--score", "max_prob", "patience", "--out", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "| exit 4 |" in text and "| ensemble |" in text
    assert "| exit | MFLOPs | MMACs | test acc (%) |" in text  # the costs in both units
    assert "| q | avg MFLOPs | avg MMACs | test acc (%) | exit shares |" in text
    rows = list(csv.DictReader((tmp_path / "budget.csv").open()))
    assert len(rows) == 2 * 2 * 39
    assert {r["label"] for r in rows} == {"tiny", "tiny/last"}
    expected = budget_curve(trained.val_logits, trained.test_logits,
                            EarlyExitPredictor(trained.model, thresholds=0.5).costs.flops)
    mine = [r for r in rows if r["label"] == "tiny" and r["score"] == "max_prob"]
    assert [r["test_acc"] for r in mine] == [f"{p.accuracy:.2f}" for p in expected]
    assert (tmp_path / "budget.png").read_bytes()[:4] == b"\x89PNG"
    assert len((tmp_path / "anytime.csv").read_text().splitlines()) == 1 + 2 * 5


def test_predict_command_on_a_split_matches_the_predictor(trained, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert main(["predict", str(trained.checkpoint), "--threshold", "0.9", "--split", "test", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    # the command runs the prepared (folded, NHWC) network, as a deployment would
    predictor = EarlyExitPredictor(prepare_for_inference(trained.model), thresholds=0.9)
    preds, exits, flops = run_predictor(predictor, trained.data.test)
    acc = (preds == trained.test_logits.labels).float().mean().item() * 100
    assert f"accuracy {acc:.2f}%" in text
    rows = list(csv.DictReader(out.open()))
    assert [int(r["exit"]) - 1 for r in rows] == exits.tolist()
    assert [int(r["prediction"]) for r in rows] == preds.tolist()
    # --batch-size cuts the split's batches: the same samples, run 37 at a time
    calls = []
    real_call = EarlyExitPredictor.__call__

    def counting(self, x):
        calls.append(len(x))
        return real_call(self, x)

    EarlyExitPredictor.__call__ = counting
    try:
        assert main(["predict", str(trained.checkpoint), "--threshold", "0.9", "--split", "test",
                     "--batch-size", "37"]) == 0
    finally:
        EarlyExitPredictor.__call__ = real_call
    assert max(calls) == 37 and sum(calls) == len(trained.test_logits.labels)
    assert f"accuracy {acc:.2f}%" in capsys.readouterr().out
    assert main(["predict", str(trained.checkpoint), "--budget", "0.01"]) == 2
    assert "Raise --budget" in capsys.readouterr().err
    # --as-trained runs the checkpoint's network unchanged
    assert main(["predict", str(trained.checkpoint), "--threshold", "0.9", "--as-trained", "--out", str(out)]) == 0
    _, exits, _ = run_predictor(EarlyExitPredictor(trained.model, thresholds=0.9), trained.data.test)
    assert [int(r["exit"]) - 1 for r in csv.DictReader(out.open())] == exits.tolist()


def test_predict_command_on_a_folder_of_images(trained, tmp_path, capsys):
    from PIL import Image

    images = trained.data.splits.test.images[:5, 0].numpy()
    for i, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / f"img_{i}.png")
    Image.fromarray(np.pad(images[0], 4)).convert("RGB").save(tmp_path / "big_rgb.jpg", quality=100)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(trained.checkpoint), "--threshold", "0.9", "--images", str(tmp_path),
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["image"].rsplit("/", 1)[-1] for r in rows] == ["big_rgb.jpg"] + [f"img_{i}.png" for i in range(5)]
    # the PNGs are the first test images: the same outcome as the predictor on the loader's tensors
    x, _ = next(iter(trained.data.test))
    r = EarlyExitPredictor(prepare_for_inference(trained.model), thresholds=0.9)(x[:5])
    assert [int(row["prediction"]) for row in rows[1:]] == r.predictions.tolist()
    assert [int(row["exit"]) - 1 for row in rows[1:]] == r.exits.tolist()
    assert rows[1]["predicted_class"] == trained.class_names()[r.predictions[0]]
    assert "img_0.png: " in capsys.readouterr().out
    assert main(["predict", str(trained.checkpoint), "--threshold", "0.9", "--images", str(tmp_path / "none")]) == 2


def test_flops_command_on_a_checkpoint(trained, capsys):
    assert main(["flops", str(trained.checkpoint), "--json"]) == 0
    assert f'"flops": {EarlyExitPredictor(trained.model, thresholds=0.5).costs.flops}'.replace("'", "") \
        in capsys.readouterr().out


# ---- the exported stage graphs, run by ONNX Runtime ----

@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("export")
    assert main(["export", str(trained.checkpoint), "--budget", "25", "--out", str(folder)]) == 0
    return folder


def _onnx_run(predictor, loader):
    results = [predictor(x.numpy()) for x, _ in loader]
    return (np.concatenate([r.predictions for r in results]), np.concatenate([r.exits for r in results]),
            np.concatenate([r.flops for r in results]))


@pytest.mark.parametrize("score", ["max_prob", "neg_entropy", "patience"])
def test_onnx_predictor_equals_its_offline_simulation(trained, exported, score):
    from mate.inference import OnnxEarlyExitPredictor
    from mate.evaluation.scores import score_step as numpy_score_step  # one score_step for NumPy and torch

    images = torch.cat([x for x, _ in trained.data.test]).numpy()
    probe = OnnxEarlyExitPredictor(exported, thresholds=math.inf, score=score)
    logits = probe.stage_logits(images)  # every stage on every row, the whole test subset in one batch
    # ONNX Runtime's logits are PyTorch's up to float rounding
    np.testing.assert_allclose(np.stack(logits), trained.test_logits.logits.numpy(), rtol=1e-4, atol=1e-4)
    # numpy_score_step computes the same scores as the PyTorch function, up to rounding
    state, tstate = None, None
    from mate.evaluation.scores import score_step
    for z in logits:
        s, state = numpy_score_step(z, score, state)
        t, tstate = score_step(torch.from_numpy(z), score, tstate)
        np.testing.assert_allclose(s, t.numpy(), rtol=1e-5, atol=1e-6)
    # thresholds sitting exactly on samples' own scores, at shares that use every exit
    scores = []
    state = None
    for z in logits:
        s, state = numpy_score_step(z, score, state)
        scores.append(s)
    thresholds = calibrate_thresholds(torch.from_numpy(np.stack(scores)), geometric_shares(1.0, 4))[:-1].numpy()
    predictor = OnnxEarlyExitPredictor(exported, thresholds=thresholds, score=score)
    sim = predictor.offline_exits(logits)
    preds, exits, flops = _onnx_run(predictor, trained.data.test)  # batches of 250, compacted per stage
    assert np.array_equal(exits, sim.exits) and np.array_equal(preds, sim.predictions)
    assert np.array_equal(flops, sim.flops)
    assert set(exits.tolist()) == {0, 1, 2, 3}
    # single samples run as two copies and agree too
    for i in np.flatnonzero(sim.exits == 3)[:2].tolist() + [0, 1]:
        r = predictor(images[i:i + 1])
        assert (r.exits[0], r.predictions[0]) == (sim.exits[i], sim.predictions[i])


def test_export_command_stores_the_budget_operating_point(trained, exported):
    import json

    from mate.inference import OnnxEarlyExitPredictor

    manifest = json.loads((exported / "manifest.json").read_text())
    expected = EarlyExitPredictor(trained.model, budget_flops=25e6, calibration=trained.val_logits)
    assert manifest["thresholds"] == pytest.approx(expected.thresholds[:-1].tolist())
    assert manifest["score"] == "max_prob" and manifest["class_names"] == trained.class_names()
    assert manifest["mean"] == pytest.approx(list(trained.data.splits.mean))
    predictor = OnnxEarlyExitPredictor(exported)  # the manifest's operating point
    _, exits, flops = _onnx_run(predictor, trained.data.test)
    _, torch_exits, torch_flops = run_predictor(expected, trained.data.test)
    # the same operating point: the two runtimes' logits differ by rounding only
    assert len(exits) == 1000 and (exits == torch_exits.numpy()).sum() >= 999  # at most one sample flips
    assert flops.mean() == pytest.approx(torch_flops.mean().item(), rel=1e-3)


def test_predict_command_runs_an_export_folder(trained, exported, tmp_path, capsys):
    from PIL import Image

    from mate.inference import OnnxEarlyExitPredictor

    images = trained.data.splits.test.images[:6, 0].numpy()
    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"img_{i}.png")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(exported), "--images", str(folder), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    x, _ = next(iter(trained.data.test))
    r = OnnxEarlyExitPredictor(exported)(x[:6].numpy())
    assert [int(row["exit"]) - 1 for row in rows] == r.exits.tolist()
    assert [row["predicted_class"] for row in rows] == [trained.class_names()[c] for c in r.predictions]
    capsys.readouterr()
    # the export names its dataset: a split is measured with ONNX Runtime
    assert main(["predict", str(exported), "--split", "test", "--out", str(out)]) == 0
    preds, exits, _ = _onnx_run(OnnxEarlyExitPredictor(exported), trained.data.test)
    rows = list(csv.DictReader(out.open()))
    assert [int(row["exit"]) - 1 for row in rows] == exits.tolist()
    acc = (preds == trained.test_logits.labels.numpy()).mean() * 100
    assert f"test: 1000 images, accuracy {acc:.2f}%" in capsys.readouterr().out
    assert main(["predict", str(exported), "--images", str(folder), "--budget", "20"]) == 2
    assert main(["predict", str(exported), "--images", str(folder), "--score", "patience"]) == 2
    assert "give --threshold for --score patience" in capsys.readouterr().err
    assert main(["predict", str(trained.checkpoint), "--split", "test"]) == 2
    assert "give --budget" in capsys.readouterr().err


def test_onnx_predictor_errors_are_clear(exported, tmp_path):
    from mate.inference import OnnxEarlyExitPredictor

    with pytest.raises(MateError, match="no manifest.json"):
        OnnxEarlyExitPredictor(tmp_path)
    with pytest.raises(ConfigError, match="give 1 or 3 thresholds"):
        OnnxEarlyExitPredictor(exported, thresholds=[0.9, 0.8])
    with pytest.raises(ConfigError, match="expected images of shape N x 1 x 28 x 28"):
        OnnxEarlyExitPredictor(exported)(np.zeros((2, 3, 28, 28), np.float32))


def test_export_command_with_given_thresholds_or_none(trained, tmp_path, capsys):
    import json

    pytest.importorskip("onnxruntime")
    assert main(["export", str(trained.checkpoint), "--threshold", "1.25,2.5,3.5", "--score", "patience",
                 "--out", str(tmp_path / "a")]) == 0
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["thresholds"] == [1.25, 2.5, 3.5] and manifest["score"] == "patience"
    assert main(["export", str(trained.checkpoint), "--threshold", "2.5,3.5,4", "--score", "patience",
                 "--out", str(tmp_path / "c")]) == 2  # 4 is above patience's range, [0, 3.5]: refused
    assert "threshold 4 is outside the range of patience scores, [0, 3.5]" in capsys.readouterr().err
    assert main(["export", str(trained.checkpoint), "--out", str(tmp_path / "b")]) == 0
    assert "no thresholds stored" in capsys.readouterr().out
    from mate.inference import OnnxEarlyExitPredictor
    with pytest.raises(ConfigError, match="has no thresholds"):
        OnnxEarlyExitPredictor(tmp_path / "b")
    assert OnnxEarlyExitPredictor(tmp_path / "b", thresholds=0.9).thresholds[:3].tolist() == pytest.approx([0.9] * 3)
