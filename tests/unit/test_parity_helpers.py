"""The parity tests' reader of scrapes and of the allow-list (tests/helpers/parity.py)."""

from __future__ import annotations

import math
from pathlib import Path

from tests.helpers.parity import Scrape, allowed, allowlist


def test_parser_keeps_names_labels_and_types() -> None:
    text = ('# TYPE pg_x counter\npg_x{a="1",b="q\\"x"} 3\n'
            '# TYPE pg_y_total counter\npg_y_total 1e+06\npg_z NaN\n'
            '# TYPE redis_s summary\nredis_s_sum{cmd="get"} 2\n')
    parsed = Scrape.parse(text)
    assert parsed.types == {"pg_x": "counter", "pg_y_total": "counter", "redis_s": "summary"}
    assert parsed.samples["pg_x"] == [({"a": "1", "b": 'q\\"x'}, 3.0)]
    assert parsed.samples["pg_y_total"] == [({}, 1e6)]
    assert math.isnan(parsed.samples["pg_z"][0][1])
    assert parsed.family("redis_s_sum") == "redis_s" and parsed.family("pg_x") == "pg_x"
    assert ("pg_x", frozenset({"a", "b"})) in parsed.shapes()
    assert parsed.label_sets("redis_s_sum") == {frozenset({"cmd"})}
    assert parsed.values("pg_x") == {frozenset({("a", "1"), ("b", 'q\\"x')}): 3.0}


def test_allowlist_reads_only_its_section(tmp_path: Path) -> None:
    path = tmp_path / "allow.txt"
    path.write_text("# intro comment line\n# node_exporter\nnode_x  a reason here\n"
                    "# postgres_exporter\n# a comment\npg_x*  because of this\n"
                    "# redis_exporter\nredis_y  another reason\n")
    assert allowlist("postgres_exporter", path) == {"pg_x*": "because of this"}
    assert allowlist("node_exporter", path) == {"node_x": "a reason here"}
    assert allowed("pg_x_total", {"pg_x*": ""}) and not allowed("pg_y", {"pg_x*": ""})
