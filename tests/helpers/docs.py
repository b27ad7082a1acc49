"""The metrics tables: one "## Metrics" section per collector page in docs/, plus the
exporter's self-metrics in docs/metrics.md, for the docs tests."""

from __future__ import annotations

import re

from exporter.collectors import COLLECTORS
from tests.helpers.exporter import REPO

DOCS = REPO / "docs"
COLLECTOR_PAGES = tuple(spec.name for spec in COLLECTORS)


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 5)
    return text[start:end if end != -1 else len(text)]


def metrics_section(collector: str) -> str:
    """The text of docs/<collector>.md → Metrics."""
    return _section((DOCS / f"{collector}.md").read_text(), "## Metrics")


def metrics_reference() -> str:
    """Every metrics table: the self-metrics page and each collector's Metrics section."""
    return "\n".join([(DOCS / "metrics.md").read_text(),
                      *(metrics_section(name) for name in COLLECTOR_PAGES)])


def table_names(collector: str) -> set[str]:
    """Metric names in the first column of the collector's tables."""
    return set(re.findall(r"^\|\s*`([a-z_:A-Z0-9]+)`\s*\|", metrics_section(collector), re.M))
