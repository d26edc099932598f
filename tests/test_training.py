"""End-to-end training on the suite's small Fashion-MNIST (seconds, CPU)."""
import json
import math
import re
from pathlib import Path

import pytest
import torch

from mate.config import Config
from mate.engine import Trainer, load_checkpoint, train
from mate.errors import MateError


@pytest.mark.parametrize("objective", ["ce", "mate"])
def test_objective_trains_well_above_chance(tiny_run, objective):
    results = tiny_run(objective)  # 3 epochs
    test = results["test"]
    assert min(test["exit_acc"]) > 50.0, test  # chance is 10%
    assert test["ensemble_acc"] > 60.0
    run = Path(results["run_dir"])
    for name in ("last.pt", "best.pt", "metrics.jsonl", "results.json", "config.yaml", "split.json"):
        assert (run / name).exists(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[-1]["train"]["loss"] < records[0]["train"]["loss"]
    for r in records:  # each exit's training accuracy, every epoch
        assert len(r["train"]["exit_acc"]) == 4 and all(0 <= a <= 100 for a in r["train"]["exit_acc"])
    assert records[-1]["train"]["exit_acc"][-1] > records[0]["train"]["exit_acc"][-1]
    if objective == "mate":
        diag = records[-1]["train"]
        assert len(diag["attention"]) == 4 and all(abs(sum(row) - 1) < 1e-4 for row in diag["attention"])
        assert len(diag["teacher_student_kl"]) == 4
        # each teacher's validation accuracy beside its student's, and the validation A[K, K]
        val = records[-1]["val"]
        assert len(val["teacher_acc"]) == 4 and all(0 <= a <= 100 for a in val["teacher_acc"])
        assert len(val["attention"]) == 4 and all(abs(sum(row) - 1) < 1e-4 for row in val["attention"])
    else:
        assert "teacher_acc" not in records[-1]["val"]
    split = json.loads((run / "split.json").read_text())
    assert len(split["val_indices"]) == 1000


def test_best_checkpoint_is_chosen_on_validation(tiny_run):
    results = tiny_run("ce")
    run = Path(results["run_dir"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scores = [r["val"]["mean_acc"] for r in records]
    assert results["best_epoch"] == scores.index(max(scores)) + 1
    assert load_checkpoint(run / "best.pt")["epoch"] + 1 == results["best_epoch"]
    assert results["val"]["mean_acc"] == pytest.approx(max(scores), abs=1e-6)


SMALL = {"data.train_subset": 512, "data.val_size": 256, "data.test_subset": 256, "data.batch_size": 64,
         "model.width": 4}  # resuming does not need a network that learns much


def test_resume_gives_the_same_final_metrics(tmp_path, tiny_config):
    full = train(tiny_config(tmp_path / "a", "mate", epochs=3, **SMALL), log=lambda s: None)

    trainer = Trainer(tiny_config(tmp_path / "b", "mate", epochs=3, **SMALL), log=lambda s: None)
    real_epoch = trainer.train_epoch

    def dies_in_third_epoch(epoch):
        if epoch == 2:
            raise KeyboardInterrupt  # the run is stopped after two finished epochs
        return real_epoch(epoch)

    trainer.train_epoch = dies_in_third_epoch
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert load_checkpoint(trainer.run_dir / "last.pt")["epoch"] == 1

    resumed = train(tiny_config(tmp_path / "b", "mate", epochs=3, **SMALL), resume=True, log=lambda s: None)
    assert resumed["test"]["exit_acc"] == full["test"]["exit_acc"]
    assert resumed["val"]["exit_acc"] == full["val"]["exit_acc"]
    a = load_checkpoint(Path(full["run_dir"]) / "last.pt")["model"]
    b = load_checkpoint(Path(resumed["run_dir"]) / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    lines = (Path(resumed["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_existing_run_is_never_overwritten(tiny_run):
    results = tiny_run("ce")
    run = Path(results["run_dir"])
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    with pytest.raises(MateError, match="already holds a checkpoint"):
        Trainer(Config.from_dict(results["config"]), log=lambda s: None)
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_readme_custom_loop_example_runs(fmnist_root, monkeypatch):
    import mate.data.fashion_mnist as fm

    monkeypatch.setattr(fm, "DEBIAN_DIR", fmnist_root)  # the example reads Fashion-MNIST from its default place
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"<!-- custom-loop -->\s*```python\n(.*?)```", readme, re.S)
    assert block, "README has no custom-loop example"
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    assert math.isfinite(namespace["loss"].item()) and namespace["loss"].item() > 0
    # what the example says it ends with: a list of K tensors, 8 x 10, from the model in eval mode
    assert [z.shape for z in namespace["exit_logits"]] == [(8, 10)] * 4 and not namespace["model"].training


def test_train_step_logs_each_exits_batch_accuracy():
    from mate.engine import TrainStep
    from mate.objectives import create_objective
    import mate

    torch.manual_seed(0)
    model = mate.create_model("resnet18", num_classes=3, in_channels=1, width=4, input_size=16)
    step = TrainStep(model, create_objective("ce", num_exits=model.num_exits))
    x, y = torch.randn(8, 1, 16, 16), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    _, logs = step(x, y, 0.0)
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(x)
    expected = [100.0 * sum(int(z[i].argmax() == y[i]) for i in range(8)) / 8 for z in out.exit_logits]
    assert logs["exit_acc"].tolist() == pytest.approx(expected)


def test_teacher_accuracy_is_computed_from_the_teachers_logits():
    from mate.evaluation import collect_exit_logits
    from mate.objectives import create_objective
    import mate

    torch.manual_seed(0)
    model = mate.create_model("resnet18", num_classes=3, in_channels=1, width=4, input_size=16)
    obj = create_objective("mate", num_exits=model.num_exits, feature_dim=model.feature_dim)
    batches = [(torch.randn(5, 1, 16, 16), torch.tensor([0, 1, 2, 0, 1])) for _ in range(2)]
    res = collect_exit_logits(model, batches, teachers=obj.eval_teachers)
    summary = res.summary()
    model.eval()
    correct, weights = [0] * 4, torch.zeros(4, 4)
    with torch.no_grad():
        for x, y in batches:
            t, a = obj.teachers(model(x))
            weights += a.sum(0)
            for m in range(4):
                correct[m] += int((t[:, m].argmax(-1) == y).sum())
    assert summary["teacher_acc"] == pytest.approx([100 * c / 10 for c in correct])
    assert torch.allclose(torch.tensor(summary["attention"]), weights / 10, atol=1e-6)


def test_val_every_validates_every_n_epochs_and_the_last(tmp_path, tiny_config):
    cfg = tiny_config(tmp_path, "ce", epochs=5, **{"run.val_every": 2, "data.train_subset": 512,
                                                   "data.val_size": 256, "data.test_subset": 256,
                                                   "model.width": 4})
    results = train(cfg, log=lambda s: None)
    run = Path(results["run_dir"])
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [("val" in r) for r in records] == [False, True, False, True, True]
    validated = {r["epoch"]: r["val"]["mean_acc"] for r in records if "val" in r}
    assert results["best_epoch"] == max(validated, key=validated.get)
    assert results["val"]["mean_acc"] == pytest.approx(max(validated.values()), abs=1e-6)
    with pytest.raises(MateError, match=r"^config key 'run.val_every' must be >= 1, got 0$"):
        tiny_config(tmp_path / "x", "ce", epochs=1, **{"run.val_every": 0})


def test_an_epoch_records_every_phase_for_the_profiler(tmp_path, tiny_config):
    """run_epoch is fit's epoch (its record is what metrics.jsonl gets), and each of its phases is a
    torch.profiler range, as benchmarks/engine_overhead.py reads them."""
    from torch.profiler import ProfilerActivity, profile

    from mate.engine.step import PHASES

    config = tiny_config(tmp_path, "mate", 2, **{"data.train_subset": 256, "run.name": "phases"})
    trainer = Trainer(config, log=lambda s: None)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        record = trainer.run_epoch(0)
    trainer.logger.close(True)
    counts = {label: 0 for label in PHASES.values()}
    for event in prof.events():
        if event.name in counts:
            counts[event.name] += 1
    steps = 256 // config.data.batch_size
    assert {label: n > 0 for label, n in counts.items()} == {label: True for label in PHASES.values()}
    assert counts[PHASES["forward"]] == counts[PHASES["backward"]] == counts[PHASES["optimizer"]] == steps
    assert counts[PHASES["data"]] == steps + 1  # the fetch that finds the loader exhausted included
    assert counts[PHASES["validation"]] == counts[PHASES["checkpoint"]] == 1
    logged = [json.loads(line) for line in (tmp_path / "phases" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logged] == [record["epoch"]] == [1]
    assert (tmp_path / "phases" / "last.pt").is_file() and (tmp_path / "phases" / "best.pt").is_file()


@pytest.mark.parametrize("schedule, epochs, warmup, expected", [
    # multistep: x lr_decay at each milestone passed (epochs 2 and 4); the warm-up (half an epoch, 5 steps)
    # scales step s by (s + 1) / 5 on top
    ("multistep", 6, 0.5, {0: 0.2, 2: 0.6, 4: 1.0, 5: 1.0, 19: 1.0, 20: 0.1, 39: 0.1, 40: 0.01, 59: 0.01}),
    # cosine over the whole run, (1 + cos(pi e / E)) / 2 with e = step / 10, warm-up of one epoch (10 steps)
    ("cosine", 4, 1.0, {0: 0.1, 5: 0.6 * (1 + math.cos(math.pi * 0.5 / 4)) / 2, 10: (1 + math.cos(math.pi / 4)) / 2,
                        20: 0.5, 40: 0.0, 45: 0.0}),
    ("constant", 3, 0.0, {0: 1.0, 17: 1.0, 29: 1.0}),
])
def test_the_learning_rate_schedule_follows_its_formula(schedule, epochs, warmup, expected):
    from mate.config import load_config
    from mate.engine.trainer import lr_factor

    config = load_config(None, [f"optim.schedule={schedule}", f"optim.epochs={epochs}", "optim.milestones=[2,4]",
                                "optim.lr_decay=0.1", f"optim.warmup_epochs={warmup}"])
    factor = lr_factor(config, steps_per_epoch=10)
    assert {step: factor(step) for step in expected} == pytest.approx(expected, abs=1e-15)
