"""`promtool check metrics` on a full scrape prints only allow-listed names."""

from __future__ import annotations

from tests.helpers.exporter import Exporter, allowlist, allowlisted, promtool_complaints


def test_promtool_clean_apart_from_allowlist(full_exporter: Exporter) -> None:
    text = full_exporter.get("/metrics")[2].decode()
    assert "stackmon_scrape_collector_success{collector=\"postgres\"} 1.0" in text
    assert promtool_complaints(text) == []


def test_allowlist_entries_are_exported(full_exporter: Exporter) -> None:
    """A stale allow-list entry would hide a future complaint: each must be in use."""
    text = full_exporter.get("/metrics")[2].decode()
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert sorted(e for e in allowlist() - set(ONLY_ELSEWHERE)
                  if not any(allowlisted(f, {e}) for f in families)) == []


# Allow-listed names the full exporter cannot emit, and the test that shows them in use.
ONLY_ELSEWHERE = {
    "celery_active_consumer_count": "RabbitMQ brokers only: test_celery_rabbitmq.py",
    "redis_cluster_messages_sent_total": "Redis cluster nodes only: test_redis.py",
    "redis_cluster_messages_received_total": "Redis cluster nodes only: test_redis.py",
}
