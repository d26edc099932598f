"""Checkpoints that can be trusted, exact resume after SIGKILL, the divergence guard, a full disk."""
import errno
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import mate
from mate.cli import main
from mate.config import Config
from mate.engine import Trainer, load_checkpoint, save_checkpoint, train
from mate.errors import CheckpointError

ROOT = Path(__file__).parents[1]
SMALL = {"data.train_subset": 512, "data.val_size": 256, "data.test_subset": 256, "data.batch_size": 64,
         "model.width": 4, "run.name": "run"}


@pytest.fixture(scope="module")
def small_config(tiny_config):
    """``small_config(out_dir, objective="ce", epochs=1, **overrides)``: tiny_config at width 4 on 512 images."""
    def make(tmp_path, objective="ce", epochs=1, **extra):
        return tiny_config(tmp_path, objective, epochs, **{**SMALL, **extra})

    return make


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "mate", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory, small_config) -> Path:
    return Path(train(small_config(tmp_path_factory.mktemp("runs")), log=lambda s: None)["run_dir"])


@pytest.fixture()
def one_epoch_run(tmp_path, trained_once) -> Path:
    """A finished 1-epoch CE run (width 4) and its folder: a copy of one run trained for this module."""
    return Path(shutil.copytree(trained_once, tmp_path / "runs" / "run"))


class RunsCode:
    """Unpickling this calls os.system: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_runs_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    zipped, raw = tmp_path / "evil.pt", tmp_path / "evil_raw.pt"
    torch.save({"model": {}, "config": {}, "payload": RunsCode(marker)}, zipped)
    raw.write_bytes(pickle.dumps({"model": {}, "config": {}, "payload": RunsCode(marker)}))
    for path in (zipped, raw):
        with pytest.raises(CheckpointError, match="cannot be loaded safely"):
            load_checkpoint(path)
        assert not marker.exists()
    # The files really are malicious: an unsafe load runs the command.
    torch.load(zipped, weights_only=False)
    assert marker.exists()


def test_truncated_or_foreign_checkpoints_are_clear_errors(tmp_path, one_epoch_run):
    data = (one_epoch_run / "last.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt cannot be loaded safely"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt is not a checkpoint written by mate"):
        load_checkpoint(tmp_path / "other.pt")


def test_checkpoint_records_config_and_package_version(tmp_path, small_config):
    config = small_config(tmp_path)
    run = Path(train(config, log=lambda s: None)["run_dir"])
    for name in ("last.pt", "best.pt"):
        state = load_checkpoint(run / name)
        assert state["version"] == mate.__version__
        assert Config.from_dict(state["config"]).to_dict() == config.to_dict()
        assert (state["epoch"], state["num_exits"], state["num_classes"]) == (0, 4, 10)


def test_save_replaces_atomically_and_leaves_no_temporary_file(tmp_path):
    save_checkpoint({"model": {"w": torch.ones(3)}, "config": {}}, tmp_path / "a.pt")
    save_checkpoint({"model": {"w": torch.zeros(3)}, "config": {}}, tmp_path / "a.pt")
    assert torch.equal(load_checkpoint(tmp_path / "a.pt")["model"]["w"], torch.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt"]


def test_eval_of_another_architecture_is_one_clear_error(one_epoch_run, capsys):
    best = str(one_epoch_run / "best.pt")
    assert main(["eval", best, "model.width=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mate: error: the checkpoint does not fit this architecture (e.g. stem.0.weight")
    assert err.endswith("use the config it was trained with") and "\n" not in err
    assert main(["eval", best, "model.name=resnet34"]) == 2
    assert "does not fit this architecture" in capsys.readouterr().err


def test_eval_with_another_number_of_classes_is_one_clear_error(tmp_path, one_epoch_run, capsys):
    # A small CIFAR-100 in the official format: 100 classes instead of Fashion-MNIST's 10.
    folder = tmp_path / "cifar" / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = torch.Generator().manual_seed(0)
    for name, n in (("train", 300), ("test", 100)):
        batch = {b"data": torch.randint(0, 256, (n, 3072), generator=rng, dtype=torch.uint8).numpy(),
                 b"fine_labels": [i % 100 for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(batch))
    args = ["eval", str(one_epoch_run / "best.pt"), "data.name=cifar100", f"data.root={tmp_path / 'cifar'}",
            "data.val_size=50", "data.train_subset=null", "data.test_subset=null"]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == (
        "mate: error: the checkpoint's model has 4 exits and 10 classes; this model has 4 exits and 100 classes")


def test_resume_with_another_architecture_is_one_clear_error(one_epoch_run, capsys):
    assert main(["train", "--resume", str(one_epoch_run), "model.width=8"]) == 2
    assert "does not fit this architecture" in capsys.readouterr().err
    assert main(["train", "--resume", str(one_epoch_run), "model.name=resnet34"]) == 2
    assert capsys.readouterr().err.strip() == (
        "mate: error: the checkpoint holds a 'resnet18' model, the config asks for 'resnet34'")


def test_resume_refuses_optimizer_overrides_it_could_not_apply(one_epoch_run, capsys):
    """The optimizer state and the schedule's base rate come from the checkpoint: a new optim.lr
    would be silently ignored, so it is an error that names the saved value; nothing is written."""
    before = {p.name: p.read_bytes() for p in one_epoch_run.iterdir() if p.is_file()}
    assert main(["train", "--resume", str(one_epoch_run), "optim.lr=0.01", "optim.momentum=0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mate: error: --resume continues") and "cannot apply a new optim.lr, optim.momentum" in err
    assert "run.name=NEW_NAME" in err and err.count("\n") == 0
    assert {p.name: p.read_bytes() for p in one_epoch_run.iterdir() if p.is_file()} == before


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path, fmnist_root):
    args = ["train", "--config", "fashion_mnist_quick", f"data.root={fmnist_root}", "data.train_subset=512",
            "data.val_size=256", "data.test_subset=256", "data.batch_size=64", "model.width=8", "optim.epochs=2",
            "run.deterministic=true", "run.progress=false", "run.tensorboard=false", "run.name=run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread: same summation order in every run
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "mate", *args, f"run.out_dir={killed_dir}"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed_dir / "run" / "last.pt"
    while not last.exists():  # the first epoch's checkpoint: the second epoch starts now
        assert proc.poll() is None, "the run ended before writing its first checkpoint"
        time.sleep(0.01)
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(last)["epoch"] == 0, "the kill came after the second epoch had finished"
    assert not (killed_dir / "run" / "results.json").exists()

    resumed = subprocess.run([sys.executable, "-m", "mate", "train", "--resume", str(killed_dir / "run")],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    full = subprocess.run([sys.executable, "-m", "mate", *args, f"run.out_dir={tmp_path / 'full'}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr

    a, b = load_checkpoint(tmp_path / "full" / "run" / "last.pt"), load_checkpoint(last)
    assert a["epoch"] == b["epoch"] == 1
    for part in ("model", "objective", "optimizer"):
        flat_a, flat_b = _tensors(a[part]), _tensors(b[part])
        assert flat_a.keys() == flat_b.keys()
        assert all(torch.equal(flat_a[k], flat_b[k]) for k in flat_a), part
    ra = json.loads((tmp_path / "full" / "run" / "results.json").read_text())
    rb = json.loads((killed_dir / "run" / "results.json").read_text())
    assert (ra["val"], ra["test"], ra["best_epoch"]) == (rb["val"], rb["test"], rb["best_epoch"])
    lines = (killed_dir / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def _tensors(tree, prefix="") -> dict:
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else []
    out = {}
    for key, value in items:
        out.update(_tensors(value, f"{prefix}/{key}"))
    return out


def _snapshot(run: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


def test_nan_loss_stops_the_run_and_keeps_every_saved_file(one_epoch_run, monkeypatch, capsys):
    before = _snapshot(one_epoch_run)
    from mate.objectives.ce import CrossEntropyObjective as CEObjective

    real_forward = CEObjective.forward

    def nan_from_epoch_2_step_3(self, outputs, targets, epoch=0.0):
        loss, logs = real_forward(self, outputs, targets, epoch)
        return (loss * float("nan") if epoch >= 1 + 2 / 8 else loss), logs

    monkeypatch.setattr(CEObjective, "forward", nan_from_epoch_2_step_3)
    assert main(["train", "--resume", str(one_epoch_run), "optim.epochs=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"mate: error: the loss became nan at epoch 2, step 3 (global step 11); nothing was saved "
                   f"after it. The last good checkpoint is {one_epoch_run / 'last.pt'}; lower optim.lr (or add "
                   "optim.warmup_epochs) and resume or restart.")
    assert _snapshot(one_epoch_run) == before


def test_huge_learning_rate_is_caught_by_the_guard(tmp_path, small_config, capsys):
    cfg = small_config(tmp_path, epochs=2, **{"optim.lr": 1e6, "optim.schedule": "constant"})
    with pytest.raises(mate.errors.TrainingDiverged, match=r"the loss became (nan|inf) at epoch \d+, step \d+"):
        train(cfg, log=lambda s: None)


def test_full_disk_during_a_checkpoint_keeps_the_previous_one(one_epoch_run, monkeypatch, capsys):
    before = _snapshot(one_epoch_run)
    import mate.engine.checkpoint as checkpoint

    def disk_fills_up(state, f):
        f.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.torch, "save", disk_fills_up)
    assert main(["train", "--resume", str(one_epoch_run), "optim.epochs=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mate: error: could not write checkpoint {one_epoch_run}/")
    assert err.endswith(": the disk is full. The previous checkpoint in that folder is untouched; free space "
                        "(or choose run.out_dir elsewhere) and resume.")
    after = _snapshot(one_epoch_run)
    assert {k: after[k] for k in ("last.pt", "best.pt")} == {k: before[k] for k in ("last.pt", "best.pt")}
    assert not [p for p in one_epoch_run.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    assert load_checkpoint(one_epoch_run / "last.pt")["epoch"] == 0


def test_unwritable_run_folder_is_one_clear_error(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["train", f"run.out_dir={blocker}", "run.name=x", "data.download=false"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mate: error: cannot write to the run folder {blocker}/x: Not a directory. Choose another run.out_dir.")


def test_existing_trainer_api_still_resumes_in_process(tmp_path, small_config):
    trainer = Trainer(small_config(tmp_path, epochs=1), log=lambda s: None)
    assert trainer.world_size == 1 and trainer.is_main
    assert trainer.fit()["best_epoch"] == 1
