"""The README's metrics reference, one subsection per collector, for the docs tests."""

from __future__ import annotations

import re

from tests.helpers.exporter import REPO

README = REPO / "README.md"
SECTIONS = {
    "host": "Host (`host` collector; node_exporter names)",
    "postgres": "PostgreSQL (`postgres` collector)",
    "redis": "Redis (`redis` collector)",
    "celery": "Celery (`celery` collector)",
    "services": "Service checks (`services` collector)",
}


def metrics_section(collector: str) -> str:
    """The text of README → Metrics reference → the collector's subsection."""
    text = README.read_text()
    start = text.index(f"\n### {SECTIONS[collector]}\n")
    end = min(i for i in (text.find("\n### ", start + 5), text.find("\n## ", start + 5))
              if i != -1)
    return text[start:end]


def table_names(collector: str) -> set[str]:
    """Metric names in the first column of the collector's tables."""
    return set(re.findall(r"^\|\s*`([a-z_:A-Z0-9]+)`\s*\|", metrics_section(collector), re.M))
