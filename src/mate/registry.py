"""A tiny name -> factory registry shared by models, objectives and datasets."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Generic, TypeVar

from .errors import ConfigError
from .options import coerce, declares_values, documented_args

F = TypeVar("F", bound=Callable[..., Any])


def _where(factory: Callable) -> str:
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', factory)}"


class Registry(Generic[F]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: Dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: ``factory`` under ``name``. A name is taken once (a user module that reuses a
        built-in name is told so, rather than replacing it)."""
        def decorator(factory: F) -> F:
            if name in self._entries:
                raise ConfigError(f"{self.kind} '{name}' is registered twice (by {_where(self._entries[name])} and "
                                  f"{_where(factory)}); register yours under another name")
            self._entries[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str) -> F:
        if name not in self._entries:
            raise ConfigError(
                f"unknown {self.kind} '{name}'; choose one of: {', '.join(self.names())}"
            )
        return self._entries[name]

    def options(self, name: str) -> Dict[str, inspect.Parameter]:
        """Keyword options a factory accepts (used to validate config sections); their annotations
        are evaluated (types, not strings), so a config value can be checked against them."""
        factory = self.get(name)
        target = factory.__init__ if inspect.isclass(factory) else factory
        params = inspect.signature(target, eval_str=True).parameters
        return {
            k: p
            for k, p in params.items()
            if k != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def meanings(self, name: str) -> Dict[str, str]:
        """One line per documented option: the ``Args:`` section of the factory's docstring."""
        return documented_args(self.get(name))

    def create(self, name: str, **kwargs: Any) -> Any:
        factory = self.get(name)
        allowed = self.options(name)
        unknown = sorted(set(kwargs) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{self.kind} '{name}' has no option {', '.join(repr(u) for u in unknown)}; "
                f"its options are: {', '.join(sorted(allowed))}"
            )
        # The declared ranges and choices hold for values passed from Python too, not only for
        # those read from a config (which mate.config has checked already).
        for key, value in kwargs.items():
            if declares_values(allowed[key].annotation):
                coerce(f"{self.kind}.{key}", value, allowed[key].annotation)
        return factory(**kwargs)
