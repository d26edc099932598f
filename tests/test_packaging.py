"""Installing mate-distill never replaces a user's PyTorch: torch and torchvision are declared as
minimum versions, and the versions scripts/setup.sh pins for a fresh environment meet them."""
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
