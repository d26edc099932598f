"""What an option accepts and what it means, declared once where the option is defined.

An option's type is its annotation, and its valid numbers are a ``Range`` inside it:
``Annotated[float, Range(0, 1)]`` (the aliases below name the common ones). The fields of the
config's fixed sections (``mate.config``) and the keyword arguments of every registered model and
objective are annotated this way. ``coerce`` checks a value against such an annotation, and is the
one check behind the config (``mate.config``) and the registries' ``create`` (the Python API).
An option's meaning is one line: a config field's ``help`` (``mate.config.option``), or the entry
under ``Args:`` in the docstring of the model factory or objective class (``documented_args``).
``mate list --options`` and docs/config_reference.md are generated from these declarations.
"""
from __future__ import annotations

import collections.abc
import inspect
import math
import re
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Sequence

from .errors import ConfigError


@dataclass(frozen=True)
class Range:
    """The numbers an option accepts: ``Range(0)`` is >= 0, ``Range(0, 1)`` is [0, 1],
    ``Range(0, open_low=True)`` is > 0. On a list it bounds every element. Infinity and NaN are
    in no range: an option with a range takes finite numbers only."""

    low: Optional[float] = None
    high: Optional[float] = None
    open_low: bool = False  # low itself is excluded
    open_high: bool = False  # high itself is excluded

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.open_low else '['}{_number(self.low)}, "
                    f"{_number(self.high)}{')' if self.open_high else ']'}")
        if self.low is not None:
            return f"{'>' if self.open_low else '>='} {_number(self.low)}"
        return f"{'<' if self.open_high else '<='} {_number(self.high)}"

    def __contains__(self, value: float) -> bool:
        if not _finite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def check(self, key: str, value: Any) -> None:
        """One ConfigError naming ``key`` when the number ``value`` (or an element of the list
        ``value``) is outside the range; None passes (an optional option left unset)."""
        if value is None:
            return
        if isinstance(value, (list, tuple)):
            for i, element in enumerate(value):
                self.check(f"{key}[{i}]", element)
            return
        if value not in self:
            finite = "" if _finite(value) else "a finite number "
            raise ConfigError(f"config key '{key}' must be {finite}{self}, got {value!r}")


def _number(x: float) -> str:
    return f"{x:g}"


def _finite(value: float) -> bool:
    # an int is finite however large (math.isfinite would overflow converting 10**400 to a float)
    return isinstance(value, int) or math.isfinite(value)


def _is_list(annotation: Any) -> bool:
    # Sequence[int]'s origin is collections.abc.Sequence, not typing.Sequence
    return (typing.get_origin(annotation) in (list, tuple, collections.abc.Sequence)
            or annotation in (list, tuple, Sequence, collections.abc.Sequence))


# The ranges most options have.
PositiveInt = Annotated[int, Range(1)]  # counts and sizes: >= 1
NonNegativeInt = Annotated[int, Range(0)]
PositiveFloat = Annotated[float, Range(0, open_low=True)]  # temperatures, scales: > 0
NonNegativeFloat = Annotated[float, Range(0)]  # weights, epochs of a ramp: >= 0
UnitFloat = Annotated[float, Range(0, 1)]  # shares and probabilities: [0, 1]


def coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check ``value`` against a type annotation (a type, not a string: see ``Registry.options``)
    and the ranges in it; ints are accepted where floats are expected, and returned as floats."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is inspect.Parameter.empty:
        return value
    if origin is Annotated:
        value = coerce(key, value, args[0])
        for rule in annotation.__metadata__:
            if isinstance(rule, Range):
                rule.check(key, value)
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
    if _is_list(annotation):
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
        try:
            return float(value)
        except OverflowError:  # an int beyond the floats' range
            raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}") from None
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return value
    if annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return value
    return value


def declares_values(annotation: Any) -> bool:
    """Whether ``annotation`` restricts values beyond their type (a Range or a Literal choice), so
    that the registries check a value passed from Python, not only one read from a config."""
    if typing.get_origin(annotation) in (Annotated, Literal):
        return True
    return any(declares_values(a) for a in typing.get_args(annotation) if not isinstance(a, (str, bool, int)))


# -- how an option reads in listings -----------------------------------------------------------------------


def format_value(value: Any) -> str:
    """A value as it is written in a YAML config or an override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def type_text(annotation: Any) -> str:
    """``int``, ``float or null``, ``list of int``, ``'d1' | 'd2'``: the values an annotation takes."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return type_text(args[0])
    if origin is typing.Union:
        others = [type_text(a) for a in args if a is not type(None)]
        return " or ".join(others) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return " | ".join(repr(a) if isinstance(a, str) else format_value(a) for a in args)
    if _is_list(annotation):
        return f"list of {type_text(args[0])}" if args else "list"
    if annotation is dict:
        return "mapping"
    if annotation is Any or annotation is inspect.Parameter.empty:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


def range_text(annotation: Any) -> str:
    """The Range an annotation declares, as text (``>= 0``, ``in [0, 1]``, ``each >= 1`` for a
    list's elements); empty when it declares none."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        ranges = [str(r) for r in annotation.__metadata__ if isinstance(r, Range)]
        inner = range_text(args[0])
        return ", ".join(ranges + ([inner] if inner else []))
    if origin is typing.Union:
        return ", ".join(t for t in (range_text(a) for a in args) if t)
    if _is_list(annotation) and args:
        inner = range_text(args[0])
        return f"each {inner}" if inner else ""
    return ""


_ENTRY = re.compile(r"^(\s+)(\w+): ?(.*)$")


def documented_args(obj: Any) -> dict[str, str]:
    """The ``Args:`` section of ``obj``'s docstring as {name: meaning}, each meaning on one line.

    The section is Google style: an ``Args:`` line, then one ``name: meaning`` entry per option,
    indented; deeper-indented lines continue the entry above. It ends at the first line that is
    not indented (or at the end of the docstring)."""
    lines = (inspect.getdoc(obj) or "").splitlines()
    try:
        start = lines.index("Args:") + 1
    except ValueError:
        return {}
    out: dict[str, str] = {}
    indent, name = None, None
    for line in lines[start:]:
        if line and not line[0].isspace():
            break
        if not line.strip():
            continue
        entry = _ENTRY.match(line)
        if entry and (indent is None or len(entry.group(1)) == indent):
            indent, name = len(entry.group(1)), entry.group(2)
            out[name] = entry.group(3).strip()
        elif name is not None:
            out[name] = f"{out[name]} {line.strip()}".strip()
    # a reStructuredText literal (``x``) reads as Markdown code (`x`) in listings and the reference
    return {k: v.replace("``", "`") for k, v in out.items()}
