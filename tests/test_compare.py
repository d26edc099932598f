"""`mate compare` and `mate report` on a tiny subset of the suite's Fashion-MNIST (smoke size)."""
import csv
import json
import os

import pytest

from mate.cli import main
from mate.config import load_config
from mate.errors import ConfigError
from mate.experiments import load_method_specs, render_report
from mate.experiments.compare import run_config

TINY = ["data.val_size=500", "data.train_subset=1024", "data.test_subset=500", "model.width=4",
        "optim.epochs=2", "data.batch_size=128", "run.progress=false", "run.tensorboard=false"]


@pytest.fixture()
def tiny(fmnist_root) -> list[str]:
    """TINY, on the suite's Fashion-MNIST."""
    return [f"data.root={fmnist_root}", *TINY]


def test_compare_smoke_writes_table_csv_plots_and_resumes(tmp_path, tiny, capsys):
    out = tmp_path / "cmp"
    args = ["compare", "--config", "fashion_mnist_bench", "--methods", "ce,mate", "--seeds", "1",
            "--out", str(out), "--paired-against", "mate", *tiny]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "| ce |" in text and "| mate |" in text
    for name in ("table.md", "summary.csv", "runs.csv", "per_exit_accuracy.png", "improvement_over_ce.png",
                 "paired_vs_ce.md", "paired_vs_mate.md"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader(open(out / "runs.csv")))
    assert [r["method"] for r in rows] == ["ce", "mate"]
    # table numbers are the runs' test accuracies (1 seed: mean = the run, std = 0)
    res = json.loads((out / "runs" / "mate-s0" / "results.json").read_text())
    summary = list(csv.DictReader(open(out / "summary.csv")))
    assert float(summary[1]["exit1_mean"]) == pytest.approx(res["test"]["exit_acc"][0], abs=1e-3)
    assert float(summary[1]["exit1_std"]) == 0.0
    # the second invocation trains nothing: every run is finished
    mtimes = {p: p.stat().st_mtime for p in (out / "runs").glob("*/best.pt")}
    assert main(args) == 0
    assert "done already" in capsys.readouterr().out
    assert mtimes == {p: p.stat().st_mtime for p in (out / "runs").glob("*/best.pt")}

    report = render_report(out / "runs" / "mate-s0")
    page = report.read_text()
    assert "Learning-gap diagnostics" in page and "| 4 |" in page
    for png in ("curves.png", "attention.png", "teacher_student_kl.png"):
        assert (report.parent / png).stat().st_size > 0


def test_method_specs_and_variants(tmp_path):
    specs = {s.name: s.objective for s in load_method_specs(["ce", "okddip", "mate_uniform"])}
    assert specs == {"ce": {"name": "ce"},
                     "okddip": {"name": "mate", "primary_share": 1.0, "detach_policy": "d1", "teacher_ce_weight": 0.0},
                     "mate_uniform": {"name": "mate", "teacher": "uniform"}}
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        load_method_specs(["nope"])
    extra = tmp_path / "v.yaml"
    extra.write_text("hot: {name: mate, temperature: 6}\n")
    assert load_method_specs(["hot"], extra)[0].objective == {"name": "mate", "temperature": 6}


def test_variants_inherit_the_base_objective_options(tmp_path):
    base = load_config("fashion_mnist_bench").to_dict()
    spec = load_method_specs(["mate_g0.9"])[0]
    cfg = run_config(base, spec, seed=2, runs_dir=tmp_path)
    assert cfg.objective["primary_share"] == 0.9 and cfg.objective["rampup_epochs"] == 1.5
    assert cfg.run.seed == 2 and cfg.run.name == "mate_g0.9-s2"
    assert run_config(base, load_method_specs(["byot"])[0], 0, tmp_path).objective == {"name": "byot"}
    # every run of a comparison shares the data split, model and schedule
    assert cfg.data == run_config(base, spec, seed=0, runs_dir=tmp_path).data


def test_report_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "has no metrics.jsonl" in capsys.readouterr().err


def test_compare_with_two_workers_equals_sequential_and_archives(tmp_path, tiny, capsys):
    """--workers 2 trains in two one-thread processes; every number equals the sequential run's.
    --archive keeps each finished run's small files, and a run found there is not trained again."""
    common = ["--config", "fashion_mnist_bench", "--methods", "ce,mate", "--seeds", "1", *tiny,
              "optim.epochs=1", "data.train_subset=512"]
    seq, par = tmp_path / "seq", tmp_path / "par"
    assert main(["compare", *common, "--out", str(seq)]) == 0
    assert main(["compare", *common, "--out", str(par), "--workers", "2", "--archive", str(tmp_path / "arch")]) == 0
    for run in ("ce-s0", "mate-s0"):
        a = json.loads((seq / "runs" / run / "results.json").read_text())
        b = json.loads((par / "runs" / run / "results.json").read_text())
        assert a["test"] == b["test"] and a["val"] == b["val"], run
        assert sorted(p.name for p in (tmp_path / "arch" / run).iterdir()) == [
            "config.yaml", "metrics.jsonl", "results.json", "split.json"]
    # a fresh machine: no run folders, only the archive -> nothing is trained, same table
    fresh = tmp_path / "fresh"
    capsys.readouterr()
    assert main(["compare", *common, "--out", str(fresh), "--workers", "2", "--archive", str(tmp_path / "arch")]) == 0
    text = capsys.readouterr().out
    assert text.count("done already") == 2 and "training" not in text
    assert not list((fresh / "runs").glob("*/*.pt"))
    assert (fresh / "summary.csv").read_text() == (par / "summary.csv").read_text()


def test_a_failed_run_is_reported_and_the_others_finish(tmp_path, tiny, capsys):
    variants = tmp_path / "v.yaml"
    variants.write_text("boom: {name: mate, kd_weight: 1.0e+38, temperature: 0.01}\n")
    args = ["compare", "--config", "fashion_mnist_bench", "--methods", "boom,ce", "--seeds", "1", *tiny,
            "optim.epochs=1", "data.train_subset=512", "--variants", str(variants), "--out", str(tmp_path / "o"),
            "--workers", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "1 of 2 runs failed" in err and "boom 0" in err
    assert (tmp_path / "o" / "runs" / "ce-s0" / "results.json").exists()


def test_long_form_variants_change_other_sections(tmp_path):
    base = load_config("fashion_mnist_bench").to_dict()
    specs = {s.name: s for s in load_method_specs(["mate_ge", "ce_ge", "mate_conf"], "claim_candidates")}
    ge = run_config(base, specs["mate_ge"], 0, tmp_path)
    assert ge.model == {"name": "resnet18", "width": 16, "gradient_equilibrium": True}
    assert ge.objective["rampup_epochs"] == 1.5  # the base's MATE options still carry over
    assert run_config(base, specs["ce_ge"], 0, tmp_path).objective == {"name": "ce"}
    plain = run_config(base, specs["mate_conf"], 0, tmp_path)
    assert "gradient_equilibrium" not in plain.model and plain.objective["offdiag"] == "confidence"
    bad = tmp_path / "bad.yaml"
    bad.write_text("x: {objective: {name: ce}, loss: {a: 1}}\n")
    with pytest.raises(ConfigError, match="among data, model, optim, run"):
        load_method_specs(["x"], bad)


def test_paired_differences_are_per_seed():
    from mate.experiments.compare import paired_differences, paired_table

    def run(accs, ens):
        return {"test": {"exit_acc": accs, "ensemble_acc": ens}}

    results = {("ce", 0): run([80.0, 90.0], 85.0), ("ce", 1): run([82.0, 88.0], 86.0), ("ce", 2): run([81.0, 89.0], 84.0),
               ("mate", 0): run([81.0, 89.0], 86.0), ("mate", 1): run([84.0, 88.0], 85.0),
               ("mate", 2): run([82.5, 88.0], 84.0)}
    d = paired_differences(results, "mate", "ce", 3)
    # exit 1: +1, +2, +1.5 -> mean 1.5, std 0.5, 3 above; exit 2: -1, 0, -1 -> mean -2/3, 0 above, 2 below
    assert d["exit"][0] == pytest.approx((1.5, 0.5, 3, 0))
    assert d["exit"][1][:2] == pytest.approx((-2 / 3, 0.57735, ), abs=1e-5) and d["exit"][1][2:] == (0, 2)
    assert d["ensemble"][2:] == (1, 1)
    table = paired_table(results, ["ce", "mate"], "ce", 3)
    assert "| mate − ce | +1.50 ± 0.50 (3↑ 0↓) | -0.67 ± 0.58 (0↑ 2↓) |" in table


def test_compare_and_sweep_without_config_train_the_recipe_mate_train_does(tmp_path):
    """One default base for the three commands: the same overrides give the same run."""
    from mate.config import DEFAULT_CONFIG
    from mate.experiments.compare import MethodSpec
    from mate.experiments.sweep import base_config, build_points

    overrides = ["optim.lr=0.05", "model.width=8"]
    trained = load_config(DEFAULT_CONFIG, overrides)  # what `mate train optim.lr=0.05 model.width=8` trains
    assert DEFAULT_CONFIG == "fashion_mnist_quick" and trained.optim.nesterov and trained.optim.schedule == "cosine"
    compared = run_config(base_config(None, overrides), MethodSpec("mate", {"name": "mate"}), 0, tmp_path)
    swept = build_points(base_config(None, overrides), [(None, {"objective.kd_weight": 1.0})], [0], tmp_path)
    for config in (compared, swept[0].configs[0]):
        assert (config.data, config.model, config.objective, config.optim) == (
            trained.data, trained.model, trained.objective, trained.optim)


def test_every_value_axis_of_the_report_and_comparison_plots_names_its_unit(monkeypatch, tmp_path):
    from matplotlib.figure import Figure

    from mate.experiments import plots, run_report

    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: figures.append(fig))
    records = [{"epoch": e, "train": {"ce": [1.0 / e] * 4, "loss": 2.0 / e, "teacher_student_kl": [[0.1] * 4] * 4},
                "val": {"exit_acc": [50.0 + e] * 4, "ensemble_acc": 55.0}} for e in (1, 2)]
    run_report.plot_curves(records, tmp_path / "c.png")
    run_report.plot_kl(records, tmp_path / "k.png")
    summary = {"ce": {"exit_acc": [(50.0, 1.0)] * 4}, "mate": {"exit_acc": [(52.0, 1.0)] * 4}}
    plots.plot_exit_accuracy(summary, tmp_path / "e.png")
    plots.plot_improvement(summary, "ce", tmp_path / "i.png", {"mate": {"exit": [(2.0, 0.5)] * 4, "n": 3}})
    labels = [(ax.get_xlabel(), ax.get_ylabel()) for fig in figures for ax in fig.axes]
    assert labels == [("epoch", "loss (nats, log scale)"), ("epoch", "validation accuracy (%)"),
                      ("epoch", "KL_T(teacher || student), T² batchmean (nats, log scale)"),
                      ("exit", "test accuracy (%)"), ("exit", "accuracy − ce (percentage points)")]


def test_dry_run_says_what_each_run_needs_and_trains_and_writes_nothing(tmp_path, capsys):
    from mate.config import config_to_yaml
    from mate.engine.files import FolderLock

    runs, archive, out = tmp_path / "runs", tmp_path / "archive", tmp_path / "out"
    base = load_config("fashion_mnist_claim").to_dict()
    cfg = {m: run_config(base, spec, 0, runs) for m, spec in
           zip(["ce", "mate", "byot", "phuong", "eed"], load_method_specs(["ce", "mate", "byot", "phuong", "eed"]))}
    for folder in (runs / "ce-s0", archive / "mate-s0", runs / "byot-s0", runs / "eed-s0"):
        folder.mkdir(parents=True)
    (runs / "ce-s0/results.json").write_text(json.dumps({"config": cfg["ce"].to_dict()}))
    (archive / "mate-s0/results.json").write_text(json.dumps({"config": cfg["mate"].to_dict()}))
    (runs / "byot-s0/last.pt").write_bytes(b"")
    (runs / "byot-s0/config.yaml").write_text(config_to_yaml(cfg["byot"]))
    args = ["compare", "--config", "fashion_mnist_claim", "--methods", "ce,mate,byot,phuong,eed", "--seeds", "1",
            "--runs", str(runs), "--archive", str(archive), "--out", str(out), "--dry-run"]
    with FolderLock(runs / "eed-s0", "the run folder", "wait") as lock:  # another process training it
        assert lock.holder()["pid"] == os.getpid()
        assert main(args) == 0
    assert FolderLock(runs / "eed-s0", "the run folder", "wait").holder() is None  # released
    assert capsys.readouterr().out.splitlines() == [
        "[plan] ce 0: finished in its run folder",
        "[plan] mate 0: restored from the archive, not trained",
        "[plan] byot 0: resumed from its last.pt",
        "[plan] phuong 0: trained from the start",
        "[plan] eed 0: being trained by another process now",
        "5 runs: 1 done, 1 archived, 1 busy, 1 resume, 1 train (dry run: nothing trained or written)"]
    assert not out.exists() and sorted(p.name for p in runs.iterdir()) == ["byot-s0", "ce-s0", "eed-s0"]
    assert sorted(p.name for p in archive.iterdir()) == ["mate-s0"]
    # a run recorded with another config is found now, not when the grid reaches it
    (runs / "ce-s0/results.json").write_text(json.dumps({"config": dict(cfg["ce"].to_dict(),
                                                                         optim={**base["optim"], "lr": 0.5})}))
    assert main(args) != 0
    assert "optim.lr=0.5 (requested 0.1)" in capsys.readouterr().err
    # the same for a sweep
    sweep = ["sweep", "--config", "fashion_mnist_claim", "--grid", "method=ce", "optim.lr=0.1", "--seeds", "1",
             "--runs", str(tmp_path / "sweep_runs"), "--out", str(tmp_path / "sweep"), "--dry-run"]
    assert main(sweep) == 0
    assert capsys.readouterr().out.splitlines() == [
        "[plan] method=ce_lr=0.1 0: trained from the start",
        "1 runs: 0 done, 0 archived, 0 busy, 0 resume, 1 train (dry run: nothing trained or written)"]
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "sweep_runs").exists()
