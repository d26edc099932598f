"""A user's own image folder, end to end: training picks and records the input size, and flops,
eval, predict and export read the run back. Tiny PNGs made here, a width-4 ResNet-18, one epoch."""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from mate.cli import main
from mate.config import load_config
from mate.engine import load_checkpoint, load_trained, train
from mate.evaluation import exit_costs

CLASSES = ("ant", "bee", "cat")
SIDE = 16


def write_class_images(folder: Path, n: int, seed: int) -> None:
    """n images per class; class c is mostly channel c, so the classes differ."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 90, (SIDE, SIDE, 3))
            pixels[..., c] += 150
            Image.fromarray(pixels.astype(np.uint8)).save(folder / name / f"{name}_{i}.png")


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("own_images")
    for split, n, seed in (("train", 8, 0), ("val", 4, 1), ("test", 4, 2)):
        write_class_images(root / split, n, seed)
    return root


def image_config(root, out, *extra):
    return load_config(None, ["data.name=image_folder", f"data.root={root}", "data.batch_size=8",
                              "data.num_workers=0", "model.width=4", "objective.name=ce", "optim.epochs=1",
                              "run.progress=false", "run.tensorboard=false", f"run.out_dir={out}", "run.name=own",
                              *extra])


@pytest.fixture(scope="module")
def run(image_root, tmp_path_factory):
    """The finished run (image_size unset) and the lines training logged."""
    lines = []
    results = train(image_config(image_root, tmp_path_factory.mktemp("runs")), log=lines.append)
    return Path(results["run_dir"]), lines


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


# ---- the input size -----------------------------------------------------------------------------

def test_training_prints_and_records_the_image_size_it_picked(run):
    run_dir, lines = run
    assert ("data.image_size unset: 16 px, the size all 24 training images share (set data.image_size to choose "
            "another)") in lines
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["image_size"] == SIDE
    state = load_checkpoint(run_dir / "best.pt")
    assert state["config"]["data"]["image_size"] == SIDE and state["input_shape"] == [3, SIDE, SIDE]


def test_flops_counts_the_input_the_run_was_trained_on_without_reading_the_data(run, tmp_path, capsys):
    run_dir, _ = run
    expected = exit_costs(load_trained(run_dir / "best.pt").model)
    # the data folder need not be there (it moved): the checkpoint holds the network's input shape
    state = load_checkpoint(run_dir / "best.pt")
    state["config"]["data"]["root"] = "/nowhere"
    torch.save(state, tmp_path / "moved.pt")
    assert main(["flops", str(tmp_path / "moved.pt"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["input_shape"] == [3, SIDE, SIDE] and got["flops"] == expected.flops
    assert got["macs"] == [f // 2 for f in expected.flops]
    assert main(["flops", str(run_dir)]) == 0
    text = capsys.readouterr().out
    assert "(one 3x16x16 input)" in text and "| exit | MFLOPs (F_k, cumulative) | MMACs | F_k / F_K |" in text
    assert f"| 4 | {expected.flops[-1] / 1e6:.2f} | {expected.flops[-1] / 2e6:.2f} |" in text


def test_an_image_folder_checkpoint_from_before_runs_recorded_their_size_reads_at_224(run, tmp_path):
    from mate.engine import config_from_checkpoint

    state = load_checkpoint(run[0] / "best.pt")
    del state["input_shape"]
    state["config"]["data"]["image_size"] = None
    assert config_from_checkpoint(state).data.image_size == 224  # the default such a run trained at
    assert config_from_checkpoint(state, ["data.image_size=16"]).data.image_size == 16


# ---- which checkpoint of a run folder ----------------------------------------------------------

@pytest.fixture()
def run_with_a_later_last(run, tmp_path):
    """A copy of the run whose last.pt is a later, different epoch than best.pt."""
    run_dir = Path(shutil.copytree(run[0], tmp_path / "own"))
    state = load_checkpoint(run_dir / "last.pt")
    state["epoch"] = 6
    state["model"] = {k: (v * 0 if v.is_floating_point() else v) for k, v in state["model"].items()}
    torch.save(state, run_dir / "last.pt")
    return run_dir


def test_eval_predict_and_export_of_a_run_folder_use_best_pt_and_say_so(run_with_a_later_last, tmp_path, capsys):
    run_dir = run_with_a_later_last
    said = f"checkpoint: {run_dir / 'best.pt'} (epoch 1, selected on validation; a run folder means its best.pt)"
    assert main(["eval", str(run_dir)]) == 0
    assert said in capsys.readouterr().out
    assert main(["predict", str(run_dir), "--threshold", "0.5"]) == 0
    out = capsys.readouterr().out
    assert said in out
    best = load_trained(run_dir / "best.pt")
    assert load_trained(run_dir).epoch == best.epoch == 1
    assert main(["export", str(run_dir), "--out", str(tmp_path / "exp")]) == 0
    assert said in capsys.readouterr().out


# ---- predict on folders of images ----------------------------------------------------------------

def test_predict_recurses_into_class_folders_and_reports_accuracy(run, image_root, tmp_path, capsys):
    run_dir, _ = run
    best = str(run_dir / "best.pt")
    assert main(["predict", best, "--threshold", "0.6", "--split", "test"]) == 0
    split_line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("test: ")][0]
    out = tmp_path / "pred.csv"
    assert main(["predict", best, "--threshold", "0.6", "--images", str(image_root / "test"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["image", "label", "prediction", "predicted_class", "exit", "mflops"]
    assert len(rows) == 12 and rows[0]["image"].endswith("test/ant/ant_0.png")
    assert [int(r["label"]) for r in rows] == [0] * 4 + [1] * 4 + [2] * 4
    assert all(r["predicted_class"] == CLASSES[int(r["prediction"])] for r in rows)
    acc = 100 * np.mean([r["label"] == r["prediction"] for r in rows])
    summary = [s for s in text.splitlines() if s.startswith(f"{image_root / 'test'}: 12 images")][0]
    assert f"accuracy {acc:.2f}% (labels: the class folders)" in summary
    flops = np.array([float(r["mflops"]) for r in rows])
    assert f"average {flops.mean():.2f} MFLOPs = {flops.mean() / 2:.2f} MMACs" in summary
    shares = np.bincount([int(r["exit"]) - 1 for r in rows], minlength=4) / 12
    assert summary.endswith("exit shares " + " / ".join(f"{s:.3f}" for s in shares))
    # the same images through the data loader: the same accuracy, cost and shares
    assert split_line.split(": ", 1)[1] == summary.split(": ", 1)[1].replace(" (labels: the class folders)", "")


def test_predict_on_a_folder_without_class_folders_has_no_labels(run, image_root, tmp_path, capsys):
    run_dir, _ = run
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(image_root / "test" / "bee" / "bee_0.png", flat / "one.png")
    (flat / "other").mkdir()  # a sub-folder that is not one of the model's classes
    shutil.copy(image_root / "test" / "cat" / "cat_0.png", flat / "other" / "two.png")
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run_dir / "best.pt"), "--threshold", "0.6", "--images", str(flat),
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["image", "prediction", "predicted_class", "exit", "mflops"]
    assert [r["image"].rsplit("/", 2)[-2:] for r in rows] == [["flat", "one.png"], ["other", "two.png"]]
    summary = [s for s in capsys.readouterr().out.splitlines() if s.startswith(f"{flat}: 2 images")][0]
    assert "accuracy" not in summary and "MMACs" in summary


def test_16_bit_and_8_bit_copies_of_an_image_get_the_same_prediction(run, image_root, tmp_path):
    run_dir, _ = run
    from mate.inference.images import load_images

    grey8 = np.asarray(Image.open(image_root / "test" / "ant" / "ant_1.png").convert("L"))
    Image.fromarray(grey8).save(tmp_path / "a8.png")
    Image.fromarray(grey8.astype(np.uint16) * 257).save(tmp_path / "a16.png")  # the same picture in 16 bits
    x = load_images([tmp_path / "a8.png", tmp_path / "a16.png"], 3, SIDE, (0.5,) * 3, (0.25,) * 3)
    assert torch.equal(x[0], x[1])


def test_a_decompression_bomb_given_to_predict_is_one_line(run, tmp_path, capsys):
    from test_image_datasets import bomb_png

    (tmp_path / "imgs").mkdir()
    bomb = bomb_png(tmp_path / "imgs" / "bomb.png")
    assert main(["predict", str(run[0] / "best.pt"), "--threshold", "0.6", "--images", str(tmp_path / "imgs")]) == 2
    assert error_line(capsys).startswith(f"mate: error: cannot read image {bomb}: 400000000 pixels, more than PIL's")


# ---- thresholds ------------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--threshold", "1.5"], "threshold 1.5 is outside the range of max_prob scores, [0, 1]: a sample exits at "
                             "exit k when its score >= T_k (inf: never early, -inf: always)"),
    (["--threshold", "nan"], "threshold nan is not a number"),
    (["--threshold", "0.5,0.5,nan"], "threshold nan is not a number"),
    (["--threshold", "0.1", "--score", "neg_entropy"], "threshold 0.1 is outside the range of neg_entropy scores, "
                                                        "[-1.099, 0]"),
    (["--threshold", "1,2,3.75", "--score", "patience"], "threshold 3.75 is outside the range of patience scores, "
                                                          "[0, 3.5]"),
])
def test_out_of_range_thresholds_are_refused_in_one_line(run, capsys, args, message):
    assert main(["predict", str(run[0] / "best.pt"), *args]) == 2
    assert error_line(capsys).startswith("mate: error: " + message)


def test_infinite_thresholds_stay_allowed(run, capsys):
    assert main(["predict", str(run[0] / "best.pt"), "--threshold", "inf"]) == 0
    assert "exit shares 0.000 / 0.000 / 0.000 / 1.000" in capsys.readouterr().out


# ---- the export folder knows its data -----------------------------------------------------------

@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    folder = tmp_path_factory.mktemp("exp")
    assert main(["export", str(run[0] / "best.pt"), "--threshold", "0.6", "--out", str(folder)]) == 0
    return folder


def test_predict_on_an_export_folder_measures_a_split(run, exported, image_root, capsys):
    from mate.inference import OnnxEarlyExitPredictor

    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["data"]["name"] == "image_folder" and manifest["data"]["image_size"] == SIDE
    assert main(["predict", str(exported), "--split", "test"]) == 0
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("test: 12 images")][0]
    trained = load_trained(run[0] / "best.pt")
    x = torch.cat([b for b, _ in trained.data.test]).numpy()
    labels = torch.cat([y for _, y in trained.data.test]).numpy()
    r = OnnxEarlyExitPredictor(exported)(x)
    assert f"accuracy {100 * (r.predictions == labels).mean():.2f}%" in line
    assert f"average {r.flops.mean() / 1e6:.2f} MFLOPs" in line
    # the stored data section can be pointed elsewhere; other sections cannot be overridden
    assert main(["predict", str(exported), "data.root=/nowhere", "--split", "test"]) == 2
    assert error_line(capsys) == ("mate: error: image_folder: missing folder /nowhere. data.root must be a folder "
                                  "with train/<class>/*.jpg and val/<class>/*.jpg (test/ optional).")
    assert main(["predict", str(exported), "model.width=8", "--split", "test"]) == 2
    assert error_line(capsys) == ("mate: error: an export folder takes data.* overrides only (where its data is), "
                                  "got model.width=8")


def test_predict_on_an_export_folder_recurses_into_class_folders(exported, image_root, capsys):
    assert main(["predict", str(exported), "--images", str(image_root / "test")]) == 0
    text = capsys.readouterr().out
    assert any(s.startswith(f"{image_root / 'test'}: 12 images, accuracy ") for s in text.splitlines())


# ---- datasets that cannot train a classifier --------------------------------------------------

def test_training_on_a_single_class_or_an_empty_class_folder_is_refused(tmp_path, capsys):
    root = tmp_path / "one"
    write_class_images(root / "train", 2, 0)
    write_class_images(root / "val", 1, 1)
    for name in CLASSES[1:]:
        shutil.rmtree(root / "train" / name)
    args = ["train", "data.name=image_folder", f"data.root={root}", "data.num_workers=0", "data.val_size=1",
            "data.batch_size=1", "model.width=4", "optim.epochs=1", f"run.out_dir={tmp_path / 'runs'}"]
    assert main(args) == 2
    assert error_line(capsys) == (f"mate: error: image_folder: {root / 'train'} has one class folder (ant); a "
                                  "classifier needs at least two")
    (root / "train" / "bee").mkdir()
    assert main(args) == 2
    assert error_line(capsys).startswith(f"mate: error: image_folder: the class folder {root / 'train' / 'bee'} "
                                         "holds no image files")


def test_an_export_without_its_data_section_says_so(exported, tmp_path, capsys):
    old = Path(shutil.copytree(exported, tmp_path / "old"))
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["data"]  # as exports written before manifests named their data
    (old / "manifest.json").write_text(json.dumps(manifest))
    assert main(["predict", str(old), "--split", "test"]) == 2
    assert error_line(capsys) == (f"mate: error: {old}/manifest.json does not name its dataset (exported by an "
                                  "earlier version); give --images DIR, or export the checkpoint again")


def test_predict_normalises_images_as_the_run_was_trained(run, image_root):
    """image_folder trains with ImageNet's mean and std, and predict --images uses the same: the
    files of the test split become exactly the tensors the test loader gives."""
    from mate.data.image_folder import IMAGENET_MEAN, IMAGENET_STD
    from mate.inference.images import list_images, load_images

    trained = load_trained(run[0] / "best.pt")
    assert tuple(trained.data.splits.mean) == IMAGENET_MEAN and tuple(trained.data.splits.std) == IMAGENET_STD
    from_loader = torch.cat([x for x, _ in trained.data.test])
    paths = list_images(image_root / "test")
    assert torch.equal(load_images(paths, 3, SIDE, trained.data.splits.mean, trained.data.splits.std), from_loader)
