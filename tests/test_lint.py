"""The code base passes ruff's pyflakes and bugbear rules (configured in pyproject.toml): an unused
import, an undefined name or a mutable default argument stops here."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def ruff() -> str:
    found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert found, "ruff is a test extra: pip install -e '.[test]'"
    return found


def test_ruff_finds_nothing():
    out = subprocess.run([ruff(), "check", "--no-cache", "--output-format", "concise", "src", "scripts", "benchmarks",
                          "tests"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_would_catch_an_unused_import(tmp_path):
    (tmp_path / "bad.py").write_text("import os\n")
    out = subprocess.run([ruff(), "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"), str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 1 and "F401" in out.stdout
