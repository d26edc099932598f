"""Checkpoints that can be trusted, exact resume after SIGKILL, the divergence guard, a full disk; one
process per run folder; finished runs reused only for their own config; logs cut short by a crash."""
import errno
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import mate
from mate.cli import main
from mate.config import Config
from mate.engine import Trainer, load_checkpoint, save_checkpoint, train
from mate.engine.logger import read_metrics
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
        with pytest.raises(CheckpointError, match="cannot be loaded safely") as err:
            load_checkpoint(path)
        assert not marker.exists()
        assert "weights_only" not in str(err.value)  # never the advice to load it unsafely
        if path == zipped:
            assert str(err.value) == (f"checkpoint {zipped} cannot be loaded safely: it holds a Python object "
                                      "(posix.system) that only running code could rebuild; a checkpoint written "
                                      "by mate holds tensors and plain values only")
    assert str(err.value) == (f"checkpoint {raw} cannot be loaded safely: it is not a PyTorch file of tensors and "
                              "plain values (it is truncated or corrupt, or holds other Python objects)")
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


# -- run folders: one process at a time -------------------------------------------------------------

def quick_args(fmnist_root, *extra) -> list[str]:
    """A 512-image, width-4 run on the suite's Fashion-MNIST, for commands started as real processes."""
    return [f"data.root={fmnist_root}", "data.download=false", "data.train_subset=512", "data.val_size=256",
            "data.test_subset=256", "data.batch_size=64", "model.width=4", "run.progress=false",
            "run.tensorboard=false", *extra]


def start_cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mate", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def wait_for(path: Path, proc: subprocess.Popen, limit_s: float = 240) -> None:
    deadline = time.monotonic() + limit_s
    while not path.exists():
        assert proc.poll() is None, f"the process ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def holder_pattern(what: str, folder: Path, pid: int) -> str:
    """The start of the error naming the process that holds a folder (its start time varies)."""
    return (rf"{what} {re.escape(str(folder))} is in use by another process \(host {re.escape(socket.gethostname())}, "
            rf"pid {pid}, since \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{{4}}\)")


def test_a_second_training_in_a_busy_run_folder_stops_and_a_killed_one_does_not_block_resume(tmp_path, fmnist_root):
    out = tmp_path / "runs"
    run = out / "shared"
    args = ["train", *quick_args(fmnist_root, f"run.out_dir={out}", "run.name=shared")]
    first = start_cli(*args, "run.seed=0", "optim.epochs=500")
    try:
        wait_for(run / "config.yaml", first)
        second = run_cli(*args, "run.seed=1", "optim.epochs=1")
        assert first.poll() is None, "the first run ended before the second one started"
        assert second.returncode == 2
        assert re.fullmatch("mate: error: " + holder_pattern("the run folder", run, first.pid)
                            + "; wait for it to end, or train elsewhere with run.name=NEW_NAME\n", second.stderr)
        wait_for(run / "last.pt", first)
        assert yaml.safe_load((run / "config.yaml").read_text())["run"]["seed"] == 0  # the second wrote nothing
    finally:
        first.kill()
        first.wait()
    # SIGKILL left the lock behind; its process is gone, so it does not hold the folder any more.
    assert json.loads((run / ".lock").read_text())["pid"] == first.pid
    epoch = load_checkpoint(run / "last.pt")["epoch"]
    resumed = run_cli("train", "--resume", str(run), f"optim.epochs={epoch + 2}")
    assert resumed.returncode == 0, resumed.stderr
    assert [r["epoch"] for r in read_metrics(run)] == list(range(1, epoch + 3))
    assert not (run / ".lock").exists()


def test_two_comparisons_on_one_folder_or_one_runs_folder(tmp_path, fmnist_root):
    out = tmp_path / "cmp"
    run = out / "runs" / "ce-s0"
    args = ["compare", "--config", "fashion_mnist_bench", "--methods", "ce", "--seeds", "1",
            *quick_args(fmnist_root, "optim.epochs=500")]
    first = start_cli(*args, "--out", str(out))
    try:
        wait_for(run / "config.yaml", first)
        same_out = run_cli(*args, "--out", str(out))
        same_runs = run_cli(*args, "--out", str(tmp_path / "cmp2"), "--runs", str(out / "runs"))
        assert first.poll() is None, "the first comparison ended before the others started"
    finally:
        first.kill()
        first.wait()
    assert same_out.returncode == 2
    assert re.fullmatch("mate: error: " + holder_pattern("the output folder", out, first.pid)
                        + "; wait for it to end, or write elsewhere with --out\n", same_out.stderr)
    # Another output folder, the same runs: the run folder's own lock stops the run, before it writes.
    assert same_runs.returncode == 2
    assert re.search(r"ce 0: FolderInUse: " + holder_pattern("the run folder", run, first.pid), same_runs.stderr)
    assert "FolderInUse" not in (run / "train.log").read_text()


def test_a_stale_lock_is_taken_over_and_a_live_one_is_named(tmp_path):
    from mate.engine.files import LOCK_NAME, FolderLock
    from mate.errors import FolderInUse

    lock = tmp_path / LOCK_NAME
    host = socket.gethostname()
    gone = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)

    def held_by(**holder):
        lock.write_text(json.dumps({"host": host, "started": "2026-01-02 03:04:05 +0000", "token": "t", **holder}))

    held_by(pid=gone)  # a killed process of this host
    with FolderLock(tmp_path, "the folder", "wait"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    held_by(pid=os.getpid(), process_start="1")  # the pid now belongs to a process started later
    with FolderLock(tmp_path, "the folder", "wait"):
        taken = json.loads(lock.read_text())
        assert taken["pid"] == os.getpid() and taken["token"] != "t"  # taken over: this process's own lock
    assert not lock.exists()
    held_by(pid=os.getppid())  # alive on this host
    with pytest.raises(FolderInUse) as err:
        FolderLock(tmp_path, "the folder", "wait for it").acquire()
    assert str(err.value) == (f"the folder {tmp_path} is in use by another process (host {host}, pid {os.getppid()}, "
                              "since 2026-01-02 03:04:05 +0000); wait for it")
    held_by(host="elsewhere", pid=gone)  # another host: its process cannot be checked from here
    with pytest.raises(FolderInUse) as err:
        FolderLock(tmp_path, "the folder", "wait for it").acquire()
    assert str(err.value) == (f"the folder {tmp_path} is in use by another process (host elsewhere, pid {gone}, since "
                              f"2026-01-02 03:04:05 +0000); wait for it. If that process no longer runs, delete {lock}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_NAME]  # nothing else left behind


def test_the_lock_works_without_hard_links(tmp_path, monkeypatch):
    """Some network filesystems refuse hard links: the lock file is then created with O_EXCL."""
    from mate.engine.files import LOCK_NAME, FolderLock

    def no_links(src, dst):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_links)
    with FolderLock(tmp_path, "the folder", "wait"):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert list(tmp_path.iterdir()) == []


# -- finished runs are reused only for the config they were trained with -----------------------------

ARCHIVE = Path(__file__).parent / "data" / "archive_0.1.0"  # `mate compare --archive` of version 0.1.0
ARCHIVED_CONFIG = ["data.root=/usr/share/datasets/fashion-mnist", "data.download=false", "data.train_subset=512",
                   "data.val_size=256", "data.test_subset=256", "data.batch_size=64", "model.width=4",
                   "optim.epochs=1", "run.progress=false", "run.tensorboard=false"]


def archived_command(command: str, tmp_path: Path, *overrides: str) -> tuple[list[str], Path]:
    """``mate compare`` (or the same runs as ``mate sweep`` over ``method``) on a copy of ARCHIVE."""
    archive = tmp_path / "archive"
    names = {"ce-s0": "ce-s0", "mate-s0": "mate-s0"} if command == "compare" else \
        {"ce-s0": "method=ce-s0", "mate-s0": "method=mate-s0"}
    for name, as_name in names.items():
        shutil.copytree(ARCHIVE / name, archive / as_name, dirs_exist_ok=True)
    common = ["--config", "fashion_mnist_bench", "--seeds", "1", "--out", str(tmp_path / "out"),
              "--archive", str(archive)]
    if command == "compare":
        return ["compare", "--methods", "ce,mate", *common, *ARCHIVED_CONFIG, *overrides], archive
    return ["sweep", "--grid", "method=ce,mate", *common, "--set", *ARCHIVED_CONFIG, *overrides], archive


@pytest.mark.parametrize("command", ["compare", "sweep"])
def test_runs_archived_by_version_0_1_0_are_reused(tmp_path, command, capsys):
    args, archive = archived_command(command, tmp_path)
    assert main(args) == 0
    assert capsys.readouterr().out.count(": done already") == 2
    runs = tmp_path / "out" / "runs"
    assert not list(runs.glob("*/*.pt"))  # nothing was trained
    for folder in archive.iterdir():
        assert (runs / folder.name / "results.json").read_bytes() == (folder / "results.json").read_bytes()


@pytest.mark.parametrize("command", ["compare", "sweep"])
def test_a_finished_run_of_another_config_is_refused(tmp_path, command, capsys):
    args, archive = archived_command(command, tmp_path, "optim.epochs=2", "run.progress=true")
    ce, mate_run = sorted(archive.iterdir())
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err == (f"mate: error: 2 runs were trained with another config than requested: {ce}: optim.epochs=1 "
                   f"(requested 2); {mate_run}: optim.epochs=1 (requested 2). To train them with the requested "
                   f"config, delete {ce} and {mate_run}; to reuse them, request the config they were trained with\n")
    assert not (tmp_path / "out" / "runs").exists()  # nothing restored, nothing trained
    # Restored into the runs folder by a reuse, a run is checked there too, and both copies are named.
    assert main(archived_command(command, tmp_path / "again")[0]) == 0
    capsys.readouterr()
    args, archive = archived_command(command, tmp_path / "again", "objective.temperature=4.0")
    assert main(args) == 2
    mate_name = "mate-s0" if command == "compare" else "method=mate-s0"
    run = tmp_path / "again" / "out" / "runs" / mate_name
    assert capsys.readouterr().err == (
        f"mate: error: 1 run was trained with another config than requested: {run}: objective.temperature=3.0 "
        f"(requested 4.0). To train it with the requested config, delete {run} and {archive / mate_name}; to "
        "reuse it, request the config it was trained with\n")


def test_an_interrupted_run_resumes_only_with_its_own_config(one_epoch_run):
    """A run with a checkpoint but no results yet would continue with the requested config: refused too."""
    from mate.errors import MateError
    from mate.experiments.launchers import LaunchOptions
    from mate.experiments.sweep import train_all

    (one_epoch_run / "results.json").unlink()
    config = Config.from_dict(yaml.safe_load((one_epoch_run / "config.yaml").read_text()))
    config.optim.epochs = 3
    config.run.out_dir = str(one_epoch_run.parent)  # the copy's folder, not the folder it was trained in
    with pytest.raises(MateError) as err:
        train_all({("ce", 0): config}, LaunchOptions(), log=lambda s: None)
    assert str(err.value) == (f"1 run was trained with another config than requested: {one_epoch_run}: "
                              f"optim.epochs=1 (requested 3). To train it with the requested config, delete "
                              f"{one_epoch_run}; to reuse it, request the config it was trained with")


def test_equal_resolved_configs_are_equal():
    """Defaults filled in (here the objective's own), and keys that cannot change a result left out."""
    from mate.experiments.sweep import config_differences

    explicit = {"objective": {"name": "mate", "temperature": 3.0, "primary_share": 0.7, "proj_dim": None},
                "model": {"name": "resnet18", "width": 4}, "optim": {"epochs": 1}}
    implicit = {"objective": {"name": "mate"}, "model": {"width": 4}, "optim": {"epochs": 1},
                "run": {"progress": False, "out_dir": "/elsewhere", "loggers": ["mlflow"], "log_every": 5}}
    assert config_differences(explicit, Config.from_dict(implicit)) == []
    changed = {**explicit, "objective": {**explicit["objective"], "temperature": 4.0}}
    assert config_differences(changed, Config.from_dict(implicit)) == [("objective.temperature", 4.0, 3.0)]
    # Another objective: its name is the difference (its options differ with it).
    assert config_differences({**explicit, "objective": {"name": "ce"}}, Config.from_dict(implicit)) == [
        ("objective.name", "ce", "mate")]


# -- metrics.jsonl after a crash, a full disk or a kill ---------------------------------------------

def test_a_partial_last_metrics_line_is_read_past_and_dropped_on_resume(one_epoch_run, capsys):
    metrics = one_epoch_run / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"epoch": 2, "lr": 0.05, "train": {"lo')  # cut mid-append
    stale = one_epoch_run / ".last.pt.k3j4h5x1.tmp"  # what a kill during a checkpoint write leaves
    stale.write_bytes(b"PK\x03\x04 partial")
    assert main(["report", str(one_epoch_run)]) == 0
    assert main(["train", "--resume", str(one_epoch_run), "optim.epochs=2"]) == 0
    assert [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()] == [1, 2]
    assert not stale.exists()


def test_a_damaged_metrics_line_before_the_last_is_named(one_epoch_run, capsys):
    metrics = one_epoch_run / "metrics.jsonl"
    metrics.write_text("{not json\n" + metrics.read_text())
    assert main(["report", str(one_epoch_run)]) == 2
    assert capsys.readouterr().err == (f"mate: error: {metrics}, line 1, is not a JSON record; the file is "
                                       "damaged (only its last line can be cut short by a crash)\n")


def test_a_fresh_start_after_a_kill_before_the_first_checkpoint_keeps_no_old_lines(one_epoch_run, small_config):
    # A run killed after logging its first epoch, before its checkpoint: its config, split and metrics line.
    for name in ("last.pt", "best.pt", "results.json"):
        (one_epoch_run / name).unlink()
    (one_epoch_run / "trackers.json").write_text('{"mlflow": {"run_id": "killed"}}')
    train(small_config(one_epoch_run.parent), log=lambda s: None)
    assert [r["epoch"] for r in read_metrics(one_epoch_run)] == [1]
    assert not (one_epoch_run / "trackers.json").exists()


# -- checkpoints that cannot be used: one line each -------------------------------------------------

def test_an_empty_or_random_checkpoint_is_one_clear_line(tmp_path, capsys):
    empty, noise = tmp_path / "empty.pt", tmp_path / "noise.pt"
    empty.write_bytes(b"")
    noise.write_bytes(bytes(range(256)) * 4)
    assert main(["eval", str(empty)]) == 2
    assert capsys.readouterr().err == f"mate: error: checkpoint {empty} cannot be loaded safely: the file is empty\n"
    assert main(["eval", str(noise)]) == 2
    assert capsys.readouterr().err == (f"mate: error: checkpoint {noise} cannot be loaded safely: it is not a "
                                       "PyTorch file of tensors and plain values (it is truncated or corrupt, or "
                                       "holds other Python objects)\n")


def test_resuming_with_another_objective_is_one_clear_line(one_epoch_run, capsys):
    before = _snapshot(one_epoch_run)
    assert main(["train", "--resume", str(one_epoch_run), "objective.name=mate"]) == 2
    assert capsys.readouterr().err == (
        "mate: error: the checkpoint was trained with objective 'ce', the config asks for 'mate'; resume with "
        "objective.name=ce, or start a new run (run.name=NEW_NAME)\n")
    assert _snapshot(one_epoch_run) == before


def test_an_objective_state_of_other_shapes_is_one_clear_error(tmp_path, small_config):
    from mate.engine import build_model, build_objective, check_compatible
    from mate.data import DatasetInfo

    config = small_config(tmp_path, "mate")
    model = build_model(config, DatasetInfo(num_classes=10, in_channels=1, input_size=28))
    objective = build_objective(config, model)
    state = {"config": config.to_dict(), "model": model.state_dict(), "num_exits": 4, "num_classes": 10,
             "objective": {k: v[:1] for k, v in objective.state_dict().items()}}
    with pytest.raises(CheckpointError) as err:
        check_compatible(state, model, config, objective)
    assert str(err.value).startswith("the checkpoint's objective state does not fit this objective (e.g. ")
    assert str(err.value).endswith("); resume with the objective options it was trained with")


DROP = object()


@pytest.mark.parametrize("key, value, problem", [
    ("config", DROP, "'config' is missing"),
    ("config", "resnet18", "'config' must be a mapping, got str"),
    ("epoch", DROP, "'epoch' is missing"),
    ("epoch", "3", "'epoch' must be an integer, got str"),
    ("optimizer", DROP, "'optimizer' is missing"),
    ("optimizer", [0.1], "'optimizer' must be a mapping, got list"),
    ("optimizer", {"state": {}}, "its optimizer state does not fit this run (KeyError: 'param_groups')"),
    ("rng_cpu", DROP, "'rng_cpu' is missing"),
    ("rng_cpu", 5, "'rng_cpu' must be a tensor, got int"),
])
def test_a_malformed_checkpoint_is_one_clear_line(one_epoch_run, capsys, key, value, problem):
    last = one_epoch_run / "last.pt"
    state = torch.load(last, weights_only=True)
    if value is DROP:
        del state[key]
    else:
        state[key] = value
    torch.save(state, last)
    assert main(["train", "--resume", str(one_epoch_run), "optim.epochs=2"]) == 2
    assert capsys.readouterr().err == f"mate: error: checkpoint {last} is malformed: {problem}\n"


class DiskFull:
    """A file whose writes fail as on a full disk (it was created: the disk had an inode left)."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_a_disk_full_at_start_is_one_clear_line_and_leaves_nothing(tmp_path, small_config, monkeypatch, capsys):
    import builtins
    import io

    real_open = io.open

    def open_on_a_full_disk(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return DiskFull(f) if "config.yaml" in os.path.basename(str(file)) and "r" not in mode else f

    monkeypatch.setattr(io, "open", open_on_a_full_disk)
    monkeypatch.setattr(builtins, "open", open_on_a_full_disk)
    out = tmp_path / "runs"
    config = small_config(out)
    with pytest.raises(mate.errors.MateError) as err:
        train(config, log=lambda s: None)
    assert str(err.value) == (f"could not write {out / 'run' / 'config.yaml'}: the disk is full. Free space "
                              "(or choose run.out_dir elsewhere) and train again.")
    assert not out.exists()
