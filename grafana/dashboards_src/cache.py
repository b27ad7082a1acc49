"""The Cache dashboard (stackmon-cache): Redis servers."""

from __future__ import annotations

from grafana.dashboards_src.shared import REDIS_MEMORY
from grafana.lib.dashboard import Dash
from grafana.lib.panels import GREEN, ORANGE, RED, UP, above, st, ts, up
from grafana.lib.promql import RI, Q, rate, rates, ratio

RD = "job, instance"

CACHE = Dash(
    "cache", "stackmon / Cache", "Redis servers watched by stackmon.", "redis_up", [
        ("Status", [
            up("Redis up", "redis_up: 1 if the last scrape succeeded. RedisDown fires "
               "(critical) when 0 for 1 m.", Q("redis_up{}", "{{instance}}")),
            st("Version and role", "redis_version and role (master/slave) from INFO.", "none",
               Q("redis_instance_info{}", "{{instance}} {{redis_version}} {{role}}"),
               text=True),
            st("Memory used", "used_memory / maxmemory, or / the host's memory when "
               "maxmemory is 0 (no limit, Redis's default). RedisMemoryNearMax and "
               "RedisOutOfSystemMemory fire (warning) above 90 %.", "percentunit",
               Q(REDIS_MEMORY, "{{instance}}"), steps=above(0.9)),
            st("Clients", "Client connections (replicas excluded).", "short",
               Q("redis_connected_clients{}", "{{instance}}")),
            st("Uptime", "Seconds since the server started.", "s",
               Q("redis_uptime_in_seconds{}", "{{instance}}")),
            st("Fragmentation", "used_memory_rss / used_memory.", "short",
               Q("redis_mem_fragmentation_ratio{}", "{{instance}}")),
        ]),
        ("Memory and clients", [
            ts("Memory", "Memory used, resident set size, maxmemory (0 = no limit) and the "
               "host's memory.", "bytes",
               Q("redis_memory_used_bytes{}", "{{instance}} used"),
               Q("redis_memory_used_rss_bytes{}", "{{instance}} rss"),
               Q("redis_memory_max_bytes{}", "{{instance}} max"),
               Q("redis_total_system_memory_bytes{}", "{{instance}} system"), w=8),
            ts("Fragmentation over time", "used_memory_rss / used_memory "
               "(redis_mem_fragmentation_ratio): well above 1 means memory held but unused, "
               "below 1 means swapping.", "short",
               Q("redis_mem_fragmentation_ratio{}", "{{instance}}"), w=8),
            ts("Clients", "Connected and blocked clients.", "short",
               Q("redis_connected_clients{}", "{{instance}} connected"),
               Q("redis_blocked_clients{}", "{{instance}} blocked"), w=8),
            ts("Rejected connections", "Connections refused because of maxclients. "
               "RedisRejectedConnections fires (critical) on any increase over 5 m.", "short",
               Q(f"increase(redis_rejected_connections_total{{}}[{RI}])", "{{instance}}"),
               steps=[(None, GREEN), (0.5, RED)], w=8),
        ]),
        ("Throughput", [
            ts("Hit rate", "Key lookups that found the key / all lookups; 0 when idle.",
               "percentunit",
               Q(ratio(rate("redis_keyspace_hits_total", RD),
                       f'({rate("redis_keyspace_hits_total", RD)} + '
                       f'{rate("redis_keyspace_misses_total", RD)})'), "{{instance}}"),
               max=1, w=8),
            ts("Hits and misses", "Key lookups per second that found the key (hits) and "
               "that did not (misses).", "ops",
               *rates(RD, "{{instance}}", {"redis_keyspace_hits_total": "hits",
                                           "redis_keyspace_misses_total": "misses"}), w=8),
            ts("Operations", "Commands processed per second.", "ops",
               Q(rate("redis_commands_processed_total", RD), "{{instance}}"), w=8),
            ts("Commands by type", "Calls per second per command (top 10).", "ops",
               Q(f'topk(10, {rate("redis_commands_total", f"{RD}, cmd")})',
                 "{{instance}} {{cmd}}"), w=8),
            ts("Latency per command", "Average time per call of each command (time spent / "
               "calls, top 10 by time per call); idle commands are left out.", "s",
               Q(f'topk(10, {rate("redis_commands_duration_seconds_total", f"{RD}, cmd")} / '
                 f'({rate("redis_commands_total", f"{RD}, cmd")} > 0))',
                 "{{instance}} {{cmd}}"), w=8),
            ts("Network", "Bytes per second read (+) and written (-).", "Bps",
               Q(rate("redis_net_input_bytes_total", RD), "{{instance}} in"),
               Q(f'-{rate("redis_net_output_bytes_total", RD)}', "{{instance}} out"),
               w=8),
            ts("Expired keys", "Keys deleted at their TTL per second.", "ops",
               Q(rate("redis_expired_keys_total", RD), "{{instance}}"), w=8),
            ts("Evicted keys", "Keys evicted by maxmemory in the interval. RedisEvictions "
               "fires (warning) on any eviction over 5 m, unless the policy is allkeys-*.",
               "short",
               Q(f"increase(redis_evicted_keys_total{{}}[{RI}])", "{{instance}}"),
               steps=above(0.5), w=8),
            ts("Keys per database", "Keys per database and keys with a TTL.", "short",
               Q("redis_db_keys{}", "{{instance}} {{db}}"),
               Q("redis_db_keys_expiring{}", "{{instance}} {{db}} expiring"), w=8),
        ]),
        ("Persistence and replication", [
            up("Last RDB save", "redis_rdb_last_bgsave_status: 1 if the last background save "
               "succeeded. RedisRdbSaveFailed fires (warning) when 0 for 5 m.",
               Q("redis_rdb_last_bgsave_status{}", "{{instance}}"), w=8, down=ORANGE,
               texts=("FAILED", "OK")),
            ts("Changes since last save", "Writes since the last RDB save.", "short",
               Q("redis_rdb_changes_since_last_save{}", "{{instance}}"), w=8),
            ts("Slow log", "Entries in the slow log.", "short",
               Q("redis_slowlog_length{}", "{{instance}}"), w=8),
            ts("Connected replicas", "Replicas connected to each primary.", "short",
               Q("redis_connected_slaves{}", "{{instance}}"), w=8),
            ts("Replica link", "On a replica: 1 while the link to the primary is up. "
               "RedisReplicaLinkDown fires (critical) when 0 for 2 m.", "none",
               Q("redis_master_link_up{}", "{{instance}} → {{master_host}}:{{master_port}}"),
               steps=UP, max=1, w=8),
            ts("Replica ack lag", "On a primary: seconds since each replica's last ack.",
               "s", Q("redis_connected_slave_lag_seconds{}",
                      "{{instance}} {{slave_ip}}:{{slave_port}}"), w=8),
        ]),
    ])
