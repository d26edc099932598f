"""Every relative link in the project's markdown points at a file that exists, and every #anchor at a
heading of its target (GitHub's anchors: lower case, punctuation dropped, spaces to hyphens)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def markdown_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [f for f in files if f.is_file()]


def broken_links(path: Path) -> list[str]:
    bad = []
    for target in LINK.findall(FENCE.sub("", path.read_text())):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            bad.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target} (no such heading)")
    return bad


def test_the_slug_is_githubs():
    assert slug("Comparison under one harness (`configs/fashion_mnist_bench.yaml`)") == \
        "comparison-under-one-harness-configsfashion_mnist_benchyaml"
    assert slug("Testing MATE's claim (in progress)") == "testing-mates-claim-in-progress"
    assert slug("Step 5: the final table (test, reported once)") == "step-5-the-final-table-test-reported-once"


def test_a_broken_link_and_a_missing_heading_are_found(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## Part two\n")
    doc = tmp_path / "b.md"
    doc.write_text("[ok](a.md#part-two) [gone](c.md) [no heading](a.md#part-three) [web](https://x.org/y)\n"
                   "```\n[in code](nowhere.md)\n```\n")
    assert broken_links(doc) == ["c.md (no such file)", "a.md#part-three (no such heading)"]


def test_every_relative_link_in_the_docs_resolves():
    files = markdown_files()
    assert len(files) > 5
    bad = {str(f.relative_to(ROOT)): b for f in files if (b := broken_links(f))}
    assert bad == {}
