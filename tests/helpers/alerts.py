"""The shipped alert rules (prometheus/rules/*.yml) and the metric names their
expressions use, for the alert tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.docs import metrics_reference
from tests.helpers.exporter import REPO

RULES_DIR = REPO / "prometheus" / "rules"
TESTS_DIR = REPO / "prometheus" / "tests"
ALERTS_PAGE = REPO / "docs" / "alerts.md"

# Series Prometheus makes itself for every target (not exported by stackmon).
PROMETHEUS_SERIES = {"up"}

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
             "and", "or", "unless", "offset", "inf", "nan"}


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rule_test_files() -> list[Path]:
    return sorted(TESTS_DIR.glob("*.yml"))


def alerts() -> list[dict[str, Any]]:
    """Every alerting rule of every rules file (with its file as ``_file``)."""
    out = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    out.append({**rule, "_file": path.name})
    return out


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, keywords, label names,
    label values and durations left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)            # string literals
    text = re.sub(r"\{[^}]*\}", "", text)                         # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                        # range / subquery windows
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "",
                  text)                                            # label lists
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        if m.group(2) is None and m.group(1) not in _KEYWORDS:
            names.add(m.group(1))
    return names


def documented_metrics() -> set[str]:
    """Names in the first column of every metrics table in docs/ (cells may list
    several names, or a ``prefix_*`` family such as ``pg_settings_*``), plus the series of
    documented histograms."""
    names: set[str] = set()
    for line in metrics_reference().splitlines():
        if not line.startswith("|"):
            continue
        cells = line.split("|")
        found = re.findall(r"`([a-zA-Z_:][a-zA-Z0-9_:]*\*?)`", cells[1])
        names.update(found)
        if len(cells) > 2 and cells[2].strip() == "histogram":
            names.update(f"{n}_{s}" for n in found for s in ("bucket", "sum", "count"))
    return names


def undocumented(names: set[str]) -> list[str]:
    """The names neither documented exactly nor by a ``prefix_*`` family row."""
    documented = documented_metrics()
    families = [d[:-1] for d in documented if d.endswith("*")]
    return sorted(n for n in names - documented
                  if not any(n.startswith(prefix) for prefix in families))
