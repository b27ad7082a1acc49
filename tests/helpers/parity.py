"""What the parity tests against the anchors (node_exporter, postgres_exporter,
redis_exporter, Flower) share: a scrape read as written, and the reviewed allow-list.

    >>> Scrape.parse('# TYPE pg_x counter\\npg_x{a="1"} 3\\n').samples
    {'pg_x': [({'a': '1'}, 3.0)]}
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.exporter import REPO, http_get

ALLOWLIST = REPO / "tests" / "parity-allowlist.txt"
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass
class Scrape:
    """Prometheus text as written: sample names, label names and TYPE lines kept exactly.

    prometheus_client's parser renames counter samples to ``<name>_total``, which would
    hide the very difference these tests are about (postgres_exporter's bare counters),
    so the text is read line by line.
    """

    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Scrape:
        out = cls()
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                out.types[name] = kind
            elif line and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                name, _, labels = head.partition("{")
                out.samples.setdefault(name, []).append(
                    (dict(LABEL.findall(labels)), float(value)))
        return out

    @classmethod
    def get(cls, url: str) -> Scrape:
        status, _, body = http_get(url)
        assert status == 200, f"{url}: HTTP {status}"
        return cls.parse(body.decode())

    def family(self, sample: str) -> str:
        """The TYPE line a sample belongs to (``x_bucket``/``_sum``/``_count`` -> ``x``)."""
        if sample in self.types:
            return sample
        for suffix in ("_sum", "_count", "_bucket"):
            if sample.endswith(suffix) and sample[: -len(suffix)] in self.types:
                return sample[: -len(suffix)]
        return sample

    def shapes(self) -> set[tuple[str, frozenset[str]]]:
        """Every (sample name, label-name set) exported."""
        return {(name, frozenset(labels)) for name, series in self.samples.items()
                for labels, _ in series}

    def label_sets(self, name: str) -> set[frozenset[str]]:
        return {frozenset(labels) for labels, _ in self.samples.get(name, [])}

    def values(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {frozenset(labels.items()): v for labels, v in self.samples.get(name, [])}


def allowlist(section: str, path: Path = ALLOWLIST) -> dict[str, str]:
    """The ``# <section>`` entries of the allow-list: name or prefix* -> reason."""
    entries: dict[str, str] = {}
    current = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            words = stripped[1:].split()
            if len(words) == 1 and (words[0].endswith("_exporter") or words[0] == "flower"):
                current = words[0]
            continue
        if stripped and current == section:
            name, _, reason = stripped.partition(" ")
            entries[name] = reason.strip()
    return entries


def allowed(name: str, entries: dict[str, str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in entries)
