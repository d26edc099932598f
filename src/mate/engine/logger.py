"""Run logs: one JSON object per epoch (metrics.jsonl) and experiment trackers.

``metrics.jsonl`` is always written; it is the run's own record, read back by ``mate report``
and the comparisons. ``run.loggers`` adds trackers, each a backend with one interface
(``TrackerBackend``): TensorBoard (``tensorboard/`` in the run folder), MLflow and Weights &
Biases (optional extras: ``pip install 'mate-distill[mlflow]'``, ``[wandb]``). Every backend gets

- the run's parameters: the resolved config, flattened to ``section.key`` (``optim.lr``);
- per-step scalars every ``run.log_every`` optimizer steps, under ``step/`` (``step/loss``,
  ``step/lr``, the objective's logs such as ``step/kd_lambda``), at the global optimizer step;
- per-epoch scalars: the metrics.jsonl record flattened (``train/loss``, ``val/exit_acc/2``, ``lr``);
- the final per-exit table: ``final/val/exit_acc/1`` ... ``final/test/ensemble_acc`` as scalars,
  and the Markdown table as text (TensorBoard) or a file ``exit_table.md`` (MLflow artifact,
  W&B run file).

A tracker's run id is kept in ``trackers.json`` in the run folder, so a resumed run continues
the same MLflow and W&B run. Only rank 0 logs (``enabled``).

A crash or a full disk can cut the last line of metrics.jsonl short. Readers skip such a line; a
resume rewrites the file to the records its checkpoint holds, and a fresh start in a folder without
a checkpoint (after a run killed before its first one) drops the killed run's logs.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from ..errors import ConfigError, MateError
from .files import append_line, write_file

LOGGERS = ("tensorboard", "mlflow", "wandb")
TRACKERS_FILE = "trackers.json"
EXIT_TABLE_FILE = "exit_table.md"


def resolve_loggers(loggers: Sequence[str], tensorboard: Optional[bool] = None) -> list[str]:
    """The trackers of a run: ``run.loggers``, with ``run.tensorboard`` (kept for existing configs)
    adding TensorBoard when true and removing it when false."""
    names = list(dict.fromkeys(loggers))
    unknown = [n for n in names if n not in LOGGERS]
    if unknown:
        raise ConfigError(f"run.loggers: unknown logger {unknown[0]!r}; loggers are: {', '.join(LOGGERS)}")
    if tensorboard is True and "tensorboard" not in names:
        names.append("tensorboard")
    if tensorboard is False:
        names = [n for n in names if n != "tensorboard"]
    return names


def check_loggers(names: Sequence[str]) -> None:
    """One clear error, before training starts, for a tracker whose package is not installed."""
    for name in names:
        if name in ("mlflow", "wandb"):
            _import_tracker(name)


def _import_tracker(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError(f"run.loggers includes {name}, but the {name} package is not installed; install it "
                          f"with pip install 'mate-distill[{name}]' (or drop {name} from run.loggers)") from None


def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}/{k}" if prefix else str(k), v, out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _flatten(f"{prefix}/{i + 1}", v, out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out[prefix] = float(value)


def flatten_scalars(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """A nested record as ``a/b/1`` keys (lists are numbered from 1, like the exits); finite numbers only."""
    out: dict[str, float] = {}
    _flatten(prefix, record, out)
    return {k: v for k, v in out.items() if math.isfinite(v)}


def flatten_params(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict as ``section.key`` parameters (values unchanged: numbers, strings, lists, None);
    a top-level value that is no section (``imports``) keeps its own name."""
    return {f"{section}.{key}" if isinstance(values, dict) else section: value
            for section, values in config.items()
            for key, value in (values.items() if isinstance(values, dict) else [(None, values)])}


def final_scalars(rows: dict[str, dict]) -> dict[str, float]:
    """The per-exit table as scalars: ``final/<split>/exit_acc/<k>``, ``ensemble_acc`` and ``mean_acc``."""
    table = {split: {k: row[k] for k in ("exit_acc", "ensemble_acc", "mean_acc") if k in row}
             for split, row in rows.items()}
    return flatten_scalars(table, "final")


class TrackerBackend:
    """One experiment tracker. ``step`` is the global optimizer step; ``epoch`` is 1-based."""

    def log_params(self, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def log_step(self, scalars: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def log_epoch(self, scalars: dict[str, float], epoch: int, step: int) -> None:
        raise NotImplementedError

    def log_final(self, scalars: dict[str, float], table: str, epoch: int) -> None:
        raise NotImplementedError

    def close(self, success: bool) -> None:
        raise NotImplementedError

    def saved_state(self) -> dict[str, Any]:
        """What ``trackers.json`` keeps to continue this tracker's run on resume."""
        return {}


class TensorBoardBackend(TrackerBackend):
    """Per-epoch scalars at the epoch (as before), per-step ones at the global step, text for the
    config and the final table."""

    def __init__(self, run_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log_params(self, params: dict[str, Any]) -> None:
        rows = "\n".join(f"| {k} | {v} |" for k, v in params.items())
        self.writer.add_text("config", "| key | value |\n|---|---|\n" + rows, 0)
        self.writer.flush()

    def _scalars(self, scalars: dict[str, float], step: int) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def log_step(self, scalars: dict[str, float], step: int) -> None:
        self._scalars(scalars, step)

    def log_epoch(self, scalars: dict[str, float], epoch: int, step: int) -> None:
        self._scalars(scalars, epoch)

    def log_final(self, scalars: dict[str, float], table: str, epoch: int) -> None:
        self.writer.add_text("exit_table", table, epoch)
        self._scalars(scalars, epoch)

    def close(self, success: bool) -> None:
        self.writer.close()


def default_mlflow_uri(run_dir: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else a file store ``mlruns/`` in the folder holding the run
    folder (``run.out_dir``), shared by the runs there."""
    return os.environ.get("MLFLOW_TRACKING_URI") or (run_dir.absolute().parent / "mlruns").as_uri()


class MLflowBackend(TrackerBackend):
    """MLflow through its client API (no global active run): experiment ``run.project``, run name
    the run folder's name, a tag ``mate.run_dir``."""

    PARAM_LENGTH = 500  # the longest parameter value every MLflow store accepts

    def __init__(self, run_dir: Path, project: str, uri: Optional[str], saved: dict[str, Any]):
        _import_tracker("mlflow")
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        uri = uri or default_mlflow_uri(run_dir)
        if "://" not in uri or uri.startswith("file:"):
            # Recent MLflow versions refuse the file store unless this is set; it is the default here.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.uri, self.client = uri, MlflowClient(tracking_uri=uri)
        if saved.get("run_id") and saved.get("uri") == uri:
            self.run_id = saved["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.client.get_experiment_by_name(project)
        if experiment is None:
            try:
                experiment_id = self.client.create_experiment(project)
            except MlflowException:  # another run created it meanwhile
                experiment_id = self.client.get_experiment_by_name(project).experiment_id
        else:
            experiment_id = experiment.experiment_id
        run = self.client.create_run(experiment_id, run_name=run_dir.name, tags={"mate.run_dir": str(run_dir)})
        self.run_id = run.info.run_id

    def saved_state(self) -> dict[str, Any]:
        return {"uri": self.uri, "run_id": self.run_id}

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        # MLflow refuses to change a logged parameter: a resumed run keeps the first values.
        logged = self.client.get_run(self.run_id).data.params
        new = [Param(k, _param_text(v)[:self.PARAM_LENGTH]) for k, v in params.items() if k not in logged]
        for i in range(0, len(new), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=new[i:i + 100])

    def _metrics(self, scalars: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in scalars.items()]
        for i in range(0, len(metrics), 1000):  # and at most 1000 metrics
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def log_step(self, scalars: dict[str, float], step: int) -> None:
        self._metrics(scalars, step)

    def log_epoch(self, scalars: dict[str, float], epoch: int, step: int) -> None:
        self._metrics(scalars, epoch)

    def log_final(self, scalars: dict[str, float], table: str, epoch: int) -> None:
        self._metrics(scalars, epoch)
        self.client.log_text(self.run_id, table + "\n", EXIT_TABLE_FILE)

    def close(self, success: bool) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if success else "FAILED")


class WandbBackend(TrackerBackend):
    """Weights & Biases. ``WANDB_MODE=offline`` (or ``wandb offline``) keeps everything on disk,
    to sync later with ``wandb sync``. Its files go to ``wandb/`` in the run folder unless
    ``WANDB_DIR`` is set. Per-step scalars are plotted against ``global_step``, per-epoch ones
    against ``epoch``; the final table is the run's summary and a file ``exit_table.md``."""

    EPOCH_KEYS = ("train", "val", "lr", "time")

    def __init__(self, run_dir: Path, project: str, saved: dict[str, Any]):
        wandb = _import_tracker("wandb")
        kwargs: dict[str, Any] = {"project": project, "name": run_dir.name, "settings": wandb.Settings(console="off")}
        if saved.get("id"):  # continue the run this folder started
            kwargs.update(id=saved["id"], resume="allow")
        if not os.environ.get("WANDB_DIR"):
            kwargs["dir"] = str(run_dir)
        self.run = wandb.init(**kwargs)
        self.run.define_metric("global_step")
        self.run.define_metric("step/*", step_metric="global_step")
        self.run.define_metric("epoch")
        for key in self.EPOCH_KEYS:
            self.run.define_metric(key if key in ("lr", "time") else f"{key}/*", step_metric="epoch")

    def saved_state(self) -> dict[str, Any]:
        return {"id": self.run.id}

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_step(self, scalars: dict[str, float], step: int) -> None:
        self.run.log({**scalars, "global_step": step})

    def log_epoch(self, scalars: dict[str, float], epoch: int, step: int) -> None:
        self.run.log({**scalars, "epoch": epoch, "global_step": step})

    def log_final(self, scalars: dict[str, float], table: str, epoch: int) -> None:
        self.run.summary.update(scalars)
        Path(self.run.dir, EXIT_TABLE_FILE).write_text(table + "\n")  # uploaded with the run's files

    def close(self, success: bool) -> None:
        self.run.finish(exit_code=0 if success else 1)


def _param_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)


class RunLogger:
    """metrics.jsonl plus the trackers in ``loggers``; every method is a no-op unless ``enabled``."""

    def __init__(self, run_dir: str | Path, loggers: Sequence[str] = ("tensorboard",), enabled: bool = True,
                 project: str = "mate", mlflow_uri: Optional[str] = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.backends: list[TrackerBackend] = []
        if not enabled:
            return
        saved_path = self.run_dir / TRACKERS_FILE
        saved = json.loads(saved_path.read_text()) if saved_path.exists() else {}
        try:
            for name in loggers:
                if name == "tensorboard":
                    self.backends.append(TensorBoardBackend(self.run_dir))
                elif name == "mlflow":
                    self.backends.append(MLflowBackend(self.run_dir, project, mlflow_uri, saved.get("mlflow", {})))
                elif name == "wandb":
                    self.backends.append(WandbBackend(self.run_dir, project, saved.get("wandb", {})))
                else:
                    raise ConfigError(f"run.loggers: unknown logger {name!r}; loggers are: {', '.join(LOGGERS)}")
        except BaseException:
            self.close(success=False)
            raise
        state = {name: b.saved_state() for name, b in zip(loggers, self.backends) if b.saved_state()}
        if state:
            saved_path.write_text(json.dumps({**saved, **state}, indent=2))

    def log_params(self, params: dict[str, Any]) -> None:
        for backend in self.backends:
            backend.log_params(params)

    def log(self, record: dict[str, Any], step: int = 0) -> None:
        """One epoch's record (with its 1-based ``epoch``); ``step``: the optimizer steps done."""
        if not self.enabled:
            return
        append_line(self.path, json.dumps(record, allow_nan=True))
        scalars = flatten_scalars({k: v for k, v in record.items() if k != "epoch"})
        for backend in self.backends:
            backend.log_epoch(scalars, int(record.get("epoch", 0)), step)

    def log_step(self, values: dict[str, Any], step: int) -> None:
        """Per-step scalars (nested values are flattened), as ``step/<name>`` at optimizer step ``step``."""
        if not self.backends:
            return
        scalars = flatten_scalars(values, "step")
        for backend in self.backends:
            backend.log_step(scalars, step)

    def log_final(self, rows: dict[str, dict], table: str, epoch: int) -> None:
        """The final per-exit results (``rows``: split -> summary) and their Markdown table."""
        scalars = final_scalars(rows)
        for backend in self.backends:
            backend.log_final(scalars, table, epoch)

    def truncate_after(self, epoch: int) -> None:
        """On resume, drop records of epochs the checkpoint does not hold (they will be redone), and
        a last line cut short."""
        if not self.enabled or not self.path.exists():
            return
        kept = [record for record in read_metrics(self.run_dir) if record.get("epoch", 0) <= epoch]
        write_file(self.path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in kept), then="resume")

    def close(self, success: bool = True) -> None:
        backends, self.backends = self.backends, []
        for backend in backends:
            backend.close(success)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of a run's metrics.jsonl. A last line cut short (by a crash or a full disk
    during its write) is left out; a damaged line before it is a MateError."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")  # a complete file ends with "\n": its last piece is empty
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif number < len(lines):
            raise MateError(f"{path}, line {number}, is not a JSON record; the file is damaged (only its last "
                            "line can be cut short by a crash)")
    return records


def discard_logs(run_dir: str | Path) -> None:
    """The logs a run folder holds from an attempt that never wrote a checkpoint (its metrics.jsonl
    lines, TensorBoard events and tracker run ids): a fresh start replaces them."""
    run_dir = Path(run_dir)
    for path in [run_dir / "metrics.jsonl", run_dir / TRACKERS_FILE,
                 *(run_dir / "tensorboard").glob("events.out.tfevents.*")]:
        path.unlink(missing_ok=True)
