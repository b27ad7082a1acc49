"""The shipped alert rules and Alertmanager config: promtool accepts the rules, their unit
tests pass, every alert has a firing and a silent test case, every metric they use is in
the docs' metrics reference (so the rules cannot drift from what the exporter serves),
every alert links a runbook section and a dashboard that exist and is listed in
docs/alerts.md; amtool accepts prometheus/alertmanager.yml and routes by severity."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

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
    undocumented,
)
from tests.helpers.exporter import REPO

PROMTOOL = shutil.which("promtool")
AMTOOL = shutil.which("amtool")
ALERTMANAGER_CONFIG = REPO / "prometheus" / "alertmanager.yml"
RUNBOOKS = REPO / "docs" / "runbooks.md"
DASHBOARDS = REPO / "grafana" / "dashboards"
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


def _duration(text: str) -> int:
    return sum(int(n) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[u]
               for n, u in re.findall(r"(\d+)([smhd])", text))


def test_stateful_alerts_have_a_resolution_case() -> None:
    """An alert that looks back over a window (``*_over_time``) must be seen to resolve:
    a test where it fires and, later in the same series, is silent again."""
    resolved = set()
    for path in rule_test_files():
        for test in yaml.safe_load(path.read_text())["tests"]:
            cases = test.get("alert_rule_test", [])
            for case in cases:
                if not case.get("exp_alerts"):
                    continue
                fired_at = _duration(case["eval_time"])
                if any(c["alertname"] == case["alertname"] and not c.get("exp_alerts")
                       and _duration(c["eval_time"]) > fired_at for c in cases):
                    resolved.add(case["alertname"])
    stateful = {a["alert"] for a in alerts() if "_over_time(" in str(a["expr"])}
    assert stateful, "no stateful alert found: the check proves nothing"
    assert sorted(stateful - resolved) == []


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
    assert set(annotations) == {"summary", "description", "runbook_url", "dashboard_url"}
    assert "for" in rule
    # Every rate-like window is at least 4 x a 15 s scrape interval.
    for amount, unit in re.findall(r"\[(\d+)([smhd])\]", str(rule["expr"])):
        seconds = int(amount) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
        assert seconds >= 60, f"{rule['alert']}: window [{amount}{unit}] is under 1m"


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_alert_uses_only_documented_metrics(rule: dict[str, object]) -> None:
    used = metric_names(str(rule["expr"]))
    assert used, f"no metric found in {rule['expr']!r}"
    assert undocumented(used - PROMETHEUS_SERIES) == []


def test_metric_name_parser() -> None:
    """The parser above must find names, or the documentation check proves nothing."""
    expr = ('sum by (job, instance) (rate(foo_total{mode="idle", a=~"x|y"}[5m])) '
            '/ on (instance) group_left (datname) bar_bytes > bool 0.9 and baz offset 5m')
    assert metric_names(expr) == {"foo_total", "bar_bytes", "baz"}
    assert "redis_up" in documented_metrics()
    assert "node_memory_MemAvailable_bytes" in documented_metrics()
    assert "celery_task_runtime_bucket" in documented_metrics()
    assert "not_a_metric" not in documented_metrics()


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of the headings of a Markdown text."""
    out = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def runbook_sections() -> dict[str, str]:
    """Anchor of each ``## Name`` section of docs/runbooks.md -> its text."""
    text = RUNBOOKS.read_text()
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    return {next(iter(anchors("## " + p.splitlines()[0]))): p for p in parts}


def test_anchor_slugs() -> None:
    assert anchors("# Title\n## CeleryWorkerDown\n### How to fix it") == {
        "title", "celeryworkerdown", "how-to-fix-it"}


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_runbook_section_exists(rule: dict[str, Any]) -> None:
    """runbook_url names a section of docs/runbooks.md about this alert, which says what
    it means, how to check and how to fix."""
    url = rule["annotations"]["runbook_url"]
    assert url == f"docs/runbooks.md#{rule['alert'].lower()}"
    section = runbook_sections().get(url.partition("#")[2])
    assert section is not None, f"{url}: no such section in docs/runbooks.md"
    assert section.splitlines()[0].strip() == rule["alert"]
    for part in ("Meaning", "Check", "Fix"):
        assert re.search(rf"^\*\*{part}\*\*", section, re.M), f"{rule['alert']}: no {part}"


def test_runbooks_have_no_section_without_an_alert() -> None:
    assert sorted(set(runbook_sections()) - {a["alert"].lower() for a in alerts()}) == []


@pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
def test_dashboard_url_names_a_shipped_dashboard(rule: dict[str, Any]) -> None:
    uids = {json.loads(p.read_text())["uid"] for p in DASHBOARDS.glob("*.json")}
    pattern = r"http://127\.0\.0\.1:3000/d/([\w-]+)\?var-instance=\{\{ \$labels\.instance \}\}"
    m = re.fullmatch(pattern, rule["annotations"]["dashboard_url"])
    assert m is not None, rule["annotations"]["dashboard_url"]
    assert m.group(1) in uids


def test_every_alert_is_in_docs_alerts() -> None:
    """docs/alerts.md: one table row per alert with its severity and runbook link."""
    rows = {}
    for line in ALERTS_PAGE.read_text().splitlines():
        m = re.match(r"\|\s*\[`(\w+)`\]\(([^)]+)\)\s*\|\s*(\w+)\s*\|(.+)\|", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3), m.group(4).strip())
    rules = {a["alert"]: a for a in alerts()}
    assert sorted(set(rows) ^ set(rules)) == []
    for name, (link, severity, threshold) in rows.items():
        assert link == f"runbooks.md#{name.lower()}", name
        assert severity == rules[name]["labels"]["severity"], name
        assert threshold, name


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    if AMTOOL is None:
        pytest.fail("amtool is not installed; run scripts/test-services.sh")
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60)


def test_amtool_check_config() -> None:
    proc = amtool("check-config", str(ALERTMANAGER_CONFIG))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_amtool_check_config_rejects_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(ALERTMANAGER_CONFIG.read_text().replace("receiver: pager",
                                                              "receiver: nobody"))
    proc = amtool("check-config", str(broken))
    assert proc.returncode != 0 and "nobody" in proc.stdout + proc.stderr


@pytest.mark.parametrize(("labels", "receiver"), [
    (["alertname=RedisDown", "severity=critical"], "pager"),
    (["alertname=CeleryWorkerDown", "severity=warning"], "tickets"),
    (["alertname=Unknown"], "tickets"),
])
def test_amtool_routes(labels: list[str], receiver: str) -> None:
    proc = amtool("config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
                  f"--verify.receivers={receiver}", *labels)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == receiver


def test_every_severity_of_the_rules_has_a_route() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    routed = {m for r in config["route"]["routes"] for m in r["matchers"]}
    severities = {a["labels"]["severity"] for a in alerts()}
    assert {f'severity="{s}"' for s in severities} <= routed
