"""Experiment trackers (run.loggers): TensorBoard, MLflow (a local file store) and W&B (offline),
each read back after a run: parameters, per-step and per-epoch scalars, the final per-exit table."""
import json
import math
import struct
import sys
from pathlib import Path

import pytest

from conftest import make_tiny_config as tiny_config
from mate.cli import main
from mate.config import load_config
from mate.engine import Trainer, train
from mate.engine.logger import flatten_params, resolve_loggers
from mate.errors import ConfigError

SMALL = {"data.train_subset": 512, "data.val_size": 256, "data.test_subset": 256, "data.batch_size": 64,
         "model.width": 4, "run.name": "run"}  # 8 optimizer steps an epoch
STEPS_PER_EPOCH = 8


def small_config(tmp_path, epochs=2, **extra):
    return tiny_config(tmp_path, "ce", epochs, **{**SMALL, **extra})


def quiet(message):
    pass


@pytest.fixture(autouse=True)
def no_tracker_telemetry(monkeypatch):
    """Trackers stay local: no usage reports (nothing could reach them here anyway)."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def expected_lr(config, step: int) -> float:
    """The rate of optimizer step ``step`` (1-based), the cosine schedule written out (no warm-up): at
    t = (step - 1) / STEPS_PER_EPOCH epochs of T, lr x (1 + cos(pi t / T)) / 2."""
    assert (config.optim.schedule, config.optim.warmup_epochs) == ("cosine", 0.0)
    t = (step - 1) / STEPS_PER_EPOCH
    return config.optim.lr * (0.5 * (1.0 + math.cos(math.pi * t / config.optim.epochs)))


def stop_after_first_epoch(config):
    """Train ``config`` and stop it (KeyboardInterrupt) when its second epoch starts."""
    trainer = Trainer(config, log=quiet)
    real_epoch = trainer.train_epoch

    def stops(epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real_epoch(epoch)

    trainer.train_epoch = stops
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    return trainer.run_dir


# -- choosing loggers ------------------------------------------------------------------------------
def test_run_tensorboard_adds_or_removes_tensorboard_from_the_loggers():
    assert resolve_loggers(["tensorboard"]) == ["tensorboard"]
    assert resolve_loggers(["mlflow"]) == ["mlflow"]
    assert resolve_loggers(["mlflow"], tensorboard=True) == ["mlflow", "tensorboard"]
    assert resolve_loggers(["tensorboard", "wandb"], tensorboard=False) == ["wandb"]
    assert resolve_loggers(["wandb", "wandb"], tensorboard=None) == ["wandb"]
    default = load_config(None, []).run
    assert (default.loggers, default.tensorboard, default.log_every) == (["tensorboard"], None, 0)


def test_an_unknown_logger_is_a_config_error():
    with pytest.raises(ConfigError, match=r"^config key 'run.loggers\[1\]' must be one of 'tensorboard', 'mlflow', "
                                          r"'wandb', got 'neptune'$"):
        load_config(None, ["run.loggers=[mlflow, neptune]"])


@pytest.mark.parametrize("package", ["mlflow", "wandb"])
def test_a_missing_tracker_package_is_one_clear_error_before_anything_runs(tmp_path, capsys, monkeypatch, package):
    monkeypatch.setitem(sys.modules, package, None)  # what an environment without the extra looks like
    assert main(["train", f"run.out_dir={tmp_path}", "run.name=x", f"run.loggers=[{package}]",
                 "data.download=false"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"mate: error: run.loggers includes {package}, but the {package} package is not installed; install it "
        f"with pip install 'mate-distill[{package}]' (or drop {package} from run.loggers)")
    assert not (tmp_path / "x").exists()


# -- TensorBoard -----------------------------------------------------------------------------------
def test_tensorboard_gets_per_step_and_per_epoch_scalars_and_the_final_table(tmp_path, fmnist_root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = small_config(tmp_path, **{"run.tensorboard": "null", "run.log_every": 1})  # the default loggers
    results = train(cfg, log=quiet)
    run = Path(results["run_dir"])
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0}).Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    epochs = records(run)
    assert [s for s, _ in scalars["train/loss"]] == [1, 2]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([r["train"]["loss"] for r in epochs], rel=1e-6)
    assert [v for _, v in scalars["val/exit_acc/4"]] == pytest.approx([r["val"]["exit_acc"][3] for r in epochs])
    steps = scalars["step/loss"]
    assert [s for s, _ in steps] == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    # every batch has 64 images, so an epoch's mean loss is the mean of its steps' losses
    for e, r in enumerate(epochs):
        own = [v for s, v in steps if e * STEPS_PER_EPOCH < s <= (e + 1) * STEPS_PER_EPOCH]
        assert sum(own) / len(own) == pytest.approx(r["train"]["loss"], rel=1e-5)
    assert [v for _, v in scalars["step/lr"]] == pytest.approx([expected_lr(cfg, s) for s, _ in steps], rel=1e-6)
    assert "step/exit_acc/1" in scalars and "step/grad_norm" not in scalars  # clipping is off
    for split in ("val", "test"):
        for k in range(4):
            assert scalars[f"final/{split}/exit_acc/{k + 1}"] == [(2, pytest.approx(results[split]["exit_acc"][k]))]
        assert scalars[f"final/{split}/ensemble_acc"][0][1] == pytest.approx(results[split]["ensemble_acc"])
    table = events.Tensors("exit_table/text_summary")[0].tensor_proto.string_val[0].decode()
    assert table == results["table"]
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| optim.lr | 0.1 |" in config_text.splitlines()


def test_step_scalars_include_the_clipped_gradient_norm_and_objective_logs(tmp_path, fmnist_root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny_config(tmp_path, "mate", 1, **{**SMALL, "run.tensorboard": "true", "run.log_every": 4,
                                               "optim.clip_grad_norm": 1.0})
    run = Path(train(cfg, log=quiet)["run_dir"])
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0}).Reload()
    tags = events.Tags()["scalars"]
    for tag in ("step/loss", "step/lr", "step/grad_norm", "step/kd_lambda", "step/ce/1", "step/teacher_ce/4"):
        assert [e.step for e in events.Scalars(tag)] == [4, 8], tag
    assert all(e.value > 0 for e in events.Scalars("step/grad_norm"))  # the norm before clipping
    assert "step/attention/1/1" in tags


# -- MLflow ----------------------------------------------------------------------------------------
def test_mlflow_file_store_gets_params_scalars_and_the_final_table_across_a_resume(tmp_path, fmnist_root,
                                                                                     monkeypatch):
    pytest.importorskip("mlflow", reason="the test extras install mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "")  # unset for the test (restored afterwards):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")     # the default store must work without it
    cfg = small_config(tmp_path, **{"run.loggers": "[mlflow]", "run.log_every": 4})
    run = stop_after_first_epoch(cfg)
    client = MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())  # the default: beside the run folder
    run_id = json.loads((run / "trackers.json").read_text())["mlflow"]["run_id"]
    assert client.get_run(run_id).info.status == "FAILED"  # stopped
    results = train(cfg, resume=True, log=quiet)

    experiment = client.get_experiment_by_name("mate")
    (logged,) = client.search_runs([experiment.experiment_id])
    assert logged.info.run_id == run_id  # the resumed run continued the same MLflow run
    assert (logged.info.run_name, logged.info.status) == ("run", "FINISHED")
    assert logged.data.tags["mate.run_dir"] == str(run)
    params = logged.data.params
    assert params.keys() == flatten_params(cfg.to_dict()).keys()
    assert (params["optim.lr"], params["model.width"], params["run.loggers"], params["data.root"]) == (
        "0.1", "4", '["mlflow"]', cfg.data.root)

    def history(key):
        return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]

    epochs = records(run)
    assert history("train/loss") == [(e + 1, r["train"]["loss"]) for e, r in enumerate(epochs)]
    assert history("val/mean_acc") == [(e + 1, r["val"]["mean_acc"]) for e, r in enumerate(epochs)]
    assert history("lr") == [(e + 1, r["lr"]) for e, r in enumerate(epochs)]
    assert [s for s, _ in history("step/loss")] == [4, 8, 12, 16]
    assert history("step/lr") == [(s, expected_lr(cfg, s)) for s in (4, 8, 12, 16)]
    for split in ("val", "test"):
        for k in range(4):
            assert history(f"final/{split}/exit_acc/{k + 1}") == [(2, results[split]["exit_acc"][k])]
        assert history(f"final/{split}/ensemble_acc") == [(2, results[split]["ensemble_acc"])]
        assert history(f"final/{split}/mean_acc") == [(2, results[split]["mean_acc"])]
    assert [a.path for a in client.list_artifacts(run_id)] == ["exit_table.md"]
    table = Path(client.download_artifacts(run_id, "exit_table.md", str(tmp_path))).read_text()
    assert table == results["table"] + "\n"
    assert not (run / "tensorboard").exists()


def test_mlflow_logs_to_the_given_tracking_uri_and_project(tmp_path, fmnist_root):
    pytest.importorskip("mlflow", reason="the test extras install mlflow")
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "elsewhere").as_uri()
    cfg = small_config(tmp_path / "runs", epochs=1, **{"run.loggers": "[mlflow]", "run.mlflow_uri": uri,
                                                       "run.project": "fmnist-recipes"})
    results = train(cfg, log=quiet)
    client = MlflowClient(tracking_uri=uri)
    (logged,) = client.search_runs([client.get_experiment_by_name("fmnist-recipes").experiment_id])
    assert logged.data.metrics["final/test/mean_acc"] == results["test"]["mean_acc"]
    assert not (tmp_path / "runs" / "mlruns").exists()


# -- W&B (offline) ---------------------------------------------------------------------------------
def wandb_records(path: Path):
    """The records of a W&B transaction log (``run-<id>.wandb``): a 7-byte header, then LevelDB-style
    32 KiB blocks of chunks (crc32, length, type: full, first, middle, last), each record a protobuf."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def read_wandb_run(run_dir: Path) -> dict:
    """Run name, project, config, history rows, summary and exit code of one offline run folder."""
    def items(entries) -> dict:  # a key with "/" may be stored split, as nested_key
        return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in entries}

    out = {"config": {}, "history": [], "summary": {}}
    for record in wandb_records(next(run_dir.glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out.update(id=record.run.run_id, name=record.run.display_name, project=record.run.project)
            out["config"].update(items(record.run.config.update))
        elif kind == "config":
            out["config"].update(items(record.config.update))
        elif kind == "history":
            out["history"].append(items(record.history.item))
        elif kind == "summary":
            out["summary"].update(items(record.summary.update))
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out


@pytest.fixture()
def wandb_offline(tmp_path, monkeypatch) -> Path:
    """W&B in offline mode, every file it writes under tmp_path; the folder of its runs."""
    pytest.importorskip("wandb", reason="the test extras install wandb")
    root = tmp_path / "wandb_home"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(root / name.lower()))
        (root / name.lower()).mkdir(parents=True)
    for name in ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(name, raising=False)
    return root / "wandb_dir" / "wandb"


def test_wandb_offline_run_gets_params_scalars_and_the_final_table_across_a_resume(tmp_path, fmnist_root,
                                                                                     wandb_offline):
    cfg = small_config(tmp_path / "runs", **{"run.loggers": "[wandb]", "run.log_every": 4})
    run = stop_after_first_epoch(cfg)
    results = train(cfg, resume=True, log=quiet)
    run_id = json.loads((run / "trackers.json").read_text())["wandb"]["id"]
    first, second = (read_wandb_run(d) for d in sorted(wandb_offline.glob(f"offline-run-*-{run_id}")))
    assert first["exit_code"] == 1 and second["exit_code"] == 0  # stopped, then finished
    assert (second["id"], second["name"], second["project"]) == (run_id, "run", "mate")
    assert second["config"]["optim.lr"] == 0.1 and second["config"]["run.loggers"] == ["wandb"]
    assert {k: v for k, v in second["config"].items() if k != "_wandb"} == flatten_params(cfg.to_dict())

    rows = first["history"] + second["history"]
    epochs = records(run)
    per_epoch = [r for r in rows if "train/loss" in r]
    assert [(r["epoch"], r["global_step"]) for r in per_epoch] == [(1, 8), (2, 16)]
    assert [r["train/loss"] for r in per_epoch] == [r["train"]["loss"] for r in epochs]
    assert [r["val/exit_acc/2"] for r in per_epoch] == [r["val"]["exit_acc"][1] for r in epochs]
    per_step = [r for r in rows if "step/loss" in r]
    assert [r["global_step"] for r in per_step] == [4, 8, 12, 16]
    assert [r["step/lr"] for r in per_step] == [expected_lr(cfg, s) for s in (4, 8, 12, 16)]
    assert all(math.isfinite(r["step/loss"]) for r in per_step)

    for split in ("val", "test"):
        for k in range(4):
            assert second["summary"][f"final/{split}/exit_acc/{k + 1}"] == results[split]["exit_acc"][k]
        assert second["summary"][f"final/{split}/ensemble_acc"] == results[split]["ensemble_acc"]
    table = next(wandb_offline.glob(f"offline-run-*-{run_id}/files/exit_table.md"))
    assert table.read_text() == results["table"] + "\n"
    assert not (run / "wandb").exists()  # WANDB_DIR decides where W&B writes
