"""User code loaded by name: the modules of a config's ``imports`` (and ``--import``), and
objects named ``package.module:attribute`` (``data.factory``).

A user module registers its models, datasets and objectives when it is imported
(``@mate.register_model("name")`` and the like), so it has to be imported before a config's
model and objective sections are checked against the registries. Modules are looked up on
``sys.path`` and in the current folder, as ``python -m`` looks them up; the current folder is
added because the ``mate`` console script does not put it on the path. Worker processes
(local pools, Ray, Slurm, torchrun) start from the same folder, so they find the same modules.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Iterable

from .errors import ConfigError


def _search_current_folder() -> None:
    here = os.getcwd()
    if "" not in sys.path and here not in sys.path:
        sys.path.append(here)


def import_module(name: str, what: str) -> Any:
    """Module ``name``; a module that cannot be found is one ConfigError naming ``what`` asked for it.

    Other errors raised while the module runs are the module's own and keep their traceback.
    """
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{what}: a module name must be a non-empty string, got {name!r}")
    _search_current_folder()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # Only when the missing module is the one asked for (or a parent package of it); a module
        # that is found but fails to import one of its own dependencies says so itself.
        if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
            raise ConfigError(f"{what}: importing module '{name}' failed: {exc}") from None
        raise ConfigError(f"{what}: no module named '{name}' (searched sys.path and the current folder "
                          f"{os.getcwd()}; install it or add its folder to PYTHONPATH)") from None


def import_modules(names: Iterable[str], what: str = "imports") -> None:
    """Import every module of ``names`` (each registers what it defines)."""
    for name in names:
        import_module(name, what)


def load_object(spec: str, what: str) -> Any:
    """The object ``package.module:attribute`` (the attribute may be dotted: ``module:Class.method``)."""
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ConfigError(f"{what}={spec!r} must look like package.module:function")
    module_name, attribute = spec.split(":")
    obj = import_module(module_name, what)
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{what}={spec}: module '{module_name}' has no attribute '{attribute}'")
        obj = getattr(obj, part)
    return obj
