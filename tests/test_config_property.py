"""A property of the config check: any config, however wrong, either validates (and then its model
and objective build, or refuse with a ConfigError of their own) or raises the one-line ConfigError;
never another exception. The configs are a seeded random walk of mutations away from a shipped
config: wrong types, values out of range, non-finite numbers, unknown keys and sections, derived
keys, other registered (or unknown) model and objective names, and overrides as typed on the
command line, in every section."""
import copy
import dataclasses
import math
import random

import pytest

from mate.config import SECTIONS, Config, apply_overrides, config_options, load_config, section_options
from mate.data import DatasetInfo
from mate.engine.trainer import build_model, build_objective
from mate.errors import ConfigError
from mate.models import list_models
from mate.objectives import list_objectives

CONFIGS = 700
BUILD_EVERY = 8  # build the model and objective of every 8th config that validates
VALUES = [None, True, False, 0, 1, 2, 3, -1, -5, 7, 10**12, -10**400, 0.0, 0.5, 0.999, 1.0, 1.5, -0.5, -1e-4, math.inf,
          -math.inf, math.nan, "", "abc", "d1", "auto", "sgd", "mean", "tensorboard", "uniform", [], [1], [1, 2],
          [3, 1], [0], [-1], [0.5, 0.9], [math.nan], ["x"], [[1]], {}, {"a": 1}]
# Values as typed after section.key= (parsed as YAML, as mate train's overrides are).
TEXTS = ["5e-4", "1E3", ".5", "-1", "0", "1_000", ".inf", "-.inf", ".nan", "nan", "inf", "null", "~", "yes",
         "0x10", "[1, 2]", "[1,", "{a: 1", "{}", "'3'", "1e", "e3", "--1", "true", "[.nan]"]
SHAPE = DatasetInfo(num_classes=10, in_channels=3, input_size=32)


# width 4 for every model that takes one: the models built below stay small and quick
BASE = load_config("fashion_mnist_quick", ["model.width=4"]).to_dict()


def keys_of(raw: dict, section: str) -> list[str]:
    """The keys a section can hold for its present content (the open sections': their entry's)."""
    if section in SECTIONS:
        return [f.name for f in dataclasses.fields(SECTIONS[section])]
    values = raw.get(section)
    name = values.get("name") if isinstance(values, dict) else None
    registered = list_models() if section == "model" else list_objectives()
    if isinstance(name, str) and name in registered:
        return ["name", *config_options(section, name)]
    return ["name"]


def default_of(raw: dict, section: str, key: str):
    """The default of ``section.key`` for the section's present content, as a YAML text."""
    if section in SECTIONS:
        return next(o.default for o in section_options(section) if o.key == f"{section}.{key}")
    name = raw[section]["name"]
    default = config_options(section, name)[key].default
    return "null" if default is None else str(default).lower() if isinstance(default, bool) else str(default)


def mutate(raw: dict, rng: random.Random) -> dict:
    """One random change of ``raw``, in place or through a command-line override."""
    section = rng.choice(["data", "optim", "run", "model", "objective"])
    kind = rng.random()
    if kind < 0.15:  # a valid change: a key set to its default, through an override
        keys = [k for k in keys_of(raw, section) if k != "name"]
        if keys:
            key = rng.choice(keys)
            raw = apply_overrides(raw, [f"{section}.{key}={default_of(raw, section, key)}"])
    elif kind < 0.45:
        node = raw.setdefault(section, {})
        if isinstance(node, dict):
            node[rng.choice(keys_of(raw, section))] = copy.deepcopy(rng.choice(VALUES))
    elif kind < 0.6:
        key = rng.choice(keys_of(raw, section))
        raw = apply_overrides(raw, [f"{section}.{key}={rng.choice(TEXTS)}"])
    elif kind < 0.75 and section in ("model", "objective"):
        names = list_models() if section == "model" else list_objectives()
        raw = apply_overrides(raw, [f"{section}.name={rng.choice(names + ['resnet19', 'MATE'])}"])
    elif kind < 0.82:
        node = raw.setdefault(section, {})
        if isinstance(node, dict):
            node[rng.choice(["learning_rate", "num_classes", "feature_dim", "total_epochs", "x"])] = 1
    elif kind < 0.88:
        raw[section] = rng.choice([None, 3, "fast", [1], []])
    elif kind < 0.92:
        raw[rng.choice(["training", "model_options", "Data"])] = {}
    else:
        node = raw.setdefault(section, {})
        if isinstance(node, dict) and node:
            del node[rng.choice(sorted(node))]
    return raw


def validate(raw: dict):
    """The Config of ``raw``, or None after a one-line ConfigError; any other exception propagates."""
    try:
        return Config.from_dict(copy.deepcopy(raw))
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc), raw
        return None


def test_mutated_configs_validate_or_raise_one_config_error():
    rng = random.Random(0)
    outcomes = {"error": 0, "valid": 0, "built": 0, "refused": 0}
    for i in range(CONFIGS):
        raw = copy.deepcopy(BASE)
        for _ in range(rng.randint(1, 3)):
            try:
                raw = mutate(raw, rng)
            except ConfigError as exc:  # an override that cannot be parsed or placed
                assert "\n" not in str(exc)
                outcomes["error"] += 1
                break
        else:
            try:
                config = validate(raw)
            except Exception as exc:  # noqa: BLE001 - the property under test
                pytest.fail(f"config {i} raised {type(exc).__name__} ({exc}), not a ConfigError: {raw!r}")
            if config is None:
                outcomes["error"] += 1
                continue
            outcomes["valid"] += 1
            if outcomes["valid"] % BUILD_EVERY:
                continue
            try:
                build_objective(config, build_model(config, SHAPE, pretrained=False))
                outcomes["built"] += 1
            except ConfigError as exc:
                assert "\n" not in str(exc)
                outcomes["refused"] += 1
            except Exception as exc:  # noqa: BLE001
                pytest.fail(f"config {i} validated, then building raised {type(exc).__name__} ({exc}): {raw!r}")
    # The walk reaches both sides often enough to mean something.
    assert outcomes["error"] >= 300 and outcomes["valid"] >= 100 and outcomes["built"] >= 10, outcomes
