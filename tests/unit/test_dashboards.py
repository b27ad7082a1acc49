"""The committed dashboards are what grafana/generate.py makes, and they keep
grafana/dashboard-linter's rules, DESIGN §5 and the alert thresholds."""

from __future__ import annotations

import copy
import operator
import re
from pathlib import Path
from typing import Any

import pytest

from grafana import generate
from grafana.lib.dashboard import render
from grafana.lib.promql import scoped
from tests.helpers.alerts import alerts
from tests.helpers.dashboards import (
    COLOURS,
    SLUGS,
    Json,
    concrete,
    data_link_problems,
    data_links,
    instance_problems,
    link_problems,
    lint_dashboard,
    lint_expr,
    lint_panel,
    load,
    panels,
)

DASHBOARDS = load()
OK_EXPR = 'rate(node_load1{job=~"$job", instance=~"$instance"}[$__rate_interval])'

# Panels that show an alerted quantity: (dashboard, panel title) -> alerts as
# (name, a value at which it fires, a value at which it does not, in the panel's units).
# "complement": the panel shows 1 - the alert's quantity (used share vs. available share).
ALERTED: dict[tuple[str, str], list[tuple[str, float, float]]] = {
    ("overview", "CPU"): [("HostHighCpuUsage", 0.95, 0.85)],
    ("overview", "Memory used"): [("HostMemoryAvailableLow", 0.95, 0.8)],
    ("overview", "Root filesystem"): [("HostFilesystemAlmostFull", 0.97, 0.9),
                                      ("HostFilesystemFillingUp", 0.9, 0.8)],
    ("overview", "Disk space"): [("HostFilesystemAlmostFull", 0.97, 0.9),
                                 ("HostFilesystemFillingUp", 0.9, 0.8)],
    ("overview", "PostgreSQL connections"): [("PostgresTooManyConnections", 0.9, 0.5)],
    ("overview", "Redis memory"): [("RedisMemoryNearMax", 0.95, 0.5),
                                   ("RedisOutOfSystemMemory", 0.95, 0.5)],
    ("overview", "PostgreSQL"): [("PostgresDown", 0, 1)],
    ("overview", "Redis"): [("RedisDown", 0, 1)],
    ("overview", "Celery"): [("CeleryBrokerDown", 0, 1)],
    ("celery", "Failure ratio"): [("CeleryTaskFailureRatioHigh", 0.1, 0.01)],
    ("tasks", "Failure ratio"): [("CeleryTaskFailureRatioHigh", 0.1, 0.01)],
    ("overview", "Services up"): [("ServiceDown", 0, 1)],
    ("overview", "Check duration"): [("ServiceCheckSlow", 1.5, 0.5)],
    ("overview", "Collector success"): [("StackmonCollectorFailing", 0, 1)],
    ("overview", "CPU busy"): [("HostHighCpuUsage", 0.95, 0.85)],
    ("overview", "Memory available"): [("HostMemoryAvailableLow", 0.05, 0.2)],
    ("overview", "Filesystem used"): [("HostFilesystemAlmostFull", 0.97, 0.9),
                                      ("HostFilesystemFillingUp", 0.9, 0.8)],
    ("database", "PostgreSQL up"): [("PostgresDown", 0, 1)],
    ("database", "Connections used"): [("PostgresTooManyConnections", 0.9, 0.5)],
    ("database", "Oldest transaction"): [("PostgresLongRunningTransaction", 7200, 60)],
    ("database", "Slow queries"): [("PostgresSlowQueries", 1, 0)],
    ("database", "Cache hit ratio"): [("PostgresCacheHitRatioLow", 0.5, 0.99)],
    ("database", "Deadlocks"): [("PostgresDeadlocks", 10, 1)],
    ("database", "Standby replay lag"): [("PostgresReplicationLagSeconds", 60, 10)],
    ("database", "Standby lag (bytes)"): [("PostgresReplicationLagBytes", 2 * 1024 ** 3, 1024)],
    ("cache", "Redis up"): [("RedisDown", 0, 1)],
    ("cache", "Memory used"): [("RedisMemoryNearMax", 0.95, 0.5),
                               ("RedisOutOfSystemMemory", 0.95, 0.5)],
    ("cache", "Last RDB save"): [("RedisRdbSaveFailed", 0, 1)],
    ("overview", "Swap"): [("HostSwapFillingUp", 0.9, 0.5)],
    ("overview", "Load per CPU"): [("HostLoadHigh", 3, 1)],
    ("overview", "Inodes used"): [("HostInodesAlmostExhausted", 0.97, 0.9),
                                  ("HostInodesFillingUp", 0.9, 0.7)],
    ("overview", "Clock offset"): [("HostClockSkew", 0.1, 0.01)],
    ("overview", "Clock synchronised"): [("HostClockNotSynchronised", 0, 1)],
    ("database", "Uptime"): [("PostgresRestarted", 60, 3600)],
    ("database", "Idle in transaction"): [("PostgresIdleInTransaction", 600, 60)],
    ("database", "Rollback ratio"): [("PostgresHighRollbackRatio", 0.2, 0.05)],
    ("database", "Replication slot retained WAL"):
        [("PostgresReplicationSlotWalRetained", 11 * 1024 ** 3, 1024 ** 3)],
    ("database", "Replication slots active"): [("PostgresReplicationSlotInactive", 0, 1)],
    ("cache", "Rejected connections"): [("RedisRejectedConnections", 1, 0)],
    ("cache", "Evicted keys"): [("RedisEvictions", 1, 0)],
    ("cache", "Replica link"): [("RedisReplicaLinkDown", 0, 1)],
    ("overview", "TLS certificate expires in"):
        [("ServiceTLSCertExpiring", 13 * 86400, 15 * 86400),
         ("ServiceTLSCertExpiringCritical", 2 * 86400, 5 * 86400)],
    ("overview", "nginx up"): [("NginxDown", 0, 1)],
    ("celery", "Broker up"): [("CeleryBrokerDown", 0, 1)],
    ("celery", "Workers online"): [("CeleryNoWorkers", 0, 2)],
    ("celery", "Event receiver"): [("CeleryEventsReceiverDown", 0, 1)],
    ("celery", "Last inspect"): [("CeleryInspectStale", 900, 60)],
    ("celery", "Worker up"): [("CeleryWorkerDown", 0, 1)],
    ("celery", "Queue length"): [("CeleryQueueBacklogGrowing", 150, 50)],
}
# The panel shows the used share where the alert watches the available one.
COMPLEMENT = {"HostFilesystemAlmostFull", "HostFilesystemFillingUp",
              "HostInodesAlmostExhausted", "HostInodesFillingUp"}
COMPLEMENT_PANELS = {("overview", "Memory used"): {"HostMemoryAvailableLow"}}
# Alerts with no panel of their own, and why.
NOT_SHOWN = {
    "StackmonTargetDown": "on Prometheus's own `up`, not a stackmon metric",
    "HostFilesystemDeviceError": "a 0/1 flag; the filesystem panel loses the series instead",
    "HostNetworkReceiveErrors": "the network panel shows error rates, not the ratio",
    "HostNetworkTransmitErrors": "the network panel shows error rates, not the ratio",
    "HostDiskIOSaturated": "alerts on queue depth (weighted I/O time); Disk busy shows busy time",
    "HostFilesystemFillingUpFast": "a 4-hour trend; the filesystem panels show the used "
                                   "share, coloured at the 85 % / 95 % tiers",
    "PostgresMaxConnectionsReached": "an absolute limit minus reserved slots; Connections "
                                     "used shows the share of max_connections",
    "ServiceTLSCertExpired": "the TLS panel is already red from 3 days left "
                             "(ServiceTLSCertExpiringCritical); expired is a negative time",
    "RedisReplicationBroken": "compares replica counts over an hour; Connected replicas "
                              "shows the count",
    "StackmonCheckFailing": "a missing prerequisite; the landing page and `stackmon check` "
                            "list each finding with its fix, a panel would show a 0",
}
SEVERITY_COLOUR = {"warning": "orange", "critical": "red"}
OPS = {">": operator.gt, "<": operator.lt, "==": operator.eq, ">=": operator.ge,
       "<=": operator.le, "!=": operator.ne}


def panel_by_title(slug: str, title: str) -> Json:
    found = [p for p in panels(DASHBOARDS[slug]) if p["title"] == title]
    assert len(found) == 1, f"{slug}: {len(found)} panels titled {title!r}"
    return found[0]


def colour_at(panel: Json, value: float) -> str:
    """The threshold colour Grafana gives ``value`` (the last step at or below it)."""
    colour = ""
    for step in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]:
        if step["value"] is None or value >= step["value"]:
            colour = step["color"]
    return colour


def in_rule_units(alert: str, value: float, panel: tuple[str, str] = ("", "")) -> float:
    """A panel value in the units of the alert's expression."""
    flipped = alert in COMPLEMENT or alert in COMPLEMENT_PANELS.get(panel, set())
    return 1 - value if flipped else value


def rule_threshold(expr: str) -> tuple[str, float]:
    """Comparison operator and number of an alert: the last comparison of the first
    ``and`` operand (``a / (b > 0) > 0.9`` → ``>``, 0.9)."""
    first = re.split(r"\s+and\s+", expr.strip())[0]
    op, number = re.findall(r"(==|!=|>=|<=|>|<)\s*([0-9][0-9.e]*(?:\s*\*\s*[0-9.e]+)*)",
                            first)[-1]
    value = 1.0
    for factor in number.split("*"):
        value *= float(factor)
    return op, value


def test_regeneration_matches_the_committed_files(tmp_path: Path) -> None:
    written = generate.write_all(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{s}.json" for s in SLUGS)
    committed = sorted(p.name for p in generate.OUT_DIR.glob("*.json"))
    assert committed == sorted(p.name for p in written), "stale or extra dashboard files"
    for path in written:
        fresh = path.read_text()
        assert (generate.OUT_DIR / path.name).read_text() == fresh, (
            f"grafana/dashboards/{path.name} differs from the generator's output; "
            "run `make dashboards` and never edit the JSON by hand")


def test_rendering_is_stable() -> None:
    for d in generate.DASHBOARDS.values():
        assert render(d) == render(d)


def test_scoped_adds_the_matchers_to_every_selector() -> None:
    assert scoped('a{} / b{x="1"}') == (
        'a{job=~"$job", instance=~"$instance"} / b{job=~"$job", instance=~"$instance", x="1"}')


@pytest.mark.parametrize("slug", SLUGS)
def test_dashboard_keeps_the_lint_rules(slug: str) -> None:
    assert lint_dashboard(DASHBOARDS[slug]) == []


@pytest.mark.parametrize("slug", SLUGS)
def test_dashboard_identity(slug: str) -> None:
    d = DASHBOARDS[slug]
    assert d["uid"] == f"stackmon-{slug}"
    assert sum(1 for p in panels(d)) >= 8
    assert len({o["uid"] for o in DASHBOARDS.values()}) == len(DASHBOARDS)


def test_dashboards_link_to_each_other() -> None:
    assert sorted(DASHBOARDS) == sorted(SLUGS)
    assert link_problems(DASHBOARDS) == []


def test_broken_links_are_found() -> None:
    broken = copy.deepcopy(DASHBOARDS)
    broken["cache"]["links"] = [{"type": "dashboards", "tags": ["nope"]}]
    broken["celery"]["links"] = [{"type": "link", "url": "/d/stackmon-gone"}]
    found = "\n".join(link_problems(broken))
    assert "cache: link tags ['nope'] match no dashboard" in found
    assert "celery: link '/d/stackmon-gone' resolves to nothing" in found
    assert "cache: no link to" in found


def good_panel() -> Json:
    return copy.deepcopy(panel_by_title("overview", "CPU busy"))


@pytest.mark.parametrize(("change", "problem"), [
    (lambda p: p.update(description=""), "no description"),
    (lambda p: p["fieldConfig"]["defaults"].pop("unit"), "no unit"),
    (lambda p: p.update(datasource={"uid": "prom"}), "datasource is not"),
    (lambda p: p["targets"][0].update(datasource={"uid": "x"}), "query A: datasource"),
    (lambda p: p["fieldConfig"]["defaults"]["thresholds"]["steps"].append(
        {"value": 2, "color": "blue"}), "threshold colours"),
    (lambda p: p["fieldConfig"]["defaults"]["thresholds"]["steps"].append(
        {"value": 0.1, "color": "red"}), "not increasing"),
    (lambda p: p.update(targets=[]), "no queries"),
])
def test_lint_panel_finds_a_broken_panel(change: Any, problem: str) -> None:
    panel = good_panel()
    assert lint_panel(panel) == []
    change(panel)
    assert problem in "\n".join(lint_panel(panel))


@pytest.mark.parametrize(("expr", "problem"), [
    ('rate(node_load1{job=~"$job"}[$__rate_interval])', "lacks"),
    ('node_load1{job=~"$job", instance=~"$instance"} / node_load5', "node_load5: a selector"),
    ('rate(node_load1{job=~"$job", instance=~"$instance"}[5m])', "range [5m]"),
    ('django_http_requests_latency_seconds_by_view_method_count{job=~"$job", '
     'instance=~"$instance"}', "lacks job=~\"$app_job\""),
    ('not_a_metric{job=~"$job", instance=~"$instance"}', "not in the metrics reference"),
    ("time()", "no metric"),
])
def test_lint_expr_finds_a_broken_query(expr: str, problem: str) -> None:
    assert lint_expr(OK_EXPR) == []
    assert problem in "\n".join(lint_expr(expr))


@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: d.update(editable=True), "editable"),
    (lambda d: d.update(refresh="5s"), "refresh"),
    (lambda d: d.update(tags=[]), "not tagged"),
    (lambda d: d["panels"][2].update(id=d["panels"][1]["id"]), "not unique"),
    (lambda d: d["templating"]["list"][1].update(allValue=""), "variable job: allValue"),
    (lambda d: d["templating"]["list"][2].update(refresh=1), "variable instance: refresh"),
    (lambda d: d["templating"]["list"][2].update(multi=False), "variable instance: multi"),
    (lambda d: d["templating"]["list"][0].update(type="query"), "datasource variable"),
    (lambda d: d["templating"]["list"][1].update(query="label_values(nope, job)"),
     "variable job: query"),
])
def test_lint_dashboard_finds_a_broken_dashboard(change: Any, problem: str) -> None:
    d = copy.deepcopy(DASHBOARDS["database"])
    change(d)
    assert problem in "\n".join(lint_dashboard(d))


def test_concrete_replaces_grafana_variables() -> None:
    assert concrete(OK_EXPR) == 'rate(node_load1{job=~".+", instance=~".+"}[15s])'
    assert concrete("a{job=~\"${job}\"}") == 'a{job=~".+"}'
    assert concrete('a{instance=~"$instance"}[$__range]', instance="x:1") == (
        'a{instance=~"x:1"}[1h]')
    with pytest.raises(KeyError):
        concrete("a[$__nope]")


def test_alerted_table_names_real_panels_and_alerts() -> None:
    rules = {a["alert"] for a in alerts()}
    for (slug, title), entries in ALERTED.items():
        panel_by_title(slug, title)
        assert {e[0] for e in entries} <= rules
    shown = {e[0] for entries in ALERTED.values() for e in entries}
    assert sorted(rules - shown - set(NOT_SHOWN)) == [], "alert without a panel"
    assert sorted(shown & set(NOT_SHOWN)) == []
    assert set(NOT_SHOWN) <= rules


@pytest.mark.parametrize(("slug", "title"), sorted(ALERTED))
def test_thresholds_match_the_alerts(slug: str, title: str) -> None:
    """At the firing value the panel shows the alert's severity colour, at the quiet
    value a milder one; and the two values sit on either side of the rule's threshold."""
    panel = panel_by_title(slug, title)
    rules = {a["alert"]: a for a in alerts()}
    rank = {c: i for i, c in enumerate(COLOURS)}
    for name, firing, quiet in ALERTED[(slug, title)]:
        rule = rules[name]
        op, threshold = rule_threshold(str(rule["expr"]))
        where = (slug, title)
        assert OPS[op](in_rule_units(name, firing, where), threshold), (name, firing, op)
        assert not OPS[op](in_rule_units(name, quiet, where), threshold), (name, quiet, op)
        severity_colour = SEVERITY_COLOUR[rule["labels"]["severity"]]
        assert colour_at(panel, firing) == severity_colour, (name, firing)
        assert rank[colour_at(panel, quiet)] < rank[severity_colour], (name, quiet)
        assert name in panel["description"], f"{title}: description does not name {name}"


def test_rule_threshold_parser() -> None:
    assert rule_threshold("a / (b > 0) > 0.9") == (">", 0.9)
    assert rule_threshold("a > 1024 * 1024\nand b == 0") == (">", 1024 * 1024)
    assert rule_threshold("x == 0") == ("==", 0)


def test_descriptions_name_only_real_alerts() -> None:
    rules = {a["alert"] for a in alerts()}
    for d in DASHBOARDS.values():
        for p in panels(d):
            for name in re.findall(r"\b([A-Z][a-z]+(?:[A-Z][a-zA-Z]+)+) fires", p["description"]):
                assert name in rules, f"{p['title']}: {name} is not an alert"


@pytest.mark.parametrize("slug", SLUGS)
def test_every_series_names_its_instance(slug: str) -> None:
    problems = [q for p in panels(DASHBOARDS[slug]) for q in instance_problems(p)]
    assert problems == []


@pytest.mark.parametrize(("expr", "legend", "problem"), [
    ('sum by (job) (x{})', "{{instance}}", "by (job) drops instance"),
    ('sum(x{})', "{{instance}}", "aggregation without by"),
    ('x{}', "{{service}}", "legend lacks"),
])
def test_instance_problems_are_found(expr: str, legend: str, problem: str) -> None:
    panel = good_panel()
    assert instance_problems(panel) == []
    panel["targets"][0].update(expr=expr, legendFormat=legend)
    assert problem in "\n".join(instance_problems(panel))


@pytest.mark.parametrize("slug", SLUGS)
def test_firing_alerts_are_annotated(slug: str) -> None:
    found = [a for a in DASHBOARDS[slug]["annotations"]["list"]
             if a.get("expr", "").startswith("ALERTS{")]
    assert len(found) == 1, "no ALERTS annotation"
    a = found[0]
    assert a["enable"] is True and a["datasource"]["uid"] == "${datasource}"
    assert 'alertstate="firing"' in a["expr"] and 'instance=~"$instance"' in a["expr"]
    assert "{{alertname}}" in a["titleFormat"]


def test_service_tiles_link_to_their_dashboards() -> None:
    assert data_link_problems(DASHBOARDS) == []
    links = dict(data_links(DASHBOARDS["overview"]))
    for title, uid in (("PostgreSQL", "stackmon-database"), ("Redis", "stackmon-cache"),
                       ("Celery", "stackmon-celery"), ("PostgreSQL connections",
                                                       "stackmon-database"),
                       ("Redis memory", "stackmon-cache"), ("Celery pool", "stackmon-celery")):
        assert links[title].startswith(f"/d/{uid}?"), title


def test_broken_data_links_are_found() -> None:
    broken = copy.deepcopy(DASHBOARDS)
    tile = next(p for p in panels(broken["overview"]) if p["title"] == "Redis")
    tile["fieldConfig"]["defaults"]["links"][0]["url"] = "/d/stackmon-gone?x=1"
    found = "\n".join(data_link_problems(broken))
    assert "overview / Redis: '/d/stackmon-gone?x=1' opens no shipped dashboard" in found
    assert "lacks var-instance=${__field.labels.instance}" in found


def test_at_a_glance_row_has_gauges_and_stats() -> None:
    d = DASHBOARDS["overview"]
    first_row = d["panels"][0]
    assert first_row["type"] == "row" and first_row["title"] == "At a glance"
    glance = []
    for p in d["panels"][1:]:
        if p["type"] == "row":
            break
        glance.append((p["title"], p["type"]))
    kinds = dict(glance)
    for title in ("CPU", "Memory used", "Swap", "Root filesystem"):
        assert kinds[title] == "bargauge", title
    for title in ("PostgreSQL connections", "Redis memory", "Celery pool"):
        assert kinds[title] == "gauge", title
    for title in ("Cores", "RAM total", "Uptime"):
        assert kinds[title] == "stat", title


def test_variables_of_the_detail_dashboards() -> None:
    def names(slug: str) -> list[str]:
        return [v["name"] for v in DASHBOARDS[slug]["templating"]["list"]]
    assert "db" in names("database")
    assert {"queue_name", "task"} <= set(names("celery")) & set(names("tasks"))
    database = "\n".join(t["expr"] for p in panels(DASHBOARDS["database"])
                         for t in p["targets"])
    assert database.count('datname=~"$db"') >= 10


def test_ratios_never_divide_by_zero_into_nan() -> None:
    """A task (or a Redis, an API view) with no completions in the window shows 0 %, not
    NaN: every failure / hit / 5xx ratio divides by clamp_min(…)."""
    for slug, title in (("celery", "Failure ratio"), ("tasks", "Failure ratio"),
                        ("cache", "Hit rate"), ("overview", "5xx ratio")):
        expr = panel_by_title(slug, title)["targets"][0]["expr"]
        assert "/ clamp_min(" in expr, (slug, title)
    for slug, title in (("celery", "Task runtime"), ("tasks", "Runtime")):
        for t in panel_by_title(slug, title)["targets"]:
            assert t["expr"].endswith(">= 0"), (slug, title)
