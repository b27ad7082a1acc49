"""The shipped alert rules: promtool accepts them, their unit tests pass, every alert has
a firing and a silent test case, and every metric they use is in the docs' metrics
reference (so the rules cannot drift from what the exporter serves)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helpers.alerts import (
    ALERTS_PAGE,
    PROMETHEUS_SERIES,
    alerts,
    documented_metrics,
    metric_names,
    rule_files,
    rule_test_files,
)

PROMTOOL = shutil.which("promtool")
AREAS = {"stackmon", "host", "postgres", "redis", "celery", "services"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    if PROMTOOL is None:
        pytest.fail("promtool is not installed; run scripts/test-services.sh")
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def test_one_rules_file_and_one_test_file_per_area() -> None:
    assert {p.stem for p in rule_files()} == AREAS
    assert {p.stem.removesuffix("_test") for p in rule_test_files()} == AREAS


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    proc = promtool("check", "rules", str(path))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # Lint findings (e.g. duplicate rules) are printed without failing the exit code.
    assert "SUCCESS" in out and not re.search(r"(?i)warning|duplicate|error", out), out


@pytest.mark.parametrize("path", rule_test_files(), ids=lambda p: p.name)
def test_promtool_unit_tests(path: Path) -> None:
    proc = promtool("test", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _cases() -> dict[str, tuple[int, int]]:
    """alertname -> (firing cases, silent cases) over every promtool test file."""
    cases: dict[str, tuple[int, int]] = {}
    for path in rule_test_files():
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                firing, silent = cases.get(case["alertname"], (0, 0))
                if case.get("exp_alerts"):
                    firing += 1
                else:
                    silent += 1
                cases[case["alertname"]] = (firing, silent)
    return cases


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    cases = _cases()
    missing = {a["alert"]: cases.get(a["alert"], (0, 0)) for a in alerts()
               if 0 in cases.get(a["alert"], (0, 0))}
    assert missing == {}, "alert -> (firing, silent) test cases"


def test_tests_name_only_existing_alerts() -> None:
    assert sorted(set(_cases()) - {a["alert"] for a in alerts()}) == []


def test_alert_names_are_unique() -> None:
    names = [a["alert"] for a in alerts()]
    assert sorted({n for n in names if names.count(n) > 1}) == []


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_alert_follows_the_conventions(rule: dict[str, object]) -> None:
    labels = rule.get("labels") or {}
    annotations = rule.get("annotations") or {}
    assert isinstance(labels, dict) and isinstance(annotations, dict)
    assert labels.get("severity") in ("warning", "critical")
    assert {"summary", "description"} <= set(annotations)
    assert "for" in rule
    # Every rate-like window is at least 4 x a 15 s scrape interval.
    for amount, unit in re.findall(r"\[(\d+)([smhd])\]", str(rule["expr"])):
        seconds = int(amount) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
        assert seconds >= 60, f"{rule['alert']}: window [{amount}{unit}] is under 1m"


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_alert_uses_only_documented_metrics(rule: dict[str, object]) -> None:
    used = metric_names(str(rule["expr"]))
    assert used, f"no metric found in {rule['expr']!r}"
    assert sorted(used - documented_metrics() - PROMETHEUS_SERIES) == []


def test_metric_name_parser() -> None:
    """The parser above must find names, or the documentation check proves nothing."""
    expr = ('sum by (job, instance) (rate(foo_total{mode="idle", a=~"x|y"}[5m])) '
            '/ on (instance) group_left (datname) bar_bytes > bool 0.9 and baz offset 5m')
    assert metric_names(expr) == {"foo_total", "bar_bytes", "baz"}
    assert "redis_up" in documented_metrics()
    assert "node_memory_MemAvailable_bytes" in documented_metrics()
    assert "celery_task_runtime_bucket" in documented_metrics()
    assert "not_a_metric" not in documented_metrics()


def test_every_alert_is_in_the_alerts_page() -> None:
    section = ALERTS_PAGE.read_text()
    listed = set(re.findall(r"`([A-Z][A-Za-z]+)`", section))
    assert sorted({a["alert"] for a in alerts()} ^ listed) == []
