"""``mate list``: the registered models, objectives and datasets, and every config option.

``mate list --options NAME`` shows the options of a model, objective or dataset, or of a section
(data, optim, run; model and objective: every registered one's): type, default, range and meaning, read from the code (``mate.config``'s
fields, the registered factories' signatures and docstrings), so the listing cannot drift from
what the config check enforces. ``--markdown`` prints Markdown; without NAME, that is
docs/config_reference.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..config import DEFAULT_NAMES, SECTIONS, OptionInfo, registered_options, section_options
from ..data import DATASETS, list_datasets
from ..data.registry import registered_info
from ..errors import ConfigError
from ..models import list_models
from ..objectives import list_objectives

COLUMNS = ("key", "type", "default", "range", "meaning")
SECTION_NAMES = ("data", "model", "objective", "optim", "run")  # model, objective: every registered one's
REFERENCE_INTRO = """\
# Config reference

Every key of a config, with its type, default, valid range and meaning. This file is generated from
the code by `mate list --options --markdown > docs/config_reference.md`, and a test fails when it
differs from that output: the keys of the data, optim and run sections are the fields of
`mate.config`; a model's or an objective's keys are the keyword arguments of its registered factory,
with their ranges in the annotations and their meanings under `Args:` in its docstring.
`mate list --options NAME` prints one of these tables. A value outside its range stops `mate` with
one line naming the key, before anything is read or built.
"""
SECTION_INTROS = {"data": "The dataset (`data.name`), its splits, augmentation and loaders.",
                  "optim": "The optimizer, its schedule and the training recipe.",
                  "run": "Seed, device, precision, run folder, trackers, validation."}


@dataclass
class Block:
    """One titled table of options, with the lines that introduce it."""

    title: str
    intro: list[str]
    rows: list[OptionInfo] = field(default_factory=list)


def list_command(options: Optional[str] = None, markdown: bool = False) -> int:
    """``options`` None: the registered names; "": every option; else the options of that name."""
    if options is None:
        if markdown:
            raise ConfigError("--markdown goes with --options (e.g. mate list --options --markdown)")
        print("models:     " + ", ".join(list_models()))
        print("objectives: " + ", ".join(list_objectives()))
        print("datasets:   " + ", ".join(list_datasets()))
        return 0
    blocks = option_blocks(options)
    if markdown:
        print(("" if options else REFERENCE_INTRO + "\n") + "\n".join(markdown_block(b) for b in blocks), end="")
    else:
        print("\n".join(text_block(b) for b in blocks), end="")
    return 0


def option_blocks(name: str) -> list[Block]:
    """The tables of ``name`` (a section, model, objective or dataset), or of everything when empty."""
    if not name:
        return ([_section("data", datasets=list_datasets()), _section("optim"), _section("run")]
                + [_registered("model", m) for m in list_models()]
                + [_registered("objective", o) for o in list_objectives()])
    blocks = [_section(name)] if name in SECTIONS else []
    blocks += [_registered("model", m) for m in list_models()] if name == "model" else []
    blocks += [_registered("objective", o) for o in list_objectives()] if name == "objective" else []
    blocks += [_registered("model", name)] if name in list_models() else []
    blocks += [_registered("objective", name)] if name in list_objectives() else []
    blocks += [_section("data", datasets=[name])] if name in DATASETS else []
    if not blocks:
        raise ConfigError(f"no section, model, objective or dataset is named {name!r}; sections: "
                          f"{', '.join(SECTION_NAMES)}; models: {', '.join(list_models())}; objectives: "
                          f"{', '.join(list_objectives())}; datasets: {', '.join(list_datasets())}")
    return blocks


def _section(section: str, datasets: tuple[str, ...] | list[str] = ()) -> Block:
    intro = [SECTION_INTROS[section]]
    if datasets:
        intro += ["Datasets (`data.name`):"] + [f"- `{d}`: {_dataset_shape(d)}" for d in datasets]
    return Block(f"{section} section", intro, section_options(section))


def _dataset_shape(name: str) -> str:
    info = registered_info(name)
    if name == "python":
        return ("classes and item shape from the datasets `data.factory` returns; the image-file keys are refused "
                "(`data.image_size` unless it is the items' own side)")
    if info is None:
        return "classes and image size read from its files; the image-file keys apply"
    shape = f"{info.num_classes} classes, {info.in_channels}x{info.input_size}x{info.input_size} inputs"
    return shape + ("; image files: the image-file keys apply" if info.image_files else "; arrays held in memory")


def _registered(section: str, name: str) -> Block:
    default = " (the default)" if DEFAULT_NAMES[section] == name else ""
    rows = registered_options(section, name)
    return Block(f"{section} {name}", [f"`{section}.name={name}`{default}" + ("" if rows else ": no option")], rows)


def text_block(block: Block) -> str:
    lines = [f"{block.title}: {block.intro[0]}".replace("`", "")]
    lines += ["  " + line.replace("`", "") for line in block.intro[1:]]
    if block.rows:
        cells = [COLUMNS] + [(o.key, o.type, o.default, o.range, o.help) for o in block.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(4)]
        for row in cells:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    return "\n".join(lines) + "\n"


def markdown_block(block: Block) -> str:
    lines = [f"## {block.title}", "", block.intro[0]]
    if len(block.intro) > 1:
        lines += [""] + block.intro[1:]
    if block.rows:
        lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        for o in block.rows:
            code = [f"`{c}`".replace("|", "\\|") if c else "" for c in (o.key, o.type, o.default, o.range)]
            lines.append("| " + " | ".join(code + [_prose(o.help)]) + " |")
    return "\n".join(lines) + "\n"


def _prose(text: str) -> str:
    """A meaning as one Markdown table cell that shows as written (``<dataset>`` is no HTML tag)."""
    return text.replace("|", "\\|").replace("<", "&lt;")
