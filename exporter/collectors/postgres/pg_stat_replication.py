"""pg_stat_replication and pg_replication_slots: standbys and slots seen from this server.

Sample output::

    pg_stat_replication_lag_bytes{application_name="s1",client_addr="10.0.0.2",state="..."} 0.0
    pg_stat_replication_replay_lag_seconds{application_name="s1",...} 0.001
    pg_replication_slot_active{database="",slot_name="s1",slot_type="physical"} 1.0
    pg_replication_slot_retained_wal_bytes{database="",slot_name="s1",slot_type="physical"} 0.0
"""

from __future__ import annotations

from exporter.collectors.postgres.view import PreparedQuery, Results, ServerInfo
from exporter.metrics import GaugeMetricFamily, Metric

CURRENT_LSN = ("CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() "
               "ELSE pg_current_wal_lsn() END")
REPLICATION_SQL = f"""
SELECT coalesce(application_name, ''), coalesce(host(client_addr), ''), coalesce(state, ''),
       pg_wal_lsn_diff({CURRENT_LSN}, replay_lsn)::float8,
       extract(epoch FROM write_lag)::float8, extract(epoch FROM flush_lag)::float8,
       extract(epoch FROM replay_lag)::float8
FROM pg_stat_replication
"""
SLOTS_SQL = f"""
SELECT slot_name, slot_type, coalesce(database, ''), active,
       pg_wal_lsn_diff({CURRENT_LSN}, restart_lsn)::float8
FROM pg_replication_slots
"""


def queries(server: ServerInfo) -> list[PreparedQuery]:
    return [PreparedQuery("replication", REPLICATION_SQL), PreparedQuery("slots", SLOTS_SQL)]


def metrics(r: Results, server: ServerInfo) -> list[Metric]:
    out: list[Metric] = []
    if "replication" in r:
        labels = ["application_name", "client_addr", "state"]
        families = [
            GaugeMetricFamily("pg_stat_replication_lag_bytes",
                              "WAL bytes the standby has not replayed yet.", labels=labels),
            GaugeMetricFamily("pg_stat_replication_write_lag_seconds",
                              "Standby write lag.", labels=labels),
            GaugeMetricFamily("pg_stat_replication_flush_lag_seconds",
                              "Standby flush lag.", labels=labels),
            GaugeMetricFamily("pg_stat_replication_replay_lag_seconds",
                              "Standby replay lag.", labels=labels),
        ]
        # Two standbys may share a name and address: keep the worst value.
        worst: dict[tuple[int, tuple[str, str, str]], float] = {}
        for row in r["replication"]:
            key = (str(row[0]), str(row[1]), str(row[2]))
            for i, value in enumerate(row[3:]):
                if value is None:
                    continue
                worst[(i, key)] = max(worst.get((i, key), value), float(value))
        for (i, key), value in sorted(worst.items()):
            families[i].add_metric(list(key), value)
        out += families
    if "slots" in r:
        labels = ["slot_name", "slot_type", "database"]
        active = GaugeMetricFamily("pg_replication_slot_active",
                                   "1 if a consumer is connected to the slot.", labels=labels)
        retained = GaugeMetricFamily("pg_replication_slot_retained_wal_bytes",
                                     "WAL bytes the slot keeps from being removed.",
                                     labels=labels)
        for name, kind, database, is_active, retained_bytes in r["slots"]:
            slot = [str(name), str(kind), str(database)]
            active.add_metric(slot, 1.0 if is_active else 0.0)
            if retained_bytes is not None:
                retained.add_metric(slot, retained_bytes)
        out += [active, retained]
    return out
