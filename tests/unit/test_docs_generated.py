"""docs/configuration.md is generated from the settings schema and cannot drift; every
relative link and anchor in the README and docs/ resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporter.collectors import COLLECTORS, all_setting_paths
from exporter.collectors.base import CollectorSpec
from exporter.docs import configuration_md
from exporter.settings import setting_paths
from tests.helpers.exporter import REPO

CONFIGURATION = Path(REPO) / "docs" / "configuration.md"
PAGES = [Path(REPO) / "README.md", *sorted((Path(REPO) / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def test_configuration_md_is_what_the_generator_writes() -> None:
    assert CONFIGURATION.read_text(encoding="utf-8") == configuration_md(), (
        "docs/configuration.md is stale: run `make docs` (python -m exporter.docs)")


def test_configuration_md_lists_every_setting() -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    for sp in all_setting_paths():
        assert f"| `{sp.key}` | `{sp.env}` |" in text, sp.key


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-'."""
    out: set[str] = set()
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        title = line.lstrip("#").strip().lower()
        slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
        n = 1
        base = slug
        while slug in out:
            slug = f"{base}-{n}"
            n += 1
        out.add(slug)
    return out


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return [m.group(1) for m in LINK.finditer(text)
            if not re.match(r"[a-z]+:", m.group(1))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for link in links(page):
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(
                path.read_text(encoding="utf-8")):
            broken.append(f"{link}: no heading #{anchor} in {path.name}")
    assert broken == [], f"{page.name}: {broken}"


def test_anchor_rules() -> None:
    assert anchors("# A\n## PostgreSQL (`postgres` collector)\n## A\n") == {
        "a", "postgresql-postgres-collector", "a-1"}


@pytest.mark.parametrize("spec", COLLECTORS, ids=lambda s: s.name)
def test_collector_page_lists_its_settings(spec: CollectorSpec) -> None:
    """Each collector's page names every setting of its section (the generated
    configuration.md has the details; the page must not fall behind the code)."""
    page = (Path(REPO) / "docs" / f"{spec.name}.md").read_text(encoding="utf-8")
    missing = [sp.key for sp in setting_paths([spec.settings])
               if f"`{sp.path[-1]}`" not in page and f"`{sp.key}`" not in page]
    assert missing == [], f"docs/{spec.name}.md does not mention {missing}"
