"""Packaging. Installing mate-distill never replaces a user's PyTorch: torch and torchvision are declared as
minimum versions, and the versions scripts/setup.sh pins for a fresh environment meet them. A built
wheel holds the whole package, and the citation file matches the version."""
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).parents[1]


def test_torch_and_torchvision_have_minimum_versions_and_no_caps():
    deps = {r.name: r for r in map(Requirement, tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
                                   ["dependencies"])}
    for name in ("torch", "torchvision"):
        assert [s.operator for s in deps[name].specifier] == [">="], str(deps[name])
    pinned = re.findall(r'"(torch|torchvision)==([0-9.]+)"', (ROOT / "scripts" / "setup.sh").read_text())
    assert len(pinned) == 4  # one pair for aarch64, one for x86-64
    for name, version in pinned:
        assert Version(version) in deps[name].specifier, (name, version)


def test_the_citation_file_names_this_version_and_the_papers_doi():
    import yaml

    from mate import __version__

    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["version"] == __version__
    paper = cff["preferred-citation"]
    assert paper["doi"] == "10.1631/FITEE.2200644" and paper["authors"][0]["family-names"] == "Sun"
    for doc in ("README.md", "docs/method.md"):
        assert "10.1631/FITEE.2200644" in (ROOT / doc).read_text(), doc


def test_the_wheel_holds_every_module_and_shipped_config_and_the_cli(tmp_path):
    """A non-editable install (pip install ., or a wheel) gets the same package the editable one runs:
    every module, every shipped config and variants file, and the `mate` command. (Built without
    isolation, with the environment's setuptools, which the test extras require at the version the
    build system names: nothing is downloaded.)"""
    import shutil
    import subprocess
    import sys
    import zipfile

    from mate import __version__

    tree = tmp_path / "tree"  # a copy, so that the build leaves nothing in the repository
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, tree / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(tree), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name == f"mate_distill-{__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "src"
    wanted = {p.relative_to(package).as_posix() for p in package.rglob("*")
              if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts and ".egg-info" not in str(p)}
    assert wanted and wanted <= names, sorted(wanted - names)
    assert "mate/configs/fashion_mnist_quick.yaml" in wanted
    entry_points = zipfile.ZipFile(wheel).read(f"mate_distill-{__version__}.dist-info/entry_points.txt").decode()
    assert "mate = mate.cli:main" in entry_points
