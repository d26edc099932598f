"""End-to-end training on a small real Fashion-MNIST subset (seconds, CPU)."""
import json
import re
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from mate.engine import Trainer, load_checkpoint, train
from mate.errors import MateError


@pytest.mark.parametrize("objective", ["ce", "mate"])
def test_objective_trains_well_above_chance(tmp_path, fmnist_available, objective):
    results = train(tiny_config(tmp_path, objective, epochs=3), log=lambda s: None)
    test = results["test"]
    assert min(test["exit_acc"]) > 50.0, test  # chance is 10%
    assert test["ensemble_acc"] > 60.0
    run = Path(results["run_dir"])
    for name in ("last.pt", "best.pt", "metrics.jsonl", "results.json", "config.yaml", "split.json"):
        assert (run / name).exists(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["train"]["loss"] < records[0]["train"]["loss"]
    if objective == "mate":
        diag = records[-1]["train"]
        assert len(diag["attention"]) == 4 and all(abs(sum(row) - 1) < 1e-4 for row in diag["attention"])
        assert len(diag["teacher_student_kl"]) == 4
    split = json.loads((run / "split.json").read_text())
    assert len(split["val_indices"]) == 1000


def test_best_checkpoint_is_chosen_on_validation(tmp_path, fmnist_available):
    results = train(tiny_config(tmp_path, "ce", epochs=3), log=lambda s: None)
    run = Path(results["run_dir"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scores = [r["val"]["mean_acc"] for r in records]
    assert results["best_epoch"] == scores.index(max(scores)) + 1
    assert load_checkpoint(run / "best.pt")["epoch"] + 1 == results["best_epoch"]
    assert results["val"]["mean_acc"] == pytest.approx(max(scores), abs=1e-6)


def test_resume_gives_the_same_final_metrics(tmp_path, fmnist_available):
    full = train(tiny_config(tmp_path / "a", "mate", epochs=3), log=lambda s: None)

    trainer = Trainer(tiny_config(tmp_path / "b", "mate", epochs=3), log=lambda s: None)
    real_epoch = trainer.train_epoch

    def dies_in_third_epoch(epoch):
        if epoch == 2:
            raise KeyboardInterrupt  # the run is stopped after two finished epochs
        return real_epoch(epoch)

    trainer.train_epoch = dies_in_third_epoch
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert load_checkpoint(trainer.run_dir / "last.pt")["epoch"] == 1

    resumed = train(tiny_config(tmp_path / "b", "mate", epochs=3), resume=True, log=lambda s: None)
    assert resumed["test"]["exit_acc"] == full["test"]["exit_acc"]
    assert resumed["val"]["exit_acc"] == full["val"]["exit_acc"]
    a = load_checkpoint(Path(full["run_dir"]) / "last.pt")["model"]
    b = load_checkpoint(Path(resumed["run_dir"]) / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (Path(resumed["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_existing_run_is_never_overwritten(tmp_path, fmnist_available):
    cfg = tiny_config(tmp_path, "ce", epochs=1)
    train(cfg, log=lambda s: None)
    with pytest.raises(MateError, match="already holds a checkpoint"):
        Trainer(tiny_config(tmp_path, "ce", epochs=1), log=lambda s: None)


def test_readme_custom_loop_example_runs(fmnist_available):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"<!-- custom-loop -->\s*```python\n(.*?)```", readme, re.S)
    assert block, "README has no custom-loop example"
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    assert namespace["loss"].item() > 0
