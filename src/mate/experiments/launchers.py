"""Who trains the runs of a comparison or a sweep: this process, a local process pool, a Ray
cluster or Slurm (through submitit). Every launcher trains the same run folders with the same
code (``train_task``), so the results do not depend on which one executed them.

A task is one run: its config (a plain dict, as in the run's config.yaml) and its folder. A run
that fails is reported with the path of its log (``train.log`` in the run folder, or Slurm's
own) and does not stop the others; its folder keeps ``last.pt`` when it got that far, so the next
invocation resumes it. The process that trains a run holds its folder's lock (``FolderLock``) from
before its first write, so a second comparison that shares the runs folder cannot train the same
run at the same time: that run fails there, naming the holder.
"""
from __future__ import annotations

import contextlib
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..engine.files import LOCK_ENV, FolderLock
from ..errors import ConfigError, FolderInUse, MateError

LAUNCHERS = ("local", "ray", "slurm")


def run_folder_lock(run: Path) -> FolderLock:
    return FolderLock(run, "the run folder", "wait for it to end, then run the same command again")


@dataclass
class RunTask:
    key: tuple  # what the caller calls this run, e.g. (method, seed)
    config: dict  # Config.to_dict()
    run_dir: str

    @property
    def label(self) -> str:
        return " ".join(str(k) for k in self.key)


@dataclass
class LaunchOptions:
    launcher: str = "local"
    workers: int = 1  # local: runs at a time
    threads: Optional[int] = None  # intra-op threads per run; None: 1 with several workers, else torch's
    nproc_per_run: int = 1  # processes per run (torchrun / Slurm tasks)
    address: Optional[str] = None  # ray: cluster address (None: a local runtime, or RAY_ADDRESS)
    cpus_per_run: float = 1.0  # ray / slurm
    gpus_per_run: float = 0.0  # ray / slurm
    partition: Optional[str] = None  # slurm
    time_min: int = 240  # slurm
    array_parallelism: int = 64  # slurm: array jobs running at once
    slurm_folder: Optional[str] = None  # slurm: where submitit keeps scripts and logs
    cluster: Optional[str] = None  # slurm: submitit's cluster ("local" or "debug" run without Slurm)

    def check(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"--launcher must be one of {', '.join(LAUNCHERS)}, got {self.launcher!r}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.nproc_per_run < 1:
            raise ConfigError(f"--nproc-per-run must be at least 1, got {self.nproc_per_run}")
        if self.nproc_per_run > 1 and self.launcher == "ray":
            raise ConfigError("--nproc-per-run > 1 is not supported with --launcher ray: a torchrun group "
                              "inside a Ray task is not set up here; use --launcher slurm (one task per "
                              "process) or --launcher local (torchrun on this machine)")


def train_task(config: dict, run_dir: str, threads: Optional[int] = None, distributed_env: bool = False) -> str:
    """Train (or resume, or skip if finished) one run; its log goes to RUN_DIR/train.log.

    ``distributed_env``: take RANK/WORLD_SIZE/MASTER_* from Slurm (submitit) before training, so that
    the tasks of one job form one torchrun-like group.
    """
    import torch

    from ..config import Config
    from ..engine import train

    if distributed_env:
        import submitit

        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    if threads is not None:
        torch.set_num_threads(threads)
    run = Path(run_dir)
    if (run / "results.json").exists():
        return str(run)
    run.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    log_path = run / ("train.log" if rank == 0 else f"train.rank{rank}.log")
    # Rank 0 takes the run folder before writing its log; the Trainer it calls holds it through this one.
    with run_folder_lock(run) if rank == 0 else contextlib.nullcontext(), open(log_path, "a") as log_file:
        def log(line: str) -> None:
            log_file.write(line + "\n")
            log_file.flush()
        try:
            train(Config.from_dict(config), run_dir=run, resume=(run / "last.pt").exists(), log=log)
        except BaseException:
            log_file.write(traceback.format_exc())
            raise
    return str(run)


def _failure(task: RunTask, exc: BaseException, log_path: Optional[str] = None) -> str:
    if isinstance(exc, FolderInUse):  # stopped before writing anything, its log included
        return f"{type(exc).__name__}: {exc}"
    where = log_path or str(Path(task.run_dir) / "train.log")
    return f"{type(exc).__name__}: {exc} (log: {where})"


def launch(tasks: Sequence[RunTask], options: LaunchOptions, log: Callable[[str], None] = print,
           on_finished: Optional[Callable[[RunTask], None]] = None) -> dict:
    """Train every task; returns {key: failure message} for the runs that failed. ``on_finished`` is
    called with each task as soon as it has finished (e.g. to archive it at once)."""
    options.check()
    if not tasks:
        return {}
    for task in tasks:
        resume = (Path(task.run_dir) / "last.pt").exists()
        log(f"[run] {task.label}: {'resuming' if resume else 'training'} in {task.run_dir}")
    report = _Reporter(log, on_finished)
    if options.nproc_per_run > 1 and options.launcher == "local":
        _run_torchrun(tasks, options, report)
    else:
        {"local": _run_local, "ray": _run_ray, "slurm": _run_slurm}[options.launcher](tasks, options, report)
    return report.failures


class _Reporter:
    """Collects the failures, logs each run's end, and calls ``on_finished`` for each finished run."""

    def __init__(self, log: Callable[[str], None], on_finished: Optional[Callable[[RunTask], None]] = None):
        self.log, self.on_finished, self.failures = log, on_finished, {}

    def __call__(self, task: RunTask, exc: Optional[BaseException] = None, log_path: Optional[str] = None) -> None:
        if exc is None:
            self.log(f"[run] {task.label}: finished")
            if self.on_finished is not None:
                self.on_finished(task)
        else:
            self.failures[task.key] = _failure(task, exc, log_path)
            self.log(f"[run] {task.label}: FAILED: {self.failures[task.key]}")


def _run_local(tasks: Sequence[RunTask], options: LaunchOptions, report: _Reporter) -> None:
    if options.workers == 1 or len(tasks) == 1:
        for task in tasks:
            try:
                train_task(task.config, task.run_dir, options.threads)
            except MateError as exc:
                report(task, exc)
            else:
                report(task)
        return
    from concurrent.futures import as_completed

    threads = options.threads or 1
    with local_pool(options.workers) as pool:
        futures = {pool.submit(train_task, t.config, t.run_dir, threads): t for t in tasks}
        for future in as_completed(futures):  # in the order the runs end, so each is archived at once
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 - a failed run must not stop the others
                report(futures[future], exc)
            else:
                report(futures[future])


# What a pool worker needs to train, imported once by the fork server (about 2.5 s of CPU that a
# fresh interpreter per worker would spend again).
_PRELOAD = ["torch", "mate.engine", __name__]


def local_pool(workers: int):
    """A pool of ``workers`` processes that train runs (``train_task``) side by side."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_init_worker,
                               initargs=(os.getcwd(), dict(os.environ), list(sys.path)))


def _pool_context():
    """The local pool's workers are forked from a fork server: a clean process (no thread pools,
    none of this process's state) that has imported the engine once and serves every pool this
    process starts. Where there is no fork server (Windows), a fresh interpreter per worker."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def _init_worker(cwd: str, environ: dict, path: list) -> None:
    """Give the worker the working folder, environment and module path of the process that starts
    the pool now (the fork server keeps those of its own start), as a spawned worker would have."""
    from ..runtime import tune_cpu_allocator

    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(environ)
    sys.path[:] = path
    tune_cpu_allocator()


def _run_torchrun(tasks: Sequence[RunTask], options: LaunchOptions, report: _Reporter) -> None:
    """nproc_per_run > 1 on this machine: one ``torchrun --standalone`` per run, one after another."""
    import subprocess

    from ..config import yaml_dump

    for task in tasks:
        run = Path(task.run_dir)
        run.mkdir(parents=True, exist_ok=True)
        if (run / "results.json").exists():
            continue
        try:
            lock = run_folder_lock(run).acquire()
        except FolderInUse as exc:
            report(task, exc)
            continue
        try:
            config_file = run / "launch_config.yaml"
            config_file.write_text(yaml_dump(task.config))
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={options.nproc_per_run}", "-m", "mate", "train", "--config", str(config_file),
                   f"run.out_dir={run.parent}", f"run.name={run.name}"]
            if (run / "last.pt").exists():
                cmd = cmd[:cmd.index("train") + 1] + ["--resume", str(run)]
            env = {**os.environ, LOCK_ENV: lock.token}  # rank 0 trains under this process's lock
            if options.threads:
                env["OMP_NUM_THREADS"] = str(options.threads)
            with open(run / "train.log", "a") as out:
                code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
        finally:
            lock.release()
        report(task, None if code == 0 else MateError(f"torchrun exited with {code}"))


def _run_ray(tasks: Sequence[RunTask], options: LaunchOptions, report: _Reporter) -> None:
    ray = _require("ray", "ray")
    started = False
    if not ray.is_initialized():
        ray.init(address=options.address, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(num_cpus=options.cpus_per_run, num_gpus=options.gpus_per_run)(train_task)
        threads = options.threads or max(1, int(options.cpus_per_run))
        refs = {remote.remote(t.config, t.run_dir, threads): t for t in tasks}
        pending = list(refs)
        while pending:  # in the order the runs end
            [ref], pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - ray wraps the run's exception
                report(refs[ref], getattr(exc, "cause", None) or exc)
            else:
                report(refs[ref])
    finally:
        if started:
            ray.shutdown()


def _run_slurm(tasks: Sequence[RunTask], options: LaunchOptions, report: _Reporter) -> None:
    submitit = _require("submitit", "slurm")
    folder = Path(options.slurm_folder or Path(tasks[0].run_dir).parent / "slurm_logs")
    executor = submitit.AutoExecutor(folder=str(folder / "%j"), cluster=options.cluster)
    params = dict(timeout_min=options.time_min, tasks_per_node=options.nproc_per_run,
                  cpus_per_task=max(1, int(options.cpus_per_run)))
    if options.gpus_per_run:
        params["gpus_per_node"] = int(options.gpus_per_run) * options.nproc_per_run
    if executor.cluster == "slurm":
        params["slurm_array_parallelism"] = options.array_parallelism
        if options.partition:
            params["slurm_partition"] = options.partition
    executor.update_parameters(**params)
    threads = options.threads or max(1, int(options.cpus_per_run))
    distributed = options.nproc_per_run > 1
    with executor.batch():
        jobs = [executor.submit(train_task, t.config, t.run_dir, threads, distributed) for t in tasks]
    for job, task in zip(jobs, tasks):
        try:
            job.results()
        except Exception as exc:  # noqa: BLE001 - submitit wraps the run's exception
            report(task, exc, str(job.paths.stderr))
        else:
            report(task)


def _require(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MateError(f"--launcher {'ray' if module == 'ray' else 'slurm'} needs the '{module}' package: "
                        f"pip install 'mate-distill[{extra}]'") from None
