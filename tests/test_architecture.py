"""The layer rule of docs/architecture.md, checked on the source: every import of every module
(those inside functions included) points to its own layer or one below, nothing imports the
package root, a package re-exports only its own modules, and only the command layer talks to
the user (argparse in the CLI, print in the CLI and the handlers)."""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"

# Bottom to top. A module belongs to the layer of its longest listed prefix.
LAYERS = [
    ("base", ["mate._version", "mate.errors", "mate.options", "mate.plugins", "mate.registry", "mate.runtime"]),
    ("data", ["mate.data"]),
    ("models", ["mate.models"]),
    ("objectives", ["mate.objectives"]),
    ("config", ["mate.config"]),
    ("evaluation", ["mate.evaluation"]),
    ("engine", ["mate.engine"]),
    ("inference", ["mate.inference"]),
    ("experiments", ["mate.experiments"]),
    ("commands", ["mate.commands"]),
    ("cli", ["mate.cli", "mate.__main__"]),
]
ROOT = "mate"  # the package's __init__: the public API, re-exporting from the layers; imported by no module
TALKS_TO_THE_USER = ("mate.commands", "mate.cli")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted((SRC / "mate").rglob("*.py"))}


def layer(module: str) -> int:
    best, index = "", None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, index = prefix, i
    if index is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS here and to docs/architecture.md")
    return index


def imports(module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import of ``module`` that names a module of the package."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:  # ``from pkg import name`` imports a module when pkg.name is one
                candidate = f"{source}.{alias.name}"
                out.append((node.lineno, candidate if candidate in MODULES else source))
    return [(line, target) for line, target in out if target == ROOT or target.startswith(ROOT + ".")]


def test_the_modules_are_found():
    assert {"mate", "mate.cli", "mate.engine.trainer", "mate.evaluation.scores", "mate.commands.train"} <= set(MODULES)


@pytest.mark.parametrize("module", [m for m in MODULES if m != ROOT])
def test_imports_point_down_the_layers(module):
    own = layer(module)
    for line, target in imports(module):
        assert target != ROOT, f"{MODULES[module]}:{line} imports the package root; import from the module itself"
        assert layer(target) <= own, (
            f"{MODULES[module]}:{line}: {module} ({LAYERS[own][0]}) imports {target} ({LAYERS[layer(target)][0]}), "
            "a higher layer")


@pytest.mark.parametrize("module", [m for m, p in MODULES.items() if p.name == "__init__.py" and m != ROOT])
def test_a_package_reexports_only_its_own_modules(module):
    """Each name has one home: a package's __init__ does not re-export another package's names."""
    for line, target in imports(module):
        assert target == module or target.startswith(module + "."), (
            f"{MODULES[module]}:{line} re-exports {target}; import it from its own package instead")


@pytest.mark.parametrize("module", [m for m in MODULES if not m.startswith(TALKS_TO_THE_USER)])
def test_library_modules_neither_parse_arguments_nor_print(module):
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            assert "argparse" not in names, f"{module}:{node.lineno} imports argparse: parse in mate.cli"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            raise AssertionError(f"{module}:{node.lineno} prints: return the value, or take a log callable")
