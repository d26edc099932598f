"""Every option declares its range and meaning once (mate.options), and `mate list --options` and
docs/config_reference.md show exactly those declarations."""
import dataclasses
import re
import typing
from pathlib import Path

import pytest

from mate.cli import main
from mate.config import DERIVED, SECTIONS, config_options, registered_options, section_options
from mate.models import MODELS, list_models
from mate.objectives import OBJECTIVES, list_objectives
from mate.options import Range, documented_args, range_text

ROOT = Path(__file__).parents[1]
REGISTERED = [("model", m) for m in list_models()] + [("objective", o) for o in list_objectives()]
# Numbers without a declared range, and why: seeds are any integer; stage and level numbers are
# checked against the model's stages (1..K), and a wide ResNet's depth against 6n + 4.
UNRANGED = {"data.split_seed", "run.seed", "model.exit_stages", "model.exit_levels", "model.depth"}


def is_number(annotation) -> bool:
    """Whether an annotation takes ints or floats (alone, optional, or as a list's elements)."""
    if annotation in (int, float):
        return True
    return any(is_number(a) for a in typing.get_args(annotation) if not isinstance(a, Range))


# -- the declarations ------------------------------------------------------------------------------------
@pytest.mark.parametrize("section, name", REGISTERED)
def test_every_registered_option_has_one_line_of_meaning(section, name):
    options = registered_options(section, name)
    assert [o.key for o in options] == [f"{section}.{k}" for k in config_options(section, name)]
    for o in options:
        assert o.help and "\n" not in o.help, f"{o.key} of {name} has no meaning under Args: in its docstring"


@pytest.mark.parametrize("section, name", REGISTERED)
def test_documented_args_name_the_factory_s_arguments(section, name):
    registry = MODELS if section == "model" else OBJECTIVES
    documented = documented_args(registry.get(name))
    assert set(documented) <= set(registry.options(name)), f"{name}'s Args: names no argument"


@pytest.mark.parametrize("section", list(SECTIONS))
def test_every_field_of_a_fixed_section_has_one_line_of_meaning(section):
    for field in dataclasses.fields(SECTIONS[section]):
        assert field.metadata.get("help") and "\n" not in field.metadata["help"], f"{section}.{field.name}"


def test_every_number_declares_its_range():
    hints = {f"{s}.{k}": a for s, klass in SECTIONS.items()
             for k, a in typing.get_type_hints(klass, include_extras=True).items()}
    for section, name in REGISTERED:
        hints.update({f"{section}.{k}": p.annotation for k, p in config_options(section, name).items()})
    missing = sorted(k for k, a in hints.items() if is_number(a) and not range_text(a) and k not in UNRANGED)
    assert missing == []
    assert all(is_number(hints[k]) for k in UNRANGED)  # the exceptions are numbers indeed


def test_derived_arguments_are_no_options():
    for section, name in REGISTERED:
        assert not set(config_options(section, name)) & set(DERIVED[section]), name


def test_docstring_args_sections_are_read_as_one_line_each():
    def factory(width: int = 1, depth: int = 2, pretrained: bool = False):
        """A factory.

        Args:
            width: channels of the
                first stage (``x``).

            depth: blocks.
        Returns: a network; pretrained is not an entry.
        """

    assert documented_args(factory) == {"width": "channels of the first stage (`x`).", "depth": "blocks."}


@pytest.mark.parametrize("rule, text, inside, outside", [
    (Range(0), ">= 0", [0, 0.0, 5, 1e300, 10**400], [-1, -1e-9, -10**400, float("inf"), float("nan")]),
    (Range(1), ">= 1", [1, 2], [0, -1]),
    (Range(0, open_low=True), "> 0", [1e-9, 3], [0, -1, float("inf")]),
    (Range(0, 1), "in [0, 1]", [0, 0.5, 1], [-0.1, 1.1, float("nan")]),
    (Range(0, 1, open_high=True), "in [0, 1)", [0, 0.999], [1, 1.0]),
    (Range(0, 1, open_low=True), "in (0, 1]", [1e-6, 1], [0, 1.5]),
])
def test_ranges(rule, text, inside, outside):
    assert str(rule) == text
    assert all(v in rule for v in inside) and not any(v in rule for v in outside)


# -- mate list --options -----------------------------------------------------------------------------------
def listing(capsys, *args) -> list[str]:
    assert main(["list", "--options", *args]) == 0
    return capsys.readouterr().out.splitlines()


def row(lines: list[str], key: str) -> list[str]:
    """The columns of ``key``'s line: key, type, default, range, meaning (split on 2+ spaces)."""
    [line] = [line for line in lines if line.split()[:1] == [key]]
    return re.split(r"\s{2,}", line.strip())


def test_list_options_of_an_objective(capsys):
    lines = listing(capsys, "mate")
    assert lines[0] == "objective mate: objective.name=mate (the default)"
    assert row(lines, "objective.primary_share") == [
        "objective.primary_share", "float", "0.7", "in [0, 1]",
        "gamma, the share of exit k's KD that comes from its own teacher."]
    assert row(lines, "objective.detach_policy")[:3] == ["objective.detach_policy", "'d2' | 'd1'", "d2"]
    assert row(lines, "objective.proj_dim")[:4] == ["objective.proj_dim", "int or null", "null", ">= 1"]
    keys = [line.split()[0] for line in lines[2:]]
    assert keys == [f"objective.{k}" for k in config_options("objective", "mate")]
    assert "objective.num_exits" not in keys and "objective.label_smoothing" not in keys


def test_list_options_of_a_model_and_a_section(capsys):
    lines = listing(capsys, "wrn16_4")
    assert row(lines, "model.width")[:4] == ["model.width", "int", "64", ">= 1"]
    assert row(lines, "model.dropout")[:4] == ["model.dropout", "float", "0.0", "in [0, 1)"]
    assert row(lines, "model.exit_stages")[:3] == ["model.exit_stages", "list of int or null", "null"]
    assert row(lines, "model.gradient_equilibrium")[:3] == ["model.gradient_equilibrium", "bool", "false"]
    lines = listing(capsys, "optim")
    assert lines[0] == "optim section: The optimizer, its schedule and the training recipe."
    assert row(lines, "optim.lr") == ["optim.lr", "float", "0.1", ">= 0", "learning rate before the schedule's "
                                      "factor (the backbone's: lr x backbone_lr_scale)"]
    assert row(lines, "optim.milestones")[:4] == ["optim.milestones", "list of int", "[75, 130, 180]", "each >= 0"]


def test_list_options_of_the_model_section_shows_every_model(capsys):
    titles = [line.split(":")[0] for line in listing(capsys, "model") if line and not line.startswith(" ")]
    assert titles == [f"model {m}" for m in list_models()]


def test_list_options_of_a_dataset_shows_its_shape_and_the_data_keys(capsys):
    lines = listing(capsys, "cifar100")
    assert lines[:3] == ["data section: The dataset (data.name), its splits, augmentation and loaders.",
                         "  Datasets (data.name):", "  - cifar100: 100 classes, 3x32x32 inputs; arrays held in memory"]
    assert row(lines, "data.val_size")[:4] == ["data.val_size", "int", "5000", ">= 0"]


def test_list_options_of_an_unknown_name_or_markdown_alone_is_one_error_line(capsys):
    assert main(["list", "--options", "resnet19"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mate: error: no section, model, objective or dataset is named 'resnet19'; sections: "
                          "data, model, objective, optim, run; models: ") and err.count("\n") == 1
    assert main(["list", "--markdown"]) == 2
    assert capsys.readouterr().err == "mate: error: --markdown goes with --options (e.g. mate list --options --markdown)\n"


# -- docs/config_reference.md --------------------------------------------------------------------------------
def test_the_config_reference_is_the_generated_one(capsys):
    """Regenerate it with: mate list --options --markdown > docs/config_reference.md"""
    assert main(["list", "--options", "--markdown"]) == 0
    assert (ROOT / "docs" / "config_reference.md").read_text() == capsys.readouterr().out


def test_the_config_reference_has_every_key():
    text = (ROOT / "docs" / "config_reference.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+\.[a-z_0-9]+)` \|", text, flags=re.M))
    keys = {o.key for s in SECTIONS for o in section_options(s)}
    keys |= {f"{s}.{k}" for s, name in REGISTERED for k in config_options(s, name)}
    assert documented == keys
    assert "[docs/config_reference.md](docs/config_reference.md)" in (ROOT / "README.md").read_text()
