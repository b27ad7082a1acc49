"""Every alert's expression, without its threshold, returns data from a real Prometheus
scraping the real exporter: the metric names, labels and label matching of the rules
fit what stackmon actually serves (a typo or a dropped label would make an alert that
can never fire)."""

from __future__ import annotations

import re

import pytest

from tests.helpers.alerts import alerts
from tests.helpers.machine import absent_here
from tests.helpers.prometheus import returns_data

# Alerts whose series exist only in situations the full fixture does not create.
SKIP = {
    # pg_stat_replication_lag_bytes: only on a primary with a streaming standby.
    "PostgresReplicationLagBytes",
    # pg_replication_slot_active: only when a replication slot exists.
    "PostgresReplicationSlotInactive",
    # redis_master_link_up: only on a Redis replica.
    "RedisReplicaLinkDown",
    # pg_replication_slot_retained_wal_bytes: only when a replication slot exists.
    "PostgresReplicationSlotWalRetained",
}

# Data queries that cannot be derived by dropping the comparisons.
OVERRIDES = {
    # The shared Redis has no maxmemory (0): the "> 0" guard would hide the series, and
    # we must not reconfigure the shared server. Division by 0 still yields a sample.
    "RedisMemoryNearMax": "redis_memory_used_bytes / redis_memory_max_bytes",
    # Rules whose condition is not a comparison with a number at the end of an operand.
    "CeleryNoWorkers":
        "celery_workers unless on (job, instance) (stackmon_celery_events_receiver_up == 0)",
    "CeleryWorkerDown": "last_over_time(celery_worker_up[1d])"
                        " unless on (job, instance) (stackmon_celery_events_receiver_up == 0)",
    "RedisEvictions": "increase(redis_evicted_keys_total[5m]) unless on (job, instance)"
                      ' redis_instance_info{maxmemory_policy=~"allkeys-.*"}',
    "RedisReplicationBroken": "redis_connected_slaves - max_over_time(redis_connected_slaves[1h])",
    "PostgresMaxConnectionsReached":
        "sum by (job, instance) (pg_stat_activity_count) - on (job, instance)"
        " (pg_settings_max_connections - pg_settings_superuser_reserved_connections)",
    # The test machine may have no swap: the "> 0" guard would hide the series.
    "HostSwapFillingUp": "1 - node_memory_SwapFree_bytes / node_memory_SwapTotal_bytes",
}

COMPARISON = re.compile(r"(?s)(.*\S)\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?[0-9.e+*\s]+")


def data_query(alert: str, expr: str) -> str:
    """``expr`` without the threshold comparison of each ``and`` operand, with minute
    windows shrunk to seconds (the test Prometheus scrapes every second)."""
    if alert in OVERRIDES:
        expr = OVERRIDES[alert]
    parts = []
    for part in re.split(r"\s+and\s+", expr.strip()):
        m = COMPARISON.fullmatch(part.strip())
        parts.append(m.group(1) if m else part.strip())
    return re.sub(r"\[(\d+)m\]", r"[\1s]", " and ".join(parts))


def test_data_query_drops_thresholds() -> None:
    assert data_query("x", "rate(a_total[5m]) > 0.9") == "rate(a_total[5s])"
    assert data_query("x", "b - time() < 14 * 86400") == "b - time()"
    assert data_query("x", "a > 30\nand on (job, instance) b == 1") \
        == "a and on (job, instance) b"
    assert data_query("x", "a{x=\"y\"}") == 'a{x="y"}'


def test_skip_and_overrides_name_real_alerts() -> None:
    names = {a["alert"] for a in alerts()}
    assert sorted(SKIP - names) == []
    assert sorted(set(OVERRIDES) - names) == []


@pytest.mark.parametrize("rule", [a for a in alerts() if a["alert"] not in SKIP],
                         ids=lambda r: r["alert"])
def test_alert_expression_returns_data(warm: str, rule: dict[str, object]) -> None:
    reason = absent_here(str(rule["expr"]))
    if reason:
        pytest.skip(reason)
    promql = data_query(str(rule["alert"]), str(rule["expr"]))
    returns_data(warm, promql, what=f"{rule['alert']}: {promql}")
