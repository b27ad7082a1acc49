"""The metrics tables (docs/<collector>.md → Metrics, docs/metrics.md) cannot drift
from the code: every family a real scrape emits is documented, and every documented name
is produced somewhere in exporter/. A ``node_memory_*`` entry stands for a family of
names that follows the kernel (/proc/meminfo's fields)."""

from __future__ import annotations

import fnmatch
import re

from tests.helpers.docs import metrics_reference
from tests.helpers.exporter import REPO, Exporter

SKIP_PREFIXES = ("process_", "python_")
METRIC = re.compile(r"`((?:node|stackmon|pg|redis|celery|flower|nginx)_[a-zA-Z0-9_]+\*?)`")


def reference() -> str:
    return metrics_reference()


def documented() -> set[str]:
    """Names in the first cell of every table row (other cells name other exporters)."""
    names: set[str] = set()
    for line in reference().splitlines():
        if line.startswith("|"):
            names.update(METRIC.findall(line.split("|")[1]))
    return names


def exposed_families(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def check_documented(exporter: Exporter) -> None:
    text = exporter.get("/metrics")[2].decode()
    known = documented()
    patterns = [p for p in known if p.endswith("*")]
    missing = sorted(name for name in exposed_families(text)
                     if not name.startswith(SKIP_PREFIXES) and name not in known
                     and not any(fnmatch.fnmatchcase(name, p) for p in patterns))
    assert missing == [], f"emitted but not in the metrics tables in docs/: {missing}"


def test_every_emitted_family_is_documented(full_exporter: Exporter) -> None:
    check_documented(full_exporter)


def test_every_documented_name_is_produced_by_the_code() -> None:
    source = "\n".join(p.read_text() for p in (REPO / "exporter").rglob("*.py"))
    missing = []
    for name in sorted(documented()):
        if name.endswith("*"):  # a family built from parts: its prefix is in the code
            if f'"{name[:-1]}' not in source and f'f"{name[:-1]}' not in source:
                missing.append(name)
            continue
        base = name.removesuffix("_total")
        if name not in source and f'"{base}' not in source and not _built(name, source):
            missing.append(name)
    assert missing == [], f"documented but produced nowhere in exporter/: {missing}"


def _built(name: str, source: str) -> bool:
    """Names assembled from parts, e.g. f"node_memory_{key}_bytes" with key MemTotal."""
    m = re.fullmatch(r"node_memory_(\w+)_bytes", name)
    if m:
        return f'"{m.group(1)}"' in source and "node_memory_{" in source
    if name.startswith("redis_cluster_"):  # every cluster_* field of INFO / CLUSTER INFO
        return 'f"redis_{field}"' in source and 'startswith("cluster_")' in source
    m = re.fullmatch(r"node_network_(\w+)_total", name)
    if m:
        return f'"{m.group(1)}"' in source and "node_network_{" in source
    return False
