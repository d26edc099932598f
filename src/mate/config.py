"""One config system: YAML files, dotted command-line overrides, and validation.

A config has five sections. ``data``, ``optim`` and ``run`` are fixed dataclasses below.
``model`` and ``objective`` hold a ``name`` plus that registered entry's own keyword options,
checked against its signature, so a new architecture or objective needs no config code.
Every unknown key or wrong type raises one ConfigError naming the key.
"""
from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import yaml

from .errors import ConfigError


@dataclass
class DataConfig:
    name: str = "fashion_mnist"
    root: Optional[str] = None  # folder holding the dataset; None: the dataset's default places
    download: bool = True  # allowed to download when the data is not found locally
    val_size: int = 5000  # images held out of the training set for validation and selection
    split_seed: int = 0  # seed of the validation split (its indices are saved with the run)
    train_subset: Optional[int] = None  # train on this many images only (quick experiments)
    test_subset: Optional[int] = None  # evaluate on the first N test images only
    batch_size: int = 128  # global batch size (split across processes under torchrun)
    eval_batch_size: int = 512
    crop_padding: int = 4  # random crop with this zero padding; 0 disables (data held in memory)
    flip: bool = True  # random horizontal flip
    # Datasets of image files (image_folder, tiny_imagenet, cub200, stanford_dogs, fgvc_aircraft):
    image_size: Optional[int] = None  # side of the square input; None: the dataset's (TinyImageNet 64, else 224)
    # true: decode once into memory, train with crop_padding/flip; false: stream from disk with
    # random-resized crops; auto: in memory when image_size <= 64 and the images fit in 4 GiB
    in_memory: Literal["auto", True, False] = "auto"
    num_workers: Optional[int] = None  # decoding processes; None: min(4, the CPUs this process may use)
    crop_min_scale: float = 0.08  # streamed training: smallest area share of a random-resized crop
    eval_crop: float = 0.875  # streamed evaluation: center crop of image_size / eval_crop (224 of 256)


@dataclass
class OptimConfig:
    epochs: int = 200
    lr: float = 0.1
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    weight_decay: float = 5e-4  # sgd: L2 added to the gradient; adamw: decoupled, lr * weight_decay * w
    schedule: Literal["multistep", "cosine", "constant"] = "multistep"
    milestones: list[int] = field(default_factory=lambda: [75, 130, 180])  # epochs (multistep)
    lr_decay: float = 0.1  # factor at each milestone (multistep)
    warmup_epochs: float = 0.0  # linear warm-up from 0, in epochs
    name: Literal["sgd", "adamw"] = "sgd"  # sgd (momentum, nesterov) or adamw (betas; decoupled weight decay)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    label_smoothing: float = 0.0  # every cross-entropy against the labels (the exits', and MATE's teachers')
    clip_grad_norm: float = 0.0  # clip the global gradient norm to this (after fp16 unscaling); 0: off
    # exponential moving average of the weights (and BatchNorm buffers), updated every optimizer
    # step; when on, validation, best-checkpoint selection, the test and best.pt use it. 0: off
    ema_decay: float = 0.0
    # optimizer step every N batches: the batch of a step is data.batch_size x N; the schedule counts steps
    accumulate_steps: int = 1
    backbone_lr_scale: float = 1.0  # the backbone (stem and stages) trains at lr x this; exits and objective at lr


@dataclass
class RunConfig:
    seed: int = 0
    out_dir: str = "runs"
    name: Optional[str] = None  # run folder name; default: <dataset>-<model>-<objective>-s<seed>
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    channels_last: bool = True  # NHWC convolutions: faster on CPU and on tensor cores
    progress: bool = True  # progress bar
    # Experiment trackers besides metrics.jsonl (always written): tensorboard, mlflow, wandb
    loggers: list[Literal["tensorboard", "mlflow", "wandb"]] = field(default_factory=lambda: ["tensorboard"])
    tensorboard: Optional[bool] = None  # true adds tensorboard to run.loggers, false removes it; null: as listed
    log_every: int = 0  # per-step scalars (loss, lr, objective logs) to the trackers every N optimizer steps; 0: off
    project: str = "mate"  # MLflow experiment and W&B project
    # MLflow tracking URI; null: MLFLOW_TRACKING_URI if set, else a file store mlruns/ beside the run folder
    mlflow_uri: Optional[str] = None
    val_every: int = 1  # validate (and select the best checkpoint) every N epochs, and after the last one
    select: Literal["mean", "last", "ensemble"] = "mean"  # validation score for the best checkpoint
    deterministic: bool = False  # deterministic kernels (exact resume on GPU)
    # autocast dtype; fp16 adds a gradient scaler (CUDA only); auto: bf16 where the hardware runs it
    # natively (GPUs with bf16, CPUs with AVX-512 BF16 or AMX), none elsewhere
    amp: Literal["none", "bf16", "fp16", "auto"] = "none"
    compile: bool = False  # torch.compile the training step (the first steps pay the compile time)
    sync_batchnorm: bool = False  # under torchrun: BatchNorm statistics over the global batch, not per process


DEFAULT_NAMES = {"model": "resnet18", "objective": "mate"}
SECTIONS = {"data": DataConfig, "optim": OptimConfig, "run": RunConfig}
OPEN_SECTIONS = ("model", "objective")
# Arguments of models and objectives that the engine fills in; never set in a config.
DERIVED = {"model": ("num_classes", "in_channels", "input_size"),
           "objective": ("num_exits", "feature_dim", "num_classes", "total_epochs", "label_smoothing")}
# Derived arguments that come from another config key rather than from the data and model.
DERIVED_FROM = {"total_epochs": "optim.epochs", "label_smoothing": "optim.label_smoothing"}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: dict = field(default_factory=lambda: {"name": "resnet18"})
    objective: dict = field(default_factory=lambda: {"name": "mate"})
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        out = {k: dataclasses.asdict(getattr(self, k)) for k in SECTIONS}
        out["model"] = dict(self.model)
        out["objective"] = dict(self.objective)
        return {k: out[k] for k in ("data", "model", "objective", "optim", "run")}

    def model_options(self) -> dict:
        return {k: v for k, v in self.model.items() if k != "name"}

    def objective_options(self) -> dict:
        return {k: v for k, v in self.objective.items() if k != "name"}

    @classmethod
    def from_dict(cls, raw: dict) -> "Config":
        if not isinstance(raw, dict):
            raise ConfigError("a config must be a mapping of sections (data, model, objective, optim, run)")
        known = set(SECTIONS) | set(OPEN_SECTIONS)
        for key in raw:
            if key not in known:
                raise ConfigError(f"unknown config section '{key}'; sections are: {', '.join(sorted(known))}")
        kwargs: dict[str, Any] = {}
        for name, klass in SECTIONS.items():
            kwargs[name] = _build_section(name, klass, raw.get(name) or {})
        for name in OPEN_SECTIONS:
            kwargs[name] = _check_open_section(name, raw.get(name) or {})
        return cls(**kwargs)


def _build_section(section: str, klass: type, values: Any):
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{section}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(klass)
    names = [f.name for f in dataclasses.fields(klass)]
    out = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"unknown config key '{section}.{key}'; valid keys: {', '.join(names)}")
        out[key] = coerce(f"{section}.{key}", value, hints[key])
    return klass(**out)


def _check_open_section(section: str, values: Any) -> dict:
    from .models import MODELS
    from .objectives import OBJECTIVES

    if not isinstance(values, dict):
        raise ConfigError(f"config section '{section}' must be a mapping, got {values!r}")
    values = {"name": DEFAULT_NAMES[section], **values}
    registry = MODELS if section == "model" else OBJECTIVES
    name = values["name"]
    params = registry.options(name)
    allowed = {k: p for k, p in params.items() if k not in DERIVED[section]}
    out = {"name": name}
    for key, value in values.items():
        if key == "name":
            continue
        if key in DERIVED[section]:
            source = DERIVED_FROM.get(key, "the data and model")
            raise ConfigError(f"'{section}.{key}' is set from {source}; remove it from the config")
        if key not in allowed:
            raise ConfigError(
                f"unknown config key '{section}.{key}' for {section} '{name}'; "
                f"valid keys: {', '.join(sorted(allowed)) or '(none)'}"
            )
        annotation = allowed[key].annotation
        out[key] = value if annotation is inspect.Parameter.empty else coerce(f"{section}.{key}", value, annotation)
    return out


def coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a type annotation (a type, not a string: see ``Registry.options``);
    ints are accepted where floats are expected."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin is typing.Union:
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(key, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"config key '{key}' cannot be {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"config key '{key}' must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (list, Sequence, typing.Sequence, tuple) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        inner = args[0] if args else Any
        return [coerce(f"{key}[{i}]", v, inner) for i, v in enumerate(value)]
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return value
    if annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return value
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value (e.g. optim.lr=0.05)")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if len(path) < 2 or not all(path):
        raise ConfigError(f"override key '{key}' must be section.key (e.g. optim.lr=0.05)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': cannot parse the value ({exc})") from None
    return path, value


def apply_overrides(raw: dict, overrides: Sequence[str]) -> dict:
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{text}': '{part}' is not a section")
        # Changing the model or objective name drops the previous entry's options.
        if path[-1] == "name" and len(path) == 2 and path[0] in OPEN_SECTIONS and node.get("name") != value:
            node.clear()
        node[path[-1]] = value
    return raw


SHIPPED_CONFIGS = Path(__file__).parent / "configs"
# The base of mate train, compare and sweep without --config: the main job's recipe, so that the
# same overrides train the same runs in all three.
DEFAULT_CONFIG = "fashion_mnist_quick"


def resolve_config_path(path: str | Path) -> Path:
    """A YAML path, or the name of a config shipped with the package (e.g. ``cifar100_resnet18``)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    shipped = SHIPPED_CONFIGS / (path.name if path.suffix == ".yaml" else f"{path.name}.yaml")
    if shipped.is_file() and len(path.parts) <= 2:
        return shipped
    names = ", ".join(sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.yaml")))
    raise ConfigError(f"config file {path} does not exist (shipped configs: {names})")


def read_yaml(path: str | Path) -> dict:
    path = resolve_config_path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return raw


def load_config(path: Optional[str | Path] = None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML file (or start from defaults), apply ``section.key=value`` overrides, validate."""
    raw = read_yaml(path) if path else {}
    return Config.from_dict(apply_overrides(raw, overrides))


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
