"""The checks' shared core and catalogue: the panels each check names are exactly the
dashboards' panels that query its families, the families are documented and real, the
issue's cases are all there, the docs list them, the table and JSON renderings, the exit
codes, and the running exporter's findings (refreshed at most once per interval)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric

from exporter import checks
from exporter.checks import Check, Finding, Findings, Status
from exporter.collectors.base import Collector, CollectorSet, CollectorSpec
from exporter.collectors.celery.checks import RABBITMQ_PERMISSIONS, rabbitmq_vhost_user
from exporter.collectors.host import checks as host_checks
from exporter.collectors.host.common import Files, Paths
from exporter.collectors.host.timex import Timex
from tests.helpers import dashboards
from tests.helpers.alerts import metric_names, undocumented
from tests.helpers.exporter import REPO

CATALOGUE = [c for c in checks.catalogue() if c.name != "collect"]
# The cases issue 23 names: each must have a check.
ISSUE_CASES = {
    ("postgres", "pg_monitor"), ("postgres", "pg_stat_statements_preload"),
    ("postgres", "track_io_timing"), ("postgres", "pg_stat_statements_extension"),
    ("postgres", "replica_pg_read_all_stats"), ("celery", "task_events"),
    ("celery", "task_sent_events"), ("celery", "inspect"), ("celery", "events"),
    ("redis", "slowlog"), ("redis", "config_get"), ("celery", "rabbitmq_permissions"),
    ("host", "procfs"), ("host", "rootfs"), ("host", "textfile"), ("host", "timex"),
}
SUFFIXES = ("", "_bucket", "_sum", "_count")


def dashboard_panels(families: tuple[str, ...]) -> set[str]:
    """"<dashboard> / <panel>" of every shipped panel whose queries use one of
    ``families`` (a histogram through its _bucket, _sum or _count series)."""
    wanted = {f + s for f in families for s in SUFFIXES}
    found = set()
    for board in dashboards.load().values():
        title = board["title"].removeprefix("stackmon / ")
        for panel in dashboards.panels(board):
            names = set().union(*(metric_names(t.get("expr", ""))
                                  for t in panel.get("targets", [])))
            if names & wanted:
                found.add(f"{title} / {panel['title']}")
    return found


def test_the_issue_cases_all_have_a_check() -> None:
    assert {(c.collector, c.name) for c in CATALOGUE} >= ISSUE_CASES
    names = [(c.collector, c.name) for c in checks.catalogue()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("check", CATALOGUE, ids=lambda c: f"{c.collector}/{c.name}")
def test_panels_are_the_dashboards_panels_of_the_families(check: Check) -> None:
    assert set(check.panels) == dashboard_panels(check.families)
    assert len(check.panels) == len(set(check.panels))


@pytest.mark.parametrize("check", CATALOGUE, ids=lambda c: f"{c.collector}/{c.name}")
def test_families_are_documented_metrics(check: Check) -> None:
    assert check.families, "a check names what stays empty"
    assert undocumented(set(check.families)) == []
    assert check.fixes, "a check says how to fix it"


def test_the_panel_derivation_can_fail() -> None:
    assert dashboard_panels(("redis_slowlog_length",)) == {"Cache / Slow log"}
    assert "Celery / Task runtime" in dashboard_panels(("celery_task_runtime",))
    assert dashboard_panels(("pg_stat_database_blk_read_time",)) == set()


def test_timex_families_are_what_the_timex_collector_exports() -> None:
    exported = {s.name for fam in Timex(Paths(), Files()).collect() for s in fam.samples}
    assert set(host_checks.TIMEX.families) == exported


def test_rabbitmq_permissions_are_the_documented_ones() -> None:
    text = (REPO / "docs" / "security.md").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("rabbitmqctl set_permissions"))
    assert tuple(shlex.split(line)[-3:]) == RABBITMQ_PERMISSIONS


@pytest.mark.parametrize(("url", "expected"), [
    ("amqp://stackmon:pw@rabbit:5672//", ("/", "stackmon")),
    ("amqp://stackmon@rabbit/prod", ("prod", "stackmon")),
    ("amqp://rabbit:5672/a%2Fb", ("a/b", "guest")),
    ("pyamqp://u%40x:p@rabbit", ("/", "u@x")),
])
def test_rabbitmq_vhost_and_user_from_the_url(url: str, expected: tuple[str, str]) -> None:
    assert rabbitmq_vhost_user(url) == expected


def test_docs_list_every_check() -> None:
    text = (REPO / "docs" / "check.md").read_text()
    rows = set(re.findall(r"^\| `(\w+)` \| `(\w+)` \|", text, re.M))
    assert rows - {("services", "collect")} == {(c.collector, c.name) for c in CATALOGUE}


@pytest.mark.parametrize("page", ["host", "postgres", "redis", "celery", "services"])
def test_troubleshooting_starts_with_stackmon_check(page: str) -> None:
    text = (REPO / "docs" / f"{page}.md").read_text()
    section = text.split("## Troubleshooting", 1)[1].strip()
    first = section.split("\n\n", 1)[0]
    assert "`stackmon check`" in first and "check.md" in first, first


def test_readme_troubleshooting_points_to_stackmon_check() -> None:
    text = (REPO / "README.md").read_text()
    table = text.split("## Troubleshooting", 1)[1]
    first_row = [ln for ln in table.splitlines() if ln.startswith("| ")][1]
    assert "`stackmon check`" in first_row and "docs/check.md" in first_row, first_row
    assert "[docs/check.md](docs/check.md)" in text.split("## Documentation", 1)[1]


# -- rendering and exit codes -----------------------------------------------------------

SAMPLE = Check("redis", "slowlog", "SLOWLOG allowed", families=("redis_slowlog_length",),
               panels=("Cache / Slow log",),
               fixes={"acl": "ACL SETUSER {user} +slowlog|len +slowlog|get  # then ACL SAVE, "
                             "a comment long enough that a table would wrap it",
                      "renamed": "# redis.conf: remove rename-command SLOWLOG"})


def test_finding_fills_the_fix_of_its_cause() -> None:
    found = SAMPLE.finding(Status.MISSING, "NOPERM", cause="acl", user="mon")
    assert found.fix.startswith("ACL SETUSER mon +slowlog|len")
    assert SAMPLE.finding(Status.MISSING, "x", cause="renamed").fix.startswith("# redis.conf")
    assert SAMPLE.finding(Status.OK, "fine", user="mon").fix == ""


def test_table_wraps_details_never_fixes() -> None:
    findings = [
        Finding(checks.collect_check("redis"), Status.OK, "ran"),
        SAMPLE.finding(Status.MISSING, "the ACL user mon may not run SLOWLOG LEN and "
                       "SLOWLOG GET (NOPERM) " * 2, cause="acl", user="mon", target="cache"),
    ]
    table = checks.render_table(findings)
    lines = table.splitlines()
    assert lines[0].split() == ["COLLECTOR", "CHECK", "STATUS", "DETAIL", "AFFECTED", "FIX"]
    assert any(line.endswith(findings[1].fix) for line in lines), table
    assert "redis (cache)" in table and "panels: Cache / Slow log" in table
    assert max(len(line.split("  ")[0]) for line in lines) < 60
    assert lines[-1] == "1 ok, 1 missing"
    # ok rows show neither affected nor fix
    ok_row = next(line for line in lines if " collect " in line)
    assert "families" not in ok_row


def test_json_has_the_same_data() -> None:
    import json

    found = SAMPLE.finding(Status.MISSING, "NOPERM", cause="acl", user="mon")
    data = json.loads(checks.render_json([found]))
    assert data["exit_code"] == 1
    assert data["findings"] == [{
        "collector": "redis", "target": "", "check": "slowlog", "title": "SLOWLOG allowed",
        "status": "missing", "detail": "NOPERM",
        "affected": {"families": ["redis_slowlog_length"], "panels": ["Cache / Slow log"]},
        "fix": found.fix}]


@pytest.mark.parametrize(("statuses", "code"), [
    ([Status.OK], 0), ([Status.OK, Status.UNKNOWN], 0), ([Status.MISSING], 1),
    ([Status.OK, Status.BROKEN], 1), ([], 0)])
def test_exit_code(statuses: list[Status], code: int) -> None:
    assert checks.exit_code([SAMPLE.finding(s, "x", cause="acl", user="u")
                             for s in statuses]) == code


def check_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "exporter", "check", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=env or {})


def test_configuration_errors_exit_2_with_one_line() -> None:
    bad_flag = check_cli("--no-collector.host", "--format", "yaml")
    assert bad_flag.returncode == 2 and bad_flag.stdout == ""
    assert bad_flag.stderr.count("\n") == 1 and "stackmon check --help" in bad_flag.stderr
    bad_env = check_cli("--no-collector.host", env={"STACKMON_REDIS_URL": "http://x"})
    assert bad_env.returncode == 2 and bad_env.stderr.startswith(
        "stackmon: error: environment STACKMON_REDIS_URL: redis.url:"), bad_env.stderr


def test_no_collector_prints_no_check() -> None:
    run = check_cli("--no-collector.host")
    assert run.returncode == 0 and run.stdout.strip().endswith("no checks ran"), run


def test_procfs_here_is_ok_and_a_missing_one_is_missing() -> None:
    """The suite's own /proc is ok (the host's namespace, or a system container booted
    with systemd-nspawn -b: both watch their own system); a path that is not a procfs is
    missing. An application container's /proc is the case below, with PID 1 faked."""
    here = host_checks.check_procfs("/proc")
    assert here.status is Status.OK, here
    assert host_checks.check_procfs("/nonexistent").status is Status.MISSING


@pytest.mark.parametrize(("init", "status"), [
    ("systemd", Status.OK),  # systemd-nspawn -b, LXC: an OS whose /proc is the machine
    ("stackmon", Status.MISSING),  # docker run: the exporter is PID 1
    ("docker-init", Status.MISSING),  # docker run --init
])
def test_procfs_of_a_system_container_is_that_system(tmp_path: Path, init: str,
                                                     status: Status) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("Name:\tstackmon\nNSpid:\t42\n")
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "comm").write_text(init + "\n")
    found = host_checks.check_procfs(str(tmp_path), own_ns="pid:[4026532177]")
    assert found.status is status, found
    if status is Status.MISSING:
        assert "--path.procfs" in found.fix, found


# -- the running exporter's findings ---------------------------------------------------


class Up(Collector):
    """A collector that always works (the refresher's logic is under test, not a backend)."""

    name = "demo"

    def collect(self, deadline: float) -> list[Metric]:
        return [GaugeMetricFamily("demo_up", "1", value=1.0)]


def counting_spec(calls: list[float], status: Status = Status.MISSING,
                  gate: threading.Event | None = None) -> CollectorSpec:
    check = Check("demo", "thing", "the thing is there", families=("demo_up",),
                  fixes={"": "do <it> & \"now\""})

    def diagnose(collector: Any, deadline: float) -> list[Finding]:
        calls.append(time.monotonic())
        if gate is not None:
            gate.wait(10)
        return [check.finding(status, "the <thing> is missing")]
    return CollectorSpec("demo", "demo", object, build=lambda *a: [], checks=diagnose)


def run_refresh(findings: Findings, wait: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not wait() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert wait()


def test_findings_refresh_at_most_once_per_interval() -> None:
    calls: list[float] = []
    gate = threading.Event()
    cs = CollectorSet([Up()])
    findings = Findings([counting_spec(calls, gate=gate)], [("", cs)], interval=300)
    assert findings.metrics()[1].samples[0].value == 0.0  # never ran
    assert "Not run yet" in findings.html()
    cs.collect(time.monotonic() + 5)
    assert findings.maybe_refresh() is True
    assert findings.maybe_refresh() is False  # one running: no second
    gate.set()
    run_refresh(findings, lambda: findings.last_run > 0)
    for _ in range(5):
        assert findings.maybe_refresh() is False  # within the interval: none
    assert len(calls) == 1
    ok, last = findings.metrics()
    assert [(s.labels, s.value) for s in ok.samples] == [
        ({"collector": "demo", "check": "collect", "target": ""}, 1.0),
        ({"collector": "demo", "check": "thing", "target": ""}, 0.0)]
    assert last.samples[0].value == pytest.approx(time.time(), abs=30)
    page = findings.html()
    assert "the &lt;thing&gt; is missing" in page and "do &lt;it&gt; &amp; &quot;now&quot;" in page
    findings.interval = 0  # due again
    assert findings.maybe_refresh() is True
    run_refresh(findings, lambda: len(calls) == 2 and not findings._running)


def test_findings_skip_collectors_that_never_ran_and_hide_unknown() -> None:
    calls: list[float] = []
    cs = CollectorSet([Up()])
    findings = Findings([counting_spec(calls, Status.UNKNOWN)], [("", cs)])
    findings.refresh()
    assert findings.findings == [] and calls == []  # not scraped yet
    cs.collect(time.monotonic() + 5)
    findings.refresh()
    assert [f.status for f in findings.findings] == [Status.OK, Status.UNKNOWN]
    assert [s.labels["check"] for s in findings.metrics()[0].samples] == ["collect"]


def test_a_failing_diagnosis_is_a_broken_finding() -> None:
    def boom(collector: Any, deadline: float) -> list[Finding]:
        raise RuntimeError("diagnosis bug")
    cs = CollectorSet([Up()])
    cs.collect(time.monotonic() + 5)
    spec = CollectorSpec("demo", "demo", object, build=lambda *a: [], checks=boom)
    found = checks.diagnose([spec], [("", cs)], time.monotonic() + 5)
    assert [(f.check.name, f.status) for f in found] == [
        ("collect", Status.OK), ("diagnostics", Status.BROKEN)]
    assert "diagnosis bug" in found[1].detail


def test_checks_module_paths_exist() -> None:
    for spec in checks.catalogue():
        assert (Path(REPO) / "docs" / f"{spec.collector}.md").exists()
