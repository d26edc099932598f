"""`mate sweep` and the launchers: a real tiny sweep through each, identical to the sequential run."""
import csv
import json
import os
import sys
from pathlib import Path

import pytest

from mate.cli import main
from mate.errors import ConfigError, MateError
from mate.experiments.launchers import LaunchOptions
from mate.experiments.sweep import expand_grid, parse_grid, point_name, sweep

TINY = ["data.val_size=256", "data.train_subset=256", "data.test_subset=256", "model.width=4", "optim.epochs=1",
        "data.batch_size=64", "run.progress=false", "run.tensorboard=false", "data.download=false"]
GRID = {"optim.lr": [0.05, 0.1], "method": ["ce"]}


@pytest.fixture(scope="module")
def tiny(fmnist_root) -> list[str]:
    """TINY, on the suite's Fashion-MNIST."""
    return [f"data.root={fmnist_root}", *TINY]


def test_grid_parsing_and_point_names():
    grid = parse_grid(["optim.lr=0.05,0.1", "objective.primary_share=0.5,0.7", "method=ce,mate"])
    assert grid == {"optim.lr": [0.05, 0.1], "objective.primary_share": [0.5, 0.7], "method": ["ce", "mate"]}
    points = expand_grid(grid)
    assert len(points) == 8 and points[0] == {"optim.lr": 0.05, "objective.primary_share": 0.5, "method": "ce"}
    assert point_name(points[0]) == "lr=0.05_primary_share=0.5_method=ce"
    assert point_name({"model.width": 8, "data.width": 2}) == "model.width=8_data.width=2"  # same leaf: full keys
    with pytest.raises(ConfigError, match="section.key"):
        parse_grid(["lr=0.1"])
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["optim.lr=0.1", "optim.lr=0.2"])


def _accuracies(out):
    return {r["point"] + "/" + r["seed"]: (r["exit1"], r["exit4"], r["val_mean"])
            for r in csv.DictReader(open(out / "runs.csv"))}


@pytest.fixture(scope="module")
def sequential(tmp_path_factory, tiny):
    out = tmp_path_factory.mktemp("seq")
    sweep("fashion_mnist_bench", GRID, 1, out, overrides=tiny, log=lambda s: None)
    return out


def test_local_workers_equal_sequential_and_rerun_trains_nothing(sequential, tmp_path, tiny, capsys):
    out = tmp_path / "par"
    args = ["sweep", "--config", "fashion_mnist_bench", "--grid", "optim.lr=0.05,0.1", "method=ce", "--seeds", "1",
            "--out", str(out), "--launcher", "local", "--workers", "2", "--set", *tiny]
    assert main(args) == 0
    assert _accuracies(out) == _accuracies(sequential)
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [(r["optim.lr"], r["method"]) for r in rows] == [("0.05", "ce"), ("0.1", "ce")]
    assert (out / "sweep_optim_lr.png").stat().st_size > 0
    # interrupted: one run lost its results (its checkpoint stays) -> only that run is trained again
    (out / "runs" / "lr=0.1_method=ce-s0" / "results.json").unlink()
    capsys.readouterr()
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.count("done already") == 1 and text.count("resuming") == 1 and "training in" not in text
    assert _accuracies(out) == _accuracies(sequential)


def test_ray_on_a_local_runtime_equals_sequential(sequential, tmp_path, tiny):
    ray = pytest.importorskip("ray", reason="the test extras install ray")
    # Ray starts its workers at niceness 15: beside the suite's other processes they would get
    # almost no CPU (importing torch took 60 s instead of 4 s there).
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _system_config={"worker_niceness": 0})
    try:
        out = tmp_path / "ray"
        sweep("fashion_mnist_bench", GRID, 1, out, overrides=tiny, log=lambda s: None,
              options=LaunchOptions(launcher="ray", cpus_per_run=1))
    finally:
        ray.shutdown()
    assert _accuracies(out) == _accuracies(sequential)


def test_submitit_local_executor_equals_sequential(sequential, tmp_path, tiny):
    pytest.importorskip("submitit", reason="the test extras install submitit")
    out = tmp_path / "slurm"
    sweep("fashion_mnist_bench", GRID, 1, out, overrides=tiny, log=lambda s: None,
          options=LaunchOptions(launcher="slurm", cluster="local", time_min=10))
    assert _accuracies(out) == _accuracies(sequential)
    assert list((out / "runs" / "slurm_logs").glob("*/*.out"))  # submitit's logs live under the sweep folder


def test_a_failing_point_is_reported_with_its_log_and_the_rest_finish(tmp_path, tiny):
    out = tmp_path / "fail"
    with pytest.raises(MateError) as info:
        sweep("fashion_mnist_bench", {"optim.lr": [1.0e30, 0.1], "method": ["ce"]}, 1, out, overrides=tiny,
              log=lambda s: None, options=LaunchOptions(workers=2))
    message = str(info.value)
    assert "1 of 2 runs failed" in message and "lr=1.0e+30_method=ce 0" in message
    assert "train.log" in message and "became" in (out / "runs" / "lr=1.0e+30_method=ce-s0" / "train.log").read_text()
    assert json.loads((out / "runs" / "lr=0.1_method=ce-s0" / "results.json").read_text())["test"]["n"] == 256


def test_points_file_and_errors(tmp_path, tiny):
    points = tmp_path / "points.yaml"
    points.write_text("small: {model.width: 4, method: ce}\n")
    rows = sweep("fashion_mnist_bench", None, 1, tmp_path / "p", points_file=points, overrides=tiny,
                 log=lambda s: None)
    assert [r["point"] for r in rows] == ["small"] and rows[0]["values"] == {"model.width": 4, "method": "ce"}
    # points that set different keys: each key is a column, empty where a point leaves the config's value
    points.write_text("narrow: {model.width: 4, method: ce}\nlr: {optim.lr: 0.05, method: ce}\n")
    rows = sweep("fashion_mnist_bench", None, 1, tmp_path / "q", points_file=points, overrides=tiny,
                 log=lambda s: None)
    assert [r["point"] for r in rows] == ["narrow", "lr"]
    with open(tmp_path / "q" / "sweep.csv") as f:
        table = list(csv.DictReader(f))
    assert [(r["point"], r["model.width"], r["method"], r["optim.lr"]) for r in table] == \
        [("narrow", "4", "ce", ""), ("lr", "", "ce", "0.05")]
    head, _, first, second = (tmp_path / "q" / "table.md").read_text().splitlines()[2:6]
    assert head.startswith("| point | model.width | method | optim.lr | exit 1 |")
    assert first.startswith("| narrow | 4 | ce |  | ") and second.startswith("| lr |  | ce | 0.05 | ")
    with pytest.raises(ConfigError, match="one of the two"):
        sweep("fashion_mnist_bench", GRID, 1, tmp_path / "x", points_file=points)
    with pytest.raises(ConfigError, match="not supported with --launcher ray"):
        sweep("fashion_mnist_bench", GRID, 1, tmp_path / "y", overrides=tiny,
              options=LaunchOptions(launcher="ray", nproc_per_run=2))


def test_missing_launcher_package_is_a_clear_error(tmp_path, monkeypatch, tiny):
    import sys

    for module, launcher, extra in (("ray", "ray", "ray"), ("submitit", "slurm", "slurm")):
        monkeypatch.setitem(sys.modules, module, None)  # "import ray" now raises ImportError
        with pytest.raises(MateError, match=rf"pip install 'mate-distill\[{extra}\]'"):
            sweep("fashion_mnist_bench", GRID, 1, tmp_path / module, overrides=tiny, log=lambda s: None,
                  options=LaunchOptions(launcher=launcher))


@pytest.mark.parametrize("launcher", ["local", "slurm"])
def test_a_run_that_is_itself_distributed(tmp_path, tiny, launcher):
    """--nproc-per-run 2: torchrun on this machine, or two tasks of one submitit job that form one group."""
    if launcher == "slurm":
        pytest.importorskip("submitit", reason="the test extras install submitit")
    out = tmp_path / launcher
    rows = sweep("fashion_mnist_bench", {"method": ["ce"]}, 1, out, overrides=tiny, log=lambda s: None,
                 options=LaunchOptions(launcher=launcher, nproc_per_run=2, cluster="local", threads=1))
    run = out / "runs" / "method=ce-s0"
    state_world = json.loads((run / "results.json").read_text())
    assert state_world["test"]["n"] == 256 and rows[0]["seeds"] == 1
    from mate.engine import load_checkpoint

    assert load_checkpoint(run / "last.pt")["world_size"] == 2


def test_launch_reports_each_finished_run_as_it_ends(tmp_path, tiny):
    """on_finished is called for a run once its results exist (a sweep archives it there and then),
    and not for a run that failed."""
    from mate.config import load_config
    from mate.experiments.launchers import RunTask, launch

    ok = load_config("fashion_mnist_bench", [*tiny, "objective.name=ce"]).to_dict()
    bad = load_config("fashion_mnist_bench", [*tiny, "objective.name=ce", "optim.lr=1.0e+30"]).to_dict()
    tasks = [RunTask(("bad",), bad, str(tmp_path / "bad")), RunTask(("ok",), ok, str(tmp_path / "ok"))]
    seen = []
    failures = launch(tasks, LaunchOptions(workers=2), log=lambda s: None,
                      on_finished=lambda t: seen.append((t.key, (Path(t.run_dir) / "results.json").exists())))
    assert seen == [(("ok",), True)] and list(failures) == [("bad",)]


def _where_am_i() -> tuple:
    return os.getcwd(), os.environ.get("MATE_POOL_PROBE"), sys.path[0]


def test_pool_workers_get_the_folder_environment_and_path_of_the_pool_start(tmp_path, monkeypatch):
    """The workers are forked from a fork server started once per process; each new pool's workers
    still see the starting process's working folder, environment and module path of that moment."""
    from mate.experiments.launchers import local_pool

    with local_pool(1) as pool:  # starts the fork server (if this process had none yet) here
        assert pool.submit(_where_am_i).result()[1] is None
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MATE_POOL_PROBE", "set after the server started")
    monkeypatch.syspath_prepend(str(tmp_path))
    with local_pool(1) as pool:
        assert pool.submit(_where_am_i).result() == (str(tmp_path), "set after the server started", str(tmp_path))
