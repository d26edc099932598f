import subprocess
import sys
from pathlib import Path

from mate.cli import main
from mate.config import config_to_yaml, load_config, yaml_load

ROOT = Path(__file__).parents[1]


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "mate", *args], capture_output=True, text=True, cwd=cwd)


def test_help_lists_the_commands():
    out = run_cli("--help")
    assert out.returncode == 0
    for word in ("train", "eval", "list", "section.key=value"):
        assert word in out.stdout


def test_list(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "resnet18" in text and "mate" in text and "fashion_mnist" in text


def test_print_config_shows_the_resolved_config_and_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overrides = ["optim.lr=5e-4", "model.width=16", f"run.out_dir={tmp_path / 'runs'}"]
    assert main(["train", "--config", "cifar100_resnet18", *overrides, "--print-config"]) == 0
    out = capsys.readouterr().out
    assert out == config_to_yaml(load_config("cifar100_resnet18", overrides))
    assert "\n  lr: 0.0005\n" in out and "\n  width: 16\n" in out and "\n  name: cifar100\n" in out
    assert list(tmp_path.iterdir()) == []  # no run folder, no data


def test_print_config_of_a_run_to_resume_changes_nothing(tiny_run, capsys):
    run = Path(tiny_run("ce")["run_dir"])
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    assert main(["train", "--resume", str(run), "--print-config", "optim.epochs=5"]) == 0
    printed = yaml_load(capsys.readouterr().out)
    saved = yaml_load((run / "config.yaml").read_text())
    assert printed["optim"] == {**saved["optim"], "epochs": 5} and printed["model"] == saved["model"]
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


def test_config_error_is_one_line_without_traceback():
    out = run_cli("train", "optim.learning_rate=0.1")
    assert out.returncode == 2
    assert out.stderr.strip() == ("mate: error: unknown config key 'optim.learning_rate'; valid keys: epochs, lr, "
                                  "momentum, nesterov, weight_decay, schedule, milestones, lr_decay, warmup_epochs, "
                                  "name, betas, label_smoothing, clip_grad_norm, ema_decay, accumulate_steps, "
                                  "backbone_lr_scale")
    assert "Traceback" not in out.stderr


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_train_then_eval_from_the_command_line(tmp_path, fmnist_root, capsys):
    common = [f"data.root={fmnist_root}", "data.val_size=500", "data.train_subset=512", "data.test_subset=500",
              "model.width=4", "optim.epochs=1", "run.progress=false", f"run.out_dir={tmp_path}", "run.name=cli"]
    out = run_cli("train", *common, "objective.name=ce")
    assert out.returncode == 0, out.stderr
    assert "| exit |" in out.stdout and "| ensemble |" in out.stdout and "test acc" in out.stdout
    ev = run_cli("eval", str(tmp_path / "cli" / "best.pt"), "--split", "both")
    assert ev.returncode == 0, ev.stderr
    table = [line for line in ev.stdout.splitlines() if line.startswith("| 4 |")]
    assert len(table) == 1
    # eval reproduces the test accuracy that training reported
    final = [line for line in out.stdout.splitlines() if line.startswith("| 4 |")][0]
    assert final.split("|")[3].strip() == table[0].split("|")[3].strip()
    assert main(["train", *common, "objective.name=ce"]) == 2  # in this process: exit codes are tested above
    assert "already holds a checkpoint" in capsys.readouterr().err
