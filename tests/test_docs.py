"""The README is a landing page whose reference material lives in docs/, every page reachable and every link
resolving."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")
# the sections of the README before it became a landing page (2026-12-04): each lives on in docs/
FORMER_README_SECTIONS = (
    "Quick start", "The path", "Your own log", "Logs larger than memory", "Logs larger than one machine",
    "Public datasets", "Configuration", "Output folder", "Downstream, without bertrec",
    "Fine-tuning: LoRA + a ranking head", "Recommendations from raw ids", "Items with content", "Evaluation",
    "Several processes and GPUs", "Benchmarks",
)  # fmt: skip


def pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_first_screen_holds_what_how_good_and_the_two_commands():
    first_screen = "\n".join((ROOT / "README.md").read_text().splitlines()[:60])
    assert "## How good" in first_screen and "| ml-100k |" in first_screen  # the headline table
    assert "accelerate launch recipes/pretrain.py" in first_screen
    assert 'pip install -e ".[test]" && pytest' in first_screen  # the test command CI runs


def test_every_former_readme_section_is_a_docs_heading_and_every_docs_page_is_linked():
    headings = {
        match.group(1).strip()
        for page in (ROOT / "docs").glob("*.md")
        for match in re.finditer(r"^#{1,3} (.+)$", page.read_text(), re.MULTILINE)
    }
    assert not [section for section in FORMER_README_SECTIONS if section not in headings]
    index = (ROOT / "docs" / "README.md").read_text()
    unlisted = [p.name for p in (ROOT / "docs").glob("*.md") if p.name != "README.md" and f"]({p.name})" not in index]
    assert not unlisted, f"docs pages missing from docs/README.md: {unlisted}"
    assert "](docs/README.md)" in (ROOT / "README.md").read_text()


def test_relative_links_resolve():
    broken = []
    for page in pages():
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            if not (page.parent / target.split("#", 1)[0]).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken
