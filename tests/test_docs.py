"""The documentation as a reader follows it: every relative link and anchor lands."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.timeout(30)

DOCS = [PROJECT_ROOT / "README.md", PROJECT_ROOT / "benchmarks/README.md"]
PAGES = sorted([*DOCS, *(PROJECT_ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text a reader sees as Markdown: code blocks and code spans removed."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes from a page's headings (repeats get -1, -2...)."""
    made: set[str] = set()
    for heading in HEADING.findall(prose(page.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in made:
            n += 1
            anchor = f"{slug}-{n}"
        made.add(anchor)
    return made


def broken_links(page: Path) -> list[str]:
    """Each relative link of the page whose file or anchor does not exist."""
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto: lead out of the project
        path, _, anchor = target.partition("#")
        linked = (page.parent / unquote(path)).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and anchor not in anchors(linked):
            broken.append(f"{target}: no such heading in {linked.name}")
    return broken


def test_the_docs_are_pages_that_readme_reaches():
    assert len(PAGES) > 2
    readme_links = LINK.findall(prose((PROJECT_ROOT / "README.md").read_text()))
    assert "docs/README.md" in readme_links
    index_links = set(LINK.findall(prose((PROJECT_ROOT / "docs/README.md").read_text())))
    for page in PAGES:
        if page.parent.name == "docs" and page.name != "README.md":
            assert page.name in index_links, f"docs/README.md does not list {page.name}"
            assert "../README.md" in page.read_text().split("\n\n")[1], page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(PROJECT_ROOT).as_posix())
def test_every_relative_link_and_anchor_resolves(page):
    assert broken_links(page) == []


def test_readme_opens_with_the_demo_and_the_command_ci_runs():
    readme = (PROJECT_ROOT / "README.md").read_text()
    first_block = FENCE.search(readme).group(0).splitlines()[1:-1]
    ci_command = (PROJECT_ROOT / ".ci/run").read_text().strip().splitlines()[-1]
    assert first_block[0].endswith("&& .venv/bin/python sample/demo.py")
    assert first_block[1] == ci_command
    assert len(first_block) == 2
