"""One config system: YAML files, dotted command-line overrides, and validation.

A config has five sections. ``data``, ``optim`` and ``run`` are fixed dataclasses below.
``model`` and ``objective`` hold a ``name`` plus that registered entry's own keyword options,
checked against its signature, so a new architecture or objective needs no config code.
Every option declares its type and valid range once, in its annotation (``mate.options``), and
its meaning once: ``option(default, help)`` below, or its factory's docstring. The config check
enforces them before anything is built: every unknown key, wrong type or value out of range
raises one ConfigError naming the key.

The top-level ``imports`` lists modules of the user's own (``mypkg.models``) that register
models, datasets or objectives; they are imported before the sections are checked, by every
process that builds from the config (the list travels with it, into config.yaml and checkpoints).
"""
from __future__ import annotations

import copy
import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Sequence

import yaml

from .errors import ConfigError
from .plugins import import_modules
from .options import (NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Range, UnitFloat, coerce,
                      format_value, range_text, type_text)

BelowOne = Annotated[float, Range(0, 1, open_high=True)]  # [0, 1): decays, smoothing, Adam's betas
ShareOfOne = Annotated[float, Range(0, 1, open_low=True)]  # (0, 1]: crop areas and sides


def option(default: Any, help: str) -> Any:
    """A config field: its default and one line of meaning (``mate list --options``, the reference)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class DataConfig:
    name: str = option("fashion_mnist", "registered dataset (mate list)")
    root: Optional[str] = option(None, "folder holding the dataset; null: the dataset's default places")
    download: bool = option(True, "allowed to download when the data is not found locally")
    val_size: NonNegativeInt = option(5000, "images held out of the training set for validation and selection")
    split_seed: int = option(0, "seed of the validation split (its indices are saved with the run)")
    train_subset: Optional[PositiveInt] = option(None, "train on this many images only (quick experiments)")
    test_subset: Optional[PositiveInt] = option(None, "evaluate on the first N test images only")
    batch_size: PositiveInt = option(128, "global batch size (split across processes under torchrun)")
    eval_batch_size: PositiveInt = option(512, "batch size of validation and test")
    crop_padding: NonNegativeInt = option(4, "random crop with this zero padding; 0 disables (data held in memory)")
    flip: bool = option(True, "random horizontal flip")
    # Datasets of image files (image_folder, tiny_imagenet, cub200, stanford_dogs, fgvc_aircraft):
    image_size: Optional[PositiveInt] = option(
        None, "image files: side of the square input; null: the dataset's (TinyImageNet 64; image_folder: "
              "the training images' shared side when it is at most 224; else 224)")
    in_memory: Literal["auto", True, False] = option(
        "auto", "image files: true: decode once into memory, train with crop_padding/flip; false: stream from "
                "disk with random-resized crops; auto: in memory when image_size <= 64 and the images fit in 4 GiB")
    num_workers: Optional[NonNegativeInt] = option(
        None, "image files: decoding processes; null: min(4, the CPUs this process may use)")
    crop_min_scale: ShareOfOne = option(0.08, "streamed training: smallest area share of a random-resized crop")
    eval_crop: ShareOfOne = option(
        0.875, "streamed evaluation: center crop of image_size / eval_crop (224 of 256)")
    factory: Optional[str] = option(
        None, "data.name=python: the dataset factory, package.module:function")


@dataclass
class OptimConfig:
    epochs: PositiveInt = option(200, "epochs of training")
    lr: NonNegativeFloat = option(
        0.1, "learning rate before the schedule's factor (the backbone's: lr x backbone_lr_scale)")
    momentum: UnitFloat = option(0.9, "sgd: momentum")
    nesterov: bool = option(False, "sgd: Nesterov momentum")
    weight_decay: NonNegativeFloat = option(
        5e-4, "sgd: L2 added to the gradient; adamw: decoupled, lr * weight_decay * w")
    schedule: Literal["multistep", "cosine", "constant"] = option("multistep", "learning-rate schedule")
    milestones: list[NonNegativeInt] = option([75, 130, 180], "epochs (multistep)")
    lr_decay: PositiveFloat = option(0.1, "factor at each milestone (multistep)")
    warmup_epochs: NonNegativeFloat = option(0.0, "linear warm-up from 0, in epochs")
    name: Literal["sgd", "adamw"] = option(
        "sgd", "sgd (momentum, nesterov) or adamw (betas; decoupled weight decay)")
    betas: list[BelowOne] = option([0.9, 0.999], "adamw: beta1, beta2")
    label_smoothing: BelowOne = option(
        0.0, "every cross-entropy against the labels (the exits', and MATE's teachers')")
    clip_grad_norm: NonNegativeFloat = option(
        0.0, "clip the global gradient norm to this (after fp16 unscaling); 0: off")
    ema_decay: BelowOne = option(
        0.0, "exponential moving average of the weights (and BatchNorm buffers), updated every optimizer step; "
             "when on, validation, best-checkpoint selection, the test and best.pt use it. 0: off")
    accumulate_steps: PositiveInt = option(
        1, "optimizer step every N batches: the batch of a step is data.batch_size x N; the schedule counts steps")
    backbone_lr_scale: PositiveFloat = option(
        1.0, "the backbone (stem and stages) trains at lr x this; exits and objective at lr")


@dataclass
class RunConfig:
    seed: int = option(0, "seed of the run: initial weights, data order, augmentation")
    out_dir: str = option("runs", "folder of the run folders")
    name: Optional[str] = option(None, "run folder name; default: <dataset>-<model>-<objective>-s<seed>")
    device: str = option("auto", "auto | cpu | cuda | cuda:N")
    channels_last: bool = option(True, "NHWC convolutions: faster on CPU and on tensor cores")
    progress: bool = option(True, "progress bar")
    loggers: list[Literal["tensorboard", "mlflow", "wandb"]] = option(
        ["tensorboard"], "experiment trackers besides metrics.jsonl (always written): tensorboard, mlflow, wandb")
    tensorboard: Optional[bool] = option(
        None, "true adds tensorboard to run.loggers, false removes it; null: as listed")
    log_every: NonNegativeInt = option(
        0, "per-step scalars (loss, lr, objective logs) to the trackers every N optimizer steps; 0: off")
    project: str = option("mate", "MLflow experiment and W&B project")
    mlflow_uri: Optional[str] = option(
        None, "MLflow tracking URI; null: MLFLOW_TRACKING_URI if set, else a file store mlruns/ beside the run folder")
    val_every: PositiveInt = option(
        1, "validate (and select the best checkpoint) every N epochs, and after the last one")
    select: Literal["mean", "last", "ensemble"] = option("mean", "validation score for the best checkpoint")
    deterministic: bool = option(False, "deterministic kernels (exact resume on GPU)")
    amp: Literal["none", "bf16", "fp16", "auto"] = option(
        "none", "autocast dtype; fp16 adds a gradient scaler (CUDA only); auto: bf16 where the hardware runs it "
                "natively (GPUs with bf16, CPUs with AVX-512 BF16 or AMX), none elsewhere")
    compile: bool = option(False, "torch.compile the training step (the first steps pay the compile time)")
    sync_batchnorm: bool = option(
        False, "under torchrun: BatchNorm statistics over the global batch, not per process")


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
    imports: list[str] = field(default_factory=list)  # user modules imported before the registries are read

    def to_dict(self) -> dict:
        out = {k: dataclasses.asdict(getattr(self, k)) for k in SECTIONS}
        out["model"] = dict(self.model)
        out["objective"] = dict(self.objective)
        # ``imports`` only when there are some: the configs (and checkpoints) of runs without user
        # modules stay exactly what they were.
        head = {"imports": list(self.imports)} if self.imports else {}
        return {**head, **{k: out[k] for k in ("data", "model", "objective", "optim", "run")}}

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
            if key not in known and key != "imports":
                raise ConfigError(f"unknown config section '{key}'; sections are: {', '.join(sorted(known))} "
                                  "(and the list 'imports')")
        imports = _check_imports(raw.get("imports"))
        import_modules(imports)  # before the model and objective sections meet the registries
        kwargs: dict[str, Any] = {"imports": imports}
        for name, klass in SECTIONS.items():
            kwargs[name] = _build_section(name, klass, raw.get(name) or {})
        for name in OPEN_SECTIONS:
            kwargs[name] = _check_open_section(name, raw.get(name) or {})
        return cls(**kwargs)


def _check_imports(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"config key 'imports' must be a list of module names (e.g. [mypkg.models]), got {value!r}")
    return list(dict.fromkeys(value))


def with_imports(raw: dict, modules: Sequence[str]) -> dict:
    """``raw`` with ``modules`` (``--import``) added to its ``imports``, and all of them imported, so
    that a caller can read the registries (e.g. a method list) before the config is built."""
    imports = _check_imports([*_check_imports(raw.get("imports")), *modules])
    import_modules(imports)
    return {**raw, "imports": imports} if imports else raw


def _build_section(section: str, klass: type, values: Any):
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{section}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(klass, include_extras=True)  # with the ranges in Annotated
    names = [f.name for f in dataclasses.fields(klass)]
    out = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"unknown config key '{section}.{key}'; valid keys: {', '.join(names)}")
        out[key] = coerce(f"{section}.{key}", value, hints[key])
    return klass(**out)


def _registry(section: str):
    from .models import MODELS
    from .objectives import OBJECTIVES

    return MODELS if section == "model" else OBJECTIVES


def _check_open_section(section: str, values: Any) -> dict:
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{section}' must be a mapping, got {values!r}")
    values = {"name": DEFAULT_NAMES[section], **values}
    name = values["name"]
    if not isinstance(name, str):
        raise ConfigError(f"config key '{section}.name' must be a string, got {name!r}")
    allowed = config_options(section, name)
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
        out[key] = coerce(f"{section}.{key}", value, allowed[key].annotation)
    return out


def config_options(section: str, name: str) -> dict:
    """The config keys of the registered model or objective ``name``: its keyword arguments
    (``inspect.Parameter``) but those the engine fills in."""
    params = _registry(section).options(name)
    return {k: p for k, p in params.items() if k not in DERIVED[section]}


# YAML 1.1, which PyYAML reads, takes a number for a float only with a dot and a signed exponent
# (5.0e-4): 5e-4, 5E-4 and 1e3 would be strings. Configs, overrides, grids and points are read with
# this loader, which also takes every exponent spelling of Python's float() (as YAML 1.2 does); the
# dumper quotes a string that would read back as such a number. Infinity and NaN are YAML's .inf
# and .nan; an option with a range refuses them.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


class YamlLoader(yaml.SafeLoader):
    pass


class YamlDumper(yaml.SafeDumper):
    pass


for _cls in (YamlLoader, YamlDumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+0123456789."))


def yaml_load(text: str) -> Any:
    """YAML text as Python values, with every float spelling read as a float."""
    return yaml.load(text, Loader=YamlLoader)


def yaml_dump(data: Any) -> str:
    """Python values as YAML that ``yaml_load`` reads back the same (keys in their order)."""
    return yaml.dump(data, Dumper=YamlDumper, sort_keys=False)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (PyYAML's own message spans several)."""
    problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return problem + (f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "")


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value (e.g. optim.lr=0.05)")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if len(path) < 2 or not all(path):
        raise ConfigError(f"override key '{key}' must be section.key (e.g. optim.lr=0.05)")
    try:
        value = yaml_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{text}': cannot parse the value ({_yaml_problem(exc)})") from None
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
        raw = yaml_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return raw


def load_config(path: Optional[str | Path] = None, overrides: Sequence[str] = (), imports: Sequence[str] = ()) -> Config:
    """Read a YAML file (or start from defaults), apply ``section.key=value`` overrides, add the
    modules ``imports`` to the config's own, validate."""
    raw = read_yaml(path) if path else {}
    return Config.from_dict(with_imports(apply_overrides(raw, overrides), imports))


def config_to_yaml(config: Config) -> str:
    return yaml_dump(config.to_dict())


def check_config(config: Config) -> None:
    """The config check, on a Config built in code (``load_config`` runs it on files and overrides)."""
    Config.from_dict(config.to_dict())


# -- the options, as mate list --options and docs/config_reference.md show them ------------------------


@dataclass(frozen=True)
class OptionInfo:
    key: str  # section.key
    type: str  # the values it takes: int, float or null, 'sgd' | 'adamw', ...
    default: str  # as written in YAML
    range: str  # e.g. >= 0, in [0, 1]; empty when the type says it all
    help: str  # one line of meaning


def section_options(section: str) -> list[OptionInfo]:
    """The keys of the fixed section ``section`` (data, optim, run), from its dataclass's fields."""
    klass = SECTIONS[section]
    hints = typing.get_type_hints(klass, include_extras=True)
    out = []
    for f in dataclasses.fields(klass):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        out.append(OptionInfo(f"{section}.{f.name}", type_text(hints[f.name]), format_value(default),
                              range_text(hints[f.name]), f.metadata["help"]))
    return out


def registered_options(section: str, name: str) -> list[OptionInfo]:
    """The config keys of the registered model or objective ``name``, from its signature (type,
    default, range) and the ``Args:`` of its docstring (meaning)."""
    meanings = _registry(section).meanings(name)
    return [OptionInfo(f"{section}.{key}", type_text(p.annotation), format_value(p.default),
                       range_text(p.annotation), meanings.get(key, ""))
            for key, p in config_options(section, name).items()]
