"""The training loop: one for every model, objective and dataset.

``train(config)`` builds data, model and objective from the registries, trains with SGD or
AdamW, validates every exit and the exits' ensemble after each epoch on a split held out of the
training set, keeps the last and the best-on-validation checkpoints, and finally evaluates the
best checkpoint on the test set. Under torchrun the same loop runs in every process
(see ``distributed``); rank 0 alone writes the run folder.

Recipe options (``optim.*``): label smoothing (passed to the objective), gradient accumulation
(an optimizer step every ``accumulate_steps`` batches), gradient-norm clipping, and an EMA of the
weights, which is then what is validated, selected, tested and saved as ``model`` in the
checkpoints (the trained weights are saved beside it, as ``training_model``, to resume).
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.profiler import record_function

from .._version import __version__
from ..config import Config, OptimConfig, check_config
from ..data import DatasetInfo, DatasetSplits, FolderSplits, build_data, epoch_seed
from ..data.build import Loader
from ..errors import CheckpointError, ConfigError, MateError, TrainingDiverged
from ..evaluation.logits import ExitLogits, collect_exit_logits, format_exit_table, selection_score
from ..models import MultiExitNetwork, create_model, to_channels_last
from ..objectives import OBJECTIVES, create_objective
from .checkpoint import RESUME_FIELDS, load_checkpoint, save_checkpoint
from .distributed import (all_reduce_sum, convert_sync_batchnorm, gather_batches, init_distributed, run_on_main,
                          wrap_for_training)
from .ema import WeightEMA
from .files import FolderLock, remove_temporary_files, write_file
from .logger import RunLogger, check_loggers, discard_logs, flatten_params, resolve_loggers
from .step import PHASES, TrainStep


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device={name} but no CUDA device is available; use run.device=cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"run.device={name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None


def build_model(config: Config, splits: DatasetSplits | DatasetInfo, pretrained: bool = True) -> MultiExitNetwork:
    """The config's model for a dataset's classes and input shape (its splits, or its registered info).
    ``pretrained=False`` leaves out the weights of ``model.pretrained`` (a checkpoint is about to replace
    them, or only the architecture counts)."""
    options = config.model_options()
    if not pretrained:
        options.pop("pretrained", None)
    return create_model(config.model["name"], num_classes=splits.num_classes, in_channels=splits.in_channels,
                        input_size=splits.input_size, **options)


def build_objective(config: Config, model: MultiExitNetwork) -> nn.Module:
    name = config.objective["name"]
    derived = dict(num_exits=model.num_exits, feature_dim=model.feature_dim, num_classes=model.num_classes)
    options = OBJECTIVES.options(name)
    if "total_epochs" in options:  # e.g. SDN's ramp over the whole run
        derived["total_epochs"] = config.optim.epochs
    if "label_smoothing" in options:
        derived["label_smoothing"] = config.optim.label_smoothing
    elif config.optim.label_smoothing > 0:
        raise ConfigError(f"optim.label_smoothing={config.optim.label_smoothing}: objective '{name}' does not "
                          "take label_smoothing (give its constructor a label_smoothing argument and pass it "
                          "to exits_cross_entropy)")
    return create_objective(name, **derived, **config.objective_options())


def build_optimizer(config: Config, param_groups: list[dict]) -> torch.optim.Optimizer:
    """``optim.name`` over ``param_groups`` (dicts with ``params``, and optionally their own ``lr``
    or ``weight_decay``); the other hyper-parameters come from ``optim.*``."""
    o = config.optim
    if o.name == "adamw":
        return torch.optim.AdamW(param_groups, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    return torch.optim.SGD(param_groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                           weight_decay=o.weight_decay)


def lr_factor(config: Config, steps_per_epoch: int) -> Callable[[int], float]:
    """The schedule's factor at optimizer step ``step`` (``steps_per_epoch`` optimizer steps an epoch)."""
    o = config.optim

    def factor(step: int) -> float:
        e = step / steps_per_epoch
        if o.schedule == "multistep":
            f = o.lr_decay ** sum(1 for m in o.milestones if e >= m)
        elif o.schedule == "cosine":
            f = 0.5 * (1.0 + math.cos(math.pi * min(e, o.epochs) / o.epochs))
        else:
            f = 1.0
        if o.warmup_epochs > 0 and e < o.warmup_epochs:
            f *= (step + 1) / (o.warmup_epochs * steps_per_epoch)
        return f

    return factor


# Keys a resume cannot change: the optimizer's state and parameter groups, the schedule's step
# count and the EMA come back from the checkpoint as they were.
RESUME_FROZEN = ("name", "lr", "momentum", "nesterov", "betas", "weight_decay", "accumulate_steps", "ema_decay",
                 "backbone_lr_scale")


def default_run_name(config: Config) -> str:
    return f"{config.data.name}-{config.model['name']}-{config.objective['name']}-s{config.run.seed}"


def run_folder(config: Config) -> Path:
    """A run's folder: ``run.out_dir`` (``~`` expanded) / ``run.name`` (default: default_run_name).
    A name that leaves run.out_dir (an absolute path, or one through '..') is refused."""
    out = Path(config.run.out_dir).expanduser()
    name = config.run.name or default_run_name(config)
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise ConfigError(f"run.name={name} would put the run folder outside run.out_dir ({out}); give a folder "
                          "name, or a relative path without '..'")
    return out / name


class Trainer:
    """Owns one run. ``fit()`` trains (or resumes) and returns the final results."""

    def __init__(self, config: Config, run_dir: Optional[str | Path] = None, resume: bool = False,
                 log: Callable[[str], None] = print):
        self.config = config
        self.dist, self.device = init_distributed(resolve_device(config.run.device))
        self.logger: Optional[RunLogger] = None
        self.lock: Optional[FolderLock] = None  # rank 0's hold on the run folder
        self._new_dirs: list[Path] = []  # folders this run created, deepest first
        try:
            self._setup(run_dir, resume, log)
        except BaseException:
            if self.logger is not None:
                self.logger.close(success=False)
            self._release_run_dir()
            self._remove_new_dirs()
            self._close_distributed()
            raise

    def _close_distributed(self) -> None:
        # Drop the DDP wrapper before the process group: a gloo group still referenced by DDP's
        # reducer is torn down during interpreter exit, which can abort the process.
        self.step = None
        gc.collect()
        self.dist.close()

    def _setup(self, run_dir: Optional[str | Path], resume: bool, log: Callable[[str], None]) -> None:
        config = self.config
        self.rank, self.world_size = self.dist.rank, self.dist.world_size
        self.is_main = self.dist.is_main
        self.log = log if self.is_main else (lambda message: None)
        check_config(config)  # every key's type and range, for a Config built in code too
        check_run_options(config, self.device, self.world_size)
        check_optim_options(config)
        loggers = resolve_loggers(config.run.loggers, config.run.tensorboard)
        check_loggers(loggers)
        self.amp = resolve_amp(config.run.amp, self.device)
        self.run_dir = Path(run_dir).expanduser() if run_dir else run_folder(config)
        run_on_main(self.dist, lambda: self._prepare_run_dir(resume))
        if config.run.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)

        torch.manual_seed(config.run.seed)
        self.data = build_data(config.data, self.device, config.run.seed, self.rank, self.world_size)
        self.config = config = self._record_image_size(config, self.data.splits)
        self.model = build_model(config, self.data.splits, pretrained=not resume)
        if config.run.sync_batchnorm:
            self.model = convert_sync_batchnorm(self.model, self.device)
        self.model = self.model.to(self.device)
        if config.run.channels_last:
            kept = to_channels_last(self.model, self.device)
            if kept:
                self.log(f"run.channels_last: {len(kept)} convolution{'s' if len(kept) > 1 else ''} kept in NCHW "
                         f"({', '.join(kept)}): see docs/reliability.md")
        self.objective = build_objective(config, self.model).to(self.device)
        o = config.optim
        param_groups = self.model.parameter_groups(o.lr, o.backbone_lr_scale, self.objective.parameters())
        self.optimizer = build_optimizer(config, param_groups)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")
        self.step = wrap_for_training(self.dist, TrainStep(self.model, self.objective), self.device)
        # The weights that are evaluated: an EMA of the trained ones when optim.ema_decay > 0.
        self.ema = WeightEMA(self.model, o.ema_decay) if o.ema_decay > 0 else None
        self.eval_model = self.ema.model if self.ema else self.model
        self._ddp = self.step if self.dist.enabled else None  # for no_sync() between accumulated batches
        if config.run.compile:
            self.step = torch.compile(self.step)
        self.batches_per_epoch = len(self.data.train)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / o.accumulate_steps)  # optimizer steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor(config, self.steps_per_epoch))
        self.start_epoch, self.best_score, self.best_epoch, self.train_time = 0, -math.inf, -1, 0.0
        if resume:
            self._resume()
        elif self.is_main:
            write_file(self.run_dir / "config.yaml", _yaml(config))
            write_file(self.run_dir / "split.json", json.dumps(
                {"dataset": config.data.name, "split_seed": config.data.split_seed,
                 "val_indices": self.data.val_indices.tolist()}))
        self.logger = RunLogger(self.run_dir, loggers, enabled=self.is_main, project=config.run.project,
                                mlflow_uri=config.run.mlflow_uri)
        if resume:
            self.logger.truncate_after(self.start_epoch)  # records are 1-based
        self.logger.log_params(flatten_params(config.to_dict()))

    def _record_image_size(self, config: Config, splits: DatasetSplits) -> Config:
        """A dataset of image files trains at the side it chose when data.image_size is unset: say
        which, and write it into the run's config, so that everything reading the run back (eval,
        predict, export, flops) builds the network for the images it was trained on."""
        if not isinstance(splits, FolderSplits) or config.data.image_size is not None:
            return config
        note = splits.extra.get("image_size_note")
        if note:
            self.log(note)
        return dataclasses.replace(config, data=dataclasses.replace(config.data, image_size=splits.image_size))

    # -- run folder and resume -------------------------------------------------------------
    def _prepare_run_dir(self, resume: bool) -> None:
        try:
            self._new_dirs = [p for p in (self.run_dir, *self.run_dir.parents) if not p.exists()]
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # Before anything is written: a second process on this folder stops here, naming this one.
            self.lock = FolderLock(self.run_dir, "the run folder",
                                   "wait for it to end, or train elsewhere with run.name=NEW_NAME").acquire()
        except OSError as exc:
            raise MateError(f"cannot write to the run folder {self.run_dir}: {exc.strerror}. "
                            "Choose another run.out_dir.") from None
        remove_temporary_files(self.run_dir)  # of a checkpoint write that a kill interrupted
        has_ckpt = (self.run_dir / "last.pt").exists()
        if resume and not has_ckpt:
            raise CheckpointError(f"nothing to resume: {self.run_dir / 'last.pt'} does not exist")
        if not resume and has_ckpt:
            raise MateError(f"the run folder {self.run_dir} already holds a checkpoint. Resume it with "
                            "--resume, or pick another folder with run.name=NEW_NAME.")
        if not resume:  # logs of an attempt killed before its first checkpoint: this run starts over
            discard_logs(self.run_dir)

    def _release_run_dir(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _remove_new_dirs(self) -> None:
        """A run that could not start (e.g. a config error found building the model) leaves no
        empty run folder behind: the folders it created go again, while they are still empty."""
        for folder in self._new_dirs:
            try:
                folder.rmdir()
            except FileNotFoundError:  # never made: mkdir failed below its parent
                continue
            except OSError:  # not empty (or not ours to remove): keep it and its parents
                break

    def _load(self, name: str, needs: Sequence[str] = ("epoch",)) -> dict:
        """A checkpoint of this run, read by rank 0 and handed to every rank."""
        return run_on_main(self.dist, lambda: load_checkpoint(self.run_dir / name, "cpu", needs))

    def _resume(self) -> None:
        state = self._load("last.pt", RESUME_FIELDS)
        check_compatible(state, self.model, self.config, self.objective)
        # The optimizer's state (its param groups) and the schedule's base learning rate come back
        # from the checkpoint, so an override of these keys could not take effect: say so.
        # A key missing from an older checkpoint had its default then.
        saved = {**dataclasses.asdict(OptimConfig()), **state["config"].get("optim", {})}
        frozen = [f"optim.{k}" for k in RESUME_FROZEN if saved[k] != getattr(self.config.optim, k)]
        if frozen:
            was = ", ".join(f"{k}={saved[k.split('.')[1]]}" for k in frozen)
            raise ConfigError(f"--resume continues {self.run_dir} exactly, with the optimizer state it saved "
                              f"({was}); it cannot apply a new {', '.join(frozen)}. Drop the override, or "
                              "start a new run (run.name=NEW_NAME) to train with it.")
        restore = {
            "model": lambda: self.model.load_state_dict(state.get("training_model", state["model"])),
            "EMA": lambda: self.ema.load_state_dict(state["model"]) if self.ema else None,
            "objective": lambda: self.objective.load_state_dict(state["objective"]),
            "optimizer": lambda: self.optimizer.load_state_dict(state["optimizer"]),
            "scheduler": lambda: self.scheduler.load_state_dict(state["scheduler"]),
            "gradient scaler": lambda: self.scaler.load_state_dict(state["scaler"]) if state.get("scaler") else None,
            "random number generator": lambda: torch.set_rng_state(state["rng_cpu"]),
            "CUDA random number generator": lambda: torch.cuda.set_rng_state_all(list(state["rng_cuda"]))
            if torch.cuda.is_available() and state.get("rng_cuda") is not None else None,
        }
        for part, load in restore.items():
            try:
                load()
            except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
                # Fields of the right type whose contents do not fit (e.g. an edited file).
                reason = str(exc).splitlines()[0] if str(exc) else ""
                raise CheckpointError(f"checkpoint {self.run_dir / 'last.pt'} is malformed: its {part} state does "
                                      f"not fit this run ({type(exc).__name__}: {reason})") from None
        self.start_epoch = int(state["epoch"]) + 1
        self.best_score, self.best_epoch = float(state["best_score"]), int(state["best_epoch"])
        self.train_time = float(state["train_time"])
        self.log(f"resumed {self.run_dir} after epoch {self.start_epoch}")

    def _state(self, epoch: int) -> dict:
        """A checkpoint. ``model`` holds the weights that are evaluated (the EMA when it is on, and
        then ``training_model`` the trained weights), so every reader of a checkpoint gets them."""
        trained = {"training_model": self.model.state_dict()} if self.ema else {}
        return {
            "version": __version__, "config": self.config.to_dict(), "epoch": epoch,
            "model": self.eval_model.state_dict(), **trained, "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "world_size": self.world_size,
            "best_score": self.best_score, "best_epoch": self.best_epoch, "train_time": self.train_time,
            "num_exits": self.model.num_exits, "num_classes": self.model.num_classes,
            "input_shape": [self.model.in_channels, self.model.input_size, self.model.input_size],
            "val_indices": self.data.val_indices, "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    # -- one epoch ----------------------------------------------------------------------------
    def to_memory_format(self, x: Tensor) -> Tensor:
        """An input batch in the run's memory format (NHWC with run.channels_last)."""
        return x.contiguous(memory_format=torch.channels_last) if self.config.run.channels_last else x

    def autocast(self):
        if self.amp == "none":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.amp == "bf16" else torch.float16)

    def train_epoch(self, epoch: int) -> dict:
        """One epoch; an optimizer step every ``optim.accumulate_steps`` batches (and after the
        epoch's last batch, so epochs end on a step). Returns the epoch's mean training logs."""
        o, log_every = self.config.optim, self.config.run.log_every
        self.model.train()
        self.objective.train()
        self.data.train.set_epoch(epoch)
        torch.manual_seed(epoch_seed(self.config.run.seed, epoch))
        sums: dict[str, Tensor] = {}
        count = torch.zeros((), device=self.device)
        step_sums: dict[str, Tensor] = {}  # the logs of the current optimizer step, when it is logged
        step_count = torch.zeros((), device=self.device)
        batches = _progress(self.data.train, self.config.run.progress and self.is_main,
                            f"epoch {epoch + 1}/{o.epochs}")
        watch = DivergenceWatch(self.device)
        n, accumulate = self.batches_per_epoch, o.accumulate_steps
        for i, (x, y) in enumerate(_timed_batches(batches)):
            group = i // accumulate
            group_size = min(accumulate, n - group * accumulate)  # the epoch's last group may be short
            steps = i % accumulate + 1 == group_size  # this batch completes an optimizer step
            global_step = epoch * self.steps_per_epoch + group + 1
            logged = log_every > 0 and global_step % log_every == 0
            if i % accumulate == 0:
                self.optimizer.zero_grad(set_to_none=True)
            # Between accumulated batches DDP keeps the gradients local; the step's last one syncs.
            with self._no_sync(not steps):
                with self.autocast():
                    loss, logs = self.step(self.to_memory_format(x), y, epoch + i / n)
                # Every rank watches the mean over ranks, so all stop together when any one diverges.
                with record_function(PHASES["metrics"]):
                    watch.record(i, all_reduce_sum(loss.detach().float().clone()) / self.world_size)
                if (i + 1) % DIVERGENCE_CHECK_STEPS == 0:
                    self._stop_if_diverged(watch, epoch)
                # The step's gradient is the mean over its batches: each batch's mean loss / group size.
                with record_function(PHASES["backward"]):
                    self.scaler.scale(loss if group_size == 1 else loss / group_size).backward()
            b = y.shape[0]
            with record_function(PHASES["metrics"]):
                count += b
                logs = {"loss": loss.detach(), **logs}
                for key, value in logs.items():
                    value = value.detach().float() * b
                    sums[key] = sums[key] + value if key in sums else value
                    if logged:
                        step_sums[key] = step_sums[key] + value if key in step_sums else value
                if logged:
                    step_count += b
            if not steps:
                continue
            with record_function(PHASES["optimizer"]):
                lr = self.optimizer.param_groups[0]["lr"]
                grad_norm = self._clip_gradients()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                if self.ema:
                    self.ema.update()
            if logged:
                self._log_step(global_step, step_sums, step_count, lr, grad_norm)
                step_sums, step_count = {}, torch.zeros((), device=self.device)
        self._stop_if_diverged(watch, epoch)  # before the epoch's checkpoint is written
        all_reduce_sum(count)
        return {key: (all_reduce_sum(value) / count).cpu().tolist() for key, value in sums.items()}

    def _no_sync(self, local: bool):
        """DDP's no_sync() when ``local`` (gradients accumulate without an all-reduce)."""
        return self._ddp.no_sync() if local and self._ddp is not None else contextlib.nullcontext()

    def _clip_gradients(self) -> Optional[Tensor]:
        """Clip the global gradient norm to optim.clip_grad_norm (fp16: on the unscaled gradients);
        the norm before clipping, or None when clipping is off."""
        max_norm = self.config.optim.clip_grad_norm
        if max_norm <= 0:
            return None
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    def _log_step(self, step: int, sums: dict[str, Tensor], count: Tensor, lr: float,
                  grad_norm: Optional[Tensor]) -> None:
        """Per-step scalars to the trackers: the step's mean logs over its batches (and ranks)."""
        total = all_reduce_sum(count.clone())
        values = {key: (all_reduce_sum(value) / total).cpu().tolist() for key, value in sums.items()}
        values["lr"] = lr
        if grad_norm is not None:
            values["grad_norm"] = float(grad_norm)
        self.logger.log_step(values, step)

    def _stop_if_diverged(self, watch: DivergenceWatch, epoch: int) -> None:
        first = watch.first()
        if first is None:
            return
        i, loss = first
        last = self.run_dir / "last.pt"
        saved = run_on_main(self.dist, last.exists)
        raise TrainingDiverged(
            f"the loss became {loss} at epoch {epoch + 1}, step {i + 1} (global step "
            f"{epoch * self.batches_per_epoch + i + 1}); nothing was saved after it. The last good checkpoint is "
            f"{last if saved else '(none yet)'}; lower optim.lr (or add optim.warmup_epochs) and resume or restart."
        )

    def evaluate(self, loader: Loader) -> ExitLogits:
        """Every exit's logits on the whole split; under torchrun each rank holds them all."""
        sizes: list[int] = []

        def batches():
            for x, y in loader:
                sizes.append(len(y))
                yield x, y

        teachers = getattr(self.objective, "eval_teachers", None)
        self.objective.eval()
        with self.autocast():
            local = collect_exit_logits(self.eval_model, batches(), self.to_memory_format, teachers)
        self.objective.train()
        if not self.dist.enabled:
            return local
        logits = gather_batches(self.dist, local.logits, sizes, 1, self.device)
        labels = gather_batches(self.dist, local.labels, sizes, 0, self.device)
        if local.teacher_logits is None:
            return ExitLogits(logits, labels)
        return ExitLogits(logits, labels, gather_batches(self.dist, local.teacher_logits, sizes, 1, self.device),
                          gather_batches(self.dist, local.attention, sizes, 0, self.device))

    # -- the whole run ----------------------------------------------------------------------
    def fit(self) -> dict:
        success = False
        try:
            results = self._fit()
            success = True
            return results
        finally:
            self.close(success)

    def close(self, success: bool) -> None:
        """End the run: close its loggers (marked failed unless ``success``), release the run
        folder and the process group. ``fit`` calls it; code that drives ``run_epoch`` itself
        calls it once when done."""
        self.logger.close(success)
        self._release_run_dir()
        self._close_distributed()

    def _fit(self) -> dict:
        for epoch in range(self.start_epoch, self.config.optim.epochs):
            self.run_epoch(epoch)
        return self.final_results()

    def run_epoch(self, epoch: int) -> dict:
        """One epoch as ``fit`` runs it: training, validation when due, the epoch's record in the
        logs, and the checkpoints. Returns the record."""
        cfg = self.config
        t0 = time.perf_counter()
        train_logs = self.train_epoch(epoch)
        self.train_time += time.perf_counter() - t0
        record = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], "train": train_logs,
                  "time": self.train_time}
        if self.data.val is None:
            score = float(epoch)  # no validation split: the last epoch is the best
        elif (epoch + 1) % cfg.run.val_every == 0 or epoch + 1 == cfg.optim.epochs:
            with record_function(PHASES["validation"]):
                val = self.evaluate(self.data.val).summary()
            record["val"] = val
            score = selection_score(val, cfg.run.select)
        else:
            score = -math.inf  # not validated this epoch: never the best
        improved = score > self.best_score
        if improved:
            self.best_score, self.best_epoch = score, epoch + 1
        with record_function(PHASES["logging"]):
            self.logger.log(record, step=(epoch + 1) * self.steps_per_epoch)
            self.log(_epoch_line(record))
        if self.is_main:
            with record_function(PHASES["checkpoint"]):
                state = self._state(epoch)
                if improved:
                    save_checkpoint(state, self.run_dir / "best.pt")
                save_checkpoint(state, self.run_dir / "last.pt")
        return record

    def final_results(self) -> dict:
        state = self._load("best.pt" if run_on_main(self.dist, (self.run_dir / "best.pt").exists) else "last.pt")
        self.eval_model.load_state_dict(state["model"])
        rows = {}
        if self.data.val is not None:
            rows["val"] = self.evaluate(self.data.val).summary()
        rows["test"] = self.evaluate(self.data.test).summary()
        results = {"run_dir": str(self.run_dir), "best_epoch": int(state["epoch"]) + 1,
                   "select": self.config.run.select, "train_time_s": self.train_time, "amp": self.amp,
                   "config": self.config.to_dict(), **rows}
        if self.is_main:  # atomically: a comparison takes any run with a results.json for finished
            write_file(self.run_dir / "results.json", json.dumps(results, indent=2), then="resume")
        results["table"] = format_exit_table(rows)
        self.logger.log_final(rows, results["table"], int(state["epoch"]) + 1)
        return results


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 arithmetic natively (so autocast to it pays)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    return False


def resolve_amp(amp: str, device: torch.device) -> str:
    """run.amp as it applies on ``device``: ``auto`` becomes ``bf16`` or ``none``."""
    if amp == "auto":
        return "bf16" if native_bf16(device) else "none"
    return amp


DIVERGENCE_CHECK_STEPS = 100  # training steps between two reads of the divergence watch


class DivergenceWatch:
    """The first step of an epoch whose loss (the mean over ranks) is not finite.

    ``record`` keeps it on the training device, so the host does not wait for the device at
    every step; ``first`` reads it (one wait). The trainer reads it every
    ``DIVERGENCE_CHECK_STEPS`` steps and at the end of the epoch, before any checkpoint is
    written, so a checkpoint never holds the weights of a diverged run. The steps taken between
    the divergence and the read change nothing that is kept.
    """

    def __init__(self, device: torch.device):
        self.step = torch.full((), -1, dtype=torch.long, device=device)
        self.loss = torch.zeros((), device=device)

    def record(self, step: int, loss: Tensor) -> None:
        first = ~torch.isfinite(loss) & (self.step < 0)
        self.step = torch.where(first, step, self.step)
        self.loss = torch.where(first, loss, self.loss)

    def first(self) -> Optional[tuple[int, float]]:
        """(step within the epoch, 0-based; its loss), or None while every loss was finite."""
        step = int(self.step)
        return None if step < 0 else (step, float(self.loss))


def check_run_options(config: Config, device: torch.device, world_size: int) -> None:
    """Combinations no single key can reject on its own (each key's range is the config's check)."""
    r, d = config.run, config.data
    if r.amp == "fp16" and device.type != "cuda":
        raise ConfigError(f"run.amp=fp16 needs a CUDA device (float16 autocast with a gradient scaler); "
                          f"this run is on {device.type}. Use run.amp=bf16, or run.amp=none")
    for key, value in (("data.batch_size", d.batch_size), ("data.eval_batch_size", d.eval_batch_size)):
        if value % world_size:
            raise ConfigError(f"{key}={value} is not divisible by the {world_size} processes: the global "
                              f"batch is split evenly; use a multiple of {world_size}")


def check_optim_options(config: Config) -> None:
    """What the recipe options (``optim.*``) need beyond each key's range (the config's check)."""
    o = config.optim
    if len(o.betas) != 2:
        raise ConfigError(f"optim.betas must be two numbers in [0, 1) (AdamW's beta1, beta2), got {o.betas}")
    if o.name == "adamw" and o.nesterov:
        raise ConfigError("optim.nesterov=true applies to SGD only; drop it for optim.name=adamw")


def check_compatible(state: dict, model: MultiExitNetwork, config: Optional[Config] = None,
                     objective: Optional[nn.Module] = None) -> None:
    """One clear error when a checkpoint belongs to another architecture or class count, or (given
    the ``objective`` a resume continues) to another objective."""
    saved = state.get("config", {}).get("model", {})
    if config is not None and saved.get("name") != config.model["name"]:
        raise CheckpointError(f"the checkpoint holds a '{saved.get('name')}' model, the config asks for "
                              f"'{config.model['name']}'")
    trained_with = state.get("config", {}).get("objective", {}).get("name")
    if config is not None and objective is not None and trained_with != config.objective["name"]:
        raise CheckpointError(f"the checkpoint was trained with objective '{trained_with}', the config asks for "
                              f"'{config.objective['name']}'; resume with objective.name={trained_with}, or start "
                              "a new run (run.name=NEW_NAME)")
    if state.get("num_classes") != model.num_classes or state.get("num_exits") != model.num_exits:
        raise CheckpointError(
            f"the checkpoint's model has {state.get('num_exits')} exits and {state.get('num_classes')} classes; "
            f"this model has {model.num_exits} exits and {model.num_classes} classes"
        )
    own = model.state_dict()
    mismatched = [k for k, v in state["model"].items()
                  if k not in own or not isinstance(v, Tensor) or own[k].shape != v.shape]
    missing = [k for k in own if k not in state["model"]]
    if mismatched or missing:
        raise CheckpointError(
            "the checkpoint does not fit this architecture (e.g. " + ", ".join((mismatched + missing)[:3]) + "); "
            "use the config it was trained with"
        )
    if objective is not None:  # e.g. MATE's weight network at another proj_dim
        own, saved_state = objective.state_dict(), state.get("objective", {})
        mismatched = [k for k, v in saved_state.items()
                      if k not in own or not isinstance(v, Tensor) or own[k].shape != v.shape]
        missing = [k for k in own if k not in saved_state]
        if mismatched or missing:
            raise CheckpointError("the checkpoint's objective state does not fit this objective (e.g. "
                                  + ", ".join((mismatched + missing)[:3]) + "); resume with the objective options "
                                  "it was trained with")


def train(config: Config, run_dir: Optional[str | Path] = None, resume: bool = False,
          log: Callable[[str], None] = print) -> dict:
    return Trainer(config, run_dir, resume, log).fit()


def _timed_batches(batches):
    """The loader's batches, each fetched inside the profiler's data range."""
    iterator = iter(batches)
    while True:
        with record_function(PHASES["data"]):
            batch = next(iterator, None)
        if batch is None:
            return
        yield batch


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, disable=None)


def _epoch_line(record: dict) -> str:
    line = f"epoch {record['epoch']:>3}  loss {record['train']['loss']:.4f}  lr {record['lr']:.4g}"
    if "val" in record:
        accs = " / ".join(f"{a:.2f}" for a in record["val"]["exit_acc"])
        line += f"  val acc {accs}  ens {record['val']['ensemble_acc']:.2f}"
    return line + f"  ({record['time']:.0f}s)"


def _yaml(config: Config) -> str:
    from ..config import config_to_yaml

    return config_to_yaml(config)
