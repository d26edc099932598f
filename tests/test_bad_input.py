"""Every input a user can get wrong stops `mate train` with one line naming the culprit."""
import gzip
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mate.cli import main

ROOT = Path(__file__).parents[1]
QUICK = ["data.train_subset=512", "data.val_size=256", "data.test_subset=256", "data.batch_size=64",
         "model.width=4", "optim.epochs=1", "run.progress=false", "run.tensorboard=false"]


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def idx_bytes(shape: tuple[int, ...], fill: int = 7) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, len(shape)) + struct.pack(f">{len(shape)}I", *shape)
    n = 1
    for s in shape:
        n *= s
    return header + bytes([fill]) * n


def fashion_folder(folder: Path, truncate: str = "") -> Path:
    """A Fashion-MNIST folder of 100 train and 20 test images; ``truncate`` names a file to cut."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"train-images-idx3-ubyte": idx_bytes((100, 28, 28)), "train-labels-idx1-ubyte": idx_bytes((100,), 1),
             "t10k-images-idx3-ubyte": idx_bytes((20, 28, 28)), "t10k-labels-idx1-ubyte": idx_bytes((20,), 1)}
    for name, data in files.items():
        (folder / name).write_bytes(data[: len(data) - 100] if name == truncate else data)
    return folder


def test_truncated_idx_file(tmp_path, capsys):
    folder = fashion_folder(tmp_path / "fm", truncate="train-images-idx3-ubyte")
    assert main(["train", f"data.root={folder}", "data.download=false", f"run.out_dir={tmp_path}", *QUICK]) == 2
    line = error_line(capsys)
    assert line.startswith(f"mate: error: IDX file {folder / 'train-images-idx3-ubyte'} is truncated or corrupt")
    assert "78400 bytes of data" in line and "holds 78300" in line


def test_corrupt_gzip_idx_file(tmp_path, capsys):
    folder = fashion_folder(tmp_path / "fm")
    (folder / "train-images-idx3-ubyte").unlink()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08 this is not gzip data")
    assert main(["train", f"data.root={folder}", "data.download=false", f"run.out_dir={tmp_path}", *QUICK]) == 2
    assert error_line(capsys).startswith(f"mate: error: cannot read IDX file {folder / 'train-images-idx3-ubyte.gz'}")


def test_gzip_cut_short(tmp_path, capsys):
    folder = fashion_folder(tmp_path / "fm")
    data = gzip.compress((folder / "train-images-idx3-ubyte").read_bytes())
    (folder / "train-images-idx3-ubyte").unlink()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])
    assert main(["train", f"data.root={folder}", "data.download=false", f"run.out_dir={tmp_path}", *QUICK]) == 2
    assert error_line(capsys).startswith(f"mate: error: cannot read IDX file {folder / 'train-images-idx3-ubyte.gz'}")


def test_missing_dataset(tmp_path, capsys):
    assert main(["train", "data.name=cifar10", f"data.root={tmp_path / 'nothing'}", "data.download=false",
                 f"run.out_dir={tmp_path}", *QUICK]) == 2
    line = error_line(capsys)
    assert line.startswith("mate: error: cifar10 was not found") and str(tmp_path / "nothing") in line


def test_truncated_cifar_file(tmp_path, capsys):
    folder = tmp_path / "c10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batch = pickle.dumps({b"data": np.zeros((10, 3072), dtype=np.uint8), b"labels": list(range(10))})
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(batch)
    (folder / "data_batch_3").write_bytes(batch[: len(batch) // 2])
    assert main(["train", "data.name=cifar10", f"data.root={tmp_path / 'c10'}", "data.download=false",
                 f"run.out_dir={tmp_path}", *QUICK]) == 2
    assert error_line(capsys).startswith(f"mate: error: CIFAR file {folder / 'data_batch_3'} is corrupt or truncated")


@pytest.mark.parametrize("override, message", [
    ("optim.lr=fast", "config key 'optim.lr' must be a number, got 'fast'"),
    ("run.select=best", "config key 'run.select' must be one of 'mean', 'last', 'ensemble', got 'best'"),
    ("optim.epoch=3", "unknown config key 'optim.epoch'; valid keys: epochs, lr, momentum"),
    ("model.depth=3", "unknown config key 'model.depth' for model 'resnet18'"),
    ("data.num_classes=5", "unknown config key 'data.num_classes'"),
])
def test_wrong_config_key_or_value(tmp_path, capsys, override, message):
    assert main(["train", override, f"run.out_dir={tmp_path}"]) == 2
    assert error_line(capsys).startswith("mate: error: " + message)


@pytest.mark.parametrize("override, message", [
    ("optim.epochs=-1", "config key 'optim.epochs' must be >= 1, got -1"),
    ("optim.epochs=0", "config key 'optim.epochs' must be >= 1, got 0"),
    ("optim.lr=-0.1", "config key 'optim.lr' must be >= 0, got -0.1"),
    ("optim.weight_decay=-1e-4", "config key 'optim.weight_decay' must be >= 0, got -0.0001"),
    ("data.val_size=-5", "config key 'data.val_size' must be >= 0, got -5"),
    ("data.test_subset=0", "config key 'data.test_subset' must be >= 1, got 0"),
    ("data.train_subset=-1", "config key 'data.train_subset' must be >= 1, got -1"),
    ("data.crop_padding=-1", "config key 'data.crop_padding' must be >= 0, got -1"),
    ("model.width=0", "config key 'model.width' must be >= 1, got 0"),
    ("objective.kd_weight=-1", "config key 'objective.kd_weight' must be >= 0, got -1.0"),
    ("objective.rampup_epochs=-1", "config key 'objective.rampup_epochs' must be >= 0, got -1.0"),
    ("optim.warmup_epochs=-1", "config key 'optim.warmup_epochs' must be >= 0, got -1.0"),
    ("optim.lr=.nan", "config key 'optim.lr' must be a finite number >= 0, got nan"),
])
def test_values_out_of_range_stop_before_anything_is_read_or_built(tmp_path, capsys, override, message):
    """The range check runs on the config, before the data is looked for (it is not there: the
    error would otherwise be that it was not found) and before any run folder exists."""
    out = tmp_path / "runs"
    assert main(["train", "data.download=false", f"run.out_dir={out}", override]) == 2
    assert error_line(capsys) == "mate: error: " + message
    assert not out.exists()


@pytest.mark.parametrize("overrides, message", [
    (["model.exit_stages=[1,2,3,5]"], "exit_stages must be stage numbers in 1..4, got [1, 2, 3, 5]"),
    (["model.exit_stages=[4]"], "objective 'mate' needs a model with at least 2 exits"),
    (["data.batch_size=4096"], "data.batch_size=4096 is larger than the 512 training images"),
    (["data.val_size=6000"], "data.val_size=6000 leaves no training images (6000 in all)"),
    (["data.batch_size=0"], "config key 'data.batch_size' must be >= 1, got 0"),
    (["data.image_size=32"], "data.image_size=32: fashion_mnist holds 28x28 images, used at their own size; "
                             "data.image_size resizes datasets of image files only (leave it unset)"),
    (["data.eval_crop=0.9"], "data.eval_crop=0.9 applies to streamed evaluation only: fashion_mnist is held in "
                             "memory here and evaluated on whole images; leave data.eval_crop unset"),
])
def test_impossible_combinations(tmp_path, capsys, fmnist_root, overrides, message):
    out = tmp_path / "runs"
    assert main(["train", f"data.root={fmnist_root}", "data.download=false", f"run.out_dir={out}", *QUICK,
                 *overrides]) == 2
    assert error_line(capsys) == "mate: error: " + message
    assert not out.exists()  # a run that could not start leaves no folder behind


def test_errors_have_no_traceback_in_a_real_process(tmp_path):
    out = subprocess.run([sys.executable, "-m", "mate", "train", "model.exit_stages=[1,2,3,5]", "data.download=false",
                          f"run.out_dir={tmp_path}", *QUICK], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 2
    assert out.stderr == "mate: error: exit_stages must be stage numbers in 1..4, got [1, 2, 3, 5]\n"


# -- where the data and the run folder are ----------------------------------------------------------

FASHION_FILES = ("train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
                 "t10k-labels-idx1-ubyte[.gz]")
HOW = (f"Put the four IDX files ({FASHION_FILES}) there, allow a download into it with data.download=true, or "
       "leave data.root unset to use the system copy (sudo apt-get install dataset-fashion-mnist)")


def test_an_explicit_data_root_without_the_data_is_an_error_even_with_a_system_copy(tmp_path, capsys, monkeypatch,
                                                                                      fmnist_root):
    import mate.data.fashion_mnist as fm

    monkeypatch.setattr(fm, "DEBIAN_DIR", fmnist_root)  # a complete copy where the system keeps one
    monkeypatch.setattr(fm, "_torchvision_download", lambda folder: None)  # no network
    out = tmp_path / "runs"
    missing = tmp_path / "nowhere"
    assert main(["train", f"data.root={missing}", "data.download=false", f"run.out_dir={out}", *QUICK]) == 2
    assert error_line(capsys) == (f"mate: error: Fashion-MNIST is not in data.root={missing}: the folder does not "
                                  f"exist. {HOW}")
    partial = fashion_folder(tmp_path / "fm")
    (partial / "t10k-labels-idx1-ubyte").unlink()
    assert main(["train", f"data.root={partial}", "data.download=true", f"run.out_dir={out}", *QUICK]) == 2
    assert error_line(capsys) == (f"mate: error: Fashion-MNIST is not in data.root={partial}: t10k-labels-idx1-ubyte"
                                  f"[.gz] is missing, and the download into it failed. {HOW}")
    assert not out.exists()


def test_a_tilde_in_run_out_dir_is_the_home_folder(tmp_path, capsys, monkeypatch, fmnist_root):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    assert main(["train", "run.out_dir=~/runs", "run.name=r", f"data.root={fmnist_root}", "data.download=false",
                 *QUICK]) == 0
    assert (home / "runs" / "r" / "results.json").is_file()
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize("name", ["../x", "a/../../x", "ABSOLUTE"])
def test_a_run_name_outside_run_out_dir_is_refused(tmp_path, capsys, name):
    name = str(tmp_path / "elsewhere") if name == "ABSOLUTE" else name
    out = tmp_path / "runs"
    assert main(["train", f"run.name={name}", f"run.out_dir={out}", "data.download=false", *QUICK]) == 2
    assert error_line(capsys) == (f"mate: error: run.name={name} would put the run folder outside run.out_dir ({out}); "
                                  "give a folder name, or a relative path without '..'")
    assert list(tmp_path.iterdir()) == []
