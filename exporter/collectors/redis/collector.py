"""Redis under redis_exporter's names and labels, from one pipelined round trip per scrape.

Per scrape, on one persistent connection (reopened only when it breaks; scrapes are
single-flight, so this pool of one is all a target ever needs):

* ``INFO ALL`` (on Redis >= 7 only the sections we read, so the large latencystats
  section is never built),
* ``SLOWLOG LEN`` and ``SLOWLOG GET 1`` (the newest entry: its id and duration),

pipelined: 3 commands, 1 round trip; on a cluster node also ``CLUSTER INFO`` (from the
scrape after the first, whose INFO tells).  Every INFO field redis_exporter exports is exported
under its name and type (the tables below), including its counters without ``_total``
(``redis_total_error_replies``).  ``CONFIG GET databases`` is added once per
connection (and again after a restart): like redis_exporter, ``redis_db_keys`` and
``redis_db_keys_expiring`` are 0 for every configured database the keyspace section
leaves out because it is empty.  ``CONFIG GET maxclients`` is added only for a
Redis older than 7.0, whose INFO lacks ``maxclients``.  Never KEYS or SCAN, so the cost
does not grow with the number of keys.  A command the server refuses (a managed Redis
that renames CONFIG, an ACL user without SLOWLOG) is logged once and then left out;
its metric is omitted and everything else is still served (without CONFIG, only the
databases that hold keys are reported and ``redis_config_io_threads`` is left out).

Sample output::

    redis_up 1.0
    redis_instance_info{maxmemory_policy="noeviction",redis_mode="standalone",
        redis_version="7.0.15",role="master",...} 1.0
    redis_memory_used_bytes 1.039936e+06
    redis_keyspace_hits_total 42.0
    redis_db_keys{db="db0"} 10.0
    redis_db_keys{db="db1"} 0.0
    redis_commands_total{cmd="get"} 7.0
    redis_commands_duration_seconds_total{cmd="get"} 3.1e-05
    redis_connected_slave_lag_seconds{slave_ip="127.0.0.1",slave_port="6380",
        slave_state="online"} 0.0
    stackmon_service_info{role="primary",service="redis",version="7.0.15"} 1.0
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection, parse_url
from redis.credentials import CredentialProvider
from redis.retry import Retry

from exporter.collectors.base import Collector, bare_counter, service_families
from exporter.collectors.redis.settings import RedisSettings, RedisTarget
from exporter.errors import ConfigError, SettingError
from exporter.metrics import CounterMetricFamily, GaugeMetricFamily, Metric
from exporter.secrets import read_secret_file
from exporter.settings import ScrapeSettings

log = logging.getLogger("stackmon.collectors.redis")

# No CLIENT SETINFO on connect (one command less, one ACL permission less).
NO_CLIENT_SETINFO: dict[str, Any] = (
    {"driver_info": None} if importlib.util.find_spec("redis.driver_info")  # redis-py >= 8
    else {"lib_name": None, "lib_version": None})

# The commands the collector sends (SENT; acl_rules() is the ACL that allows exactly these).
INFO_ALL = ("INFO", "ALL")
INFO_SECTIONS = ("INFO", "server", "clients", "memory", "persistence", "stats",
                 "replication", "cpu", "commandstats", "errorstats", "cluster",
                 "keyspace")  # Redis >= 7.0
SLOWLOG_LEN = ("SLOWLOG", "LEN")
SLOWLOG_GET = ("SLOWLOG", "GET", "1")
CLUSTER_INFO = ("CLUSTER", "INFO")  # cluster nodes only (INFO said cluster_enabled:1)
CONFIG_GET_MAXCLIENTS = ("CONFIG", "GET", "maxclients")  # Redis < 7.0 only
CONFIG_GET_DATABASES = ("CONFIG", "GET", "databases")  # once per connection
CONFIG_GET_IO_THREADS = ("CONFIG", "GET", "io-threads")  # once per connection (fixed at start)
SENT = (INFO_ALL, INFO_SECTIONS, SLOWLOG_LEN, SLOWLOG_GET, CLUSTER_INFO, CONFIG_GET_MAXCLIENTS,
        CONFIG_GET_DATABASES, CONFIG_GET_IO_THREADS)
UNKNOWN_DATABASES = 0  # CONFIG GET databases answered nothing usable: keyspace only


def acl_rules() -> str:
    """The Redis ACL rules that allow exactly what the collector sends (docs/redis.md):

    >>> acl_rules()
    '-@all +info +slowlog|len +slowlog|get +cluster|info +config|get'
    """
    rules = ["-@all"]
    for cmd in SENT:
        # A command with subcommands is allowed per subcommand; INFO's arguments are
        # section names, which ACLs do not restrict.
        rule = "+" + (cmd[0] if cmd[0] == "INFO" else f"{cmd[0]}|{cmd[1]}").lower()
        if rule not in rules:
            rules.append(rule)
    return " ".join(rules)
SERVICE = "redis"

# INFO field -> (metric name, help); gauges and counters read straight from INFO.
GAUGES: dict[str, tuple[str, str]] = {
    "uptime_in_seconds": ("redis_uptime_in_seconds", "Seconds since the server started."),
    "connected_clients": ("redis_connected_clients", "Client connections (not replicas)."),
    "blocked_clients": ("redis_blocked_clients", "Clients in a blocking call (BLPOP, ...)."),
    "used_memory": ("redis_memory_used_bytes", "Bytes allocated by Redis (used_memory)."),
    "used_memory_rss": ("redis_memory_used_rss_bytes", "Resident set size of the process."),
    "used_memory_peak": ("redis_memory_used_peak_bytes", "Peak of used_memory."),
    "used_memory_lua": ("redis_memory_used_lua_bytes", "Bytes used by the Lua engine."),
    "maxmemory": ("redis_memory_max_bytes", "maxmemory setting; 0 means no limit."),
    "total_system_memory": ("redis_total_system_memory_bytes", "Memory of the host."),
    "mem_fragmentation_ratio": ("redis_mem_fragmentation_ratio",
                                "used_memory_rss / used_memory."),
    "loading": ("redis_loading_dump_file", "1 while loading a dump file at start."),
    "rdb_changes_since_last_save": ("redis_rdb_changes_since_last_save",
                                    "Writes since the last RDB save."),
    "rdb_bgsave_in_progress": ("redis_rdb_bgsave_in_progress", "1 while a BGSAVE runs."),
    "rdb_last_save_time": ("redis_rdb_last_save_timestamp_seconds",
                           "Unix time of the last successful RDB save."),
    "aof_enabled": ("redis_aof_enabled", "1 if the append-only file is on."),
    "aof_rewrite_in_progress": ("redis_aof_rewrite_in_progress",
                                "1 while an AOF rewrite runs."),
    "instantaneous_ops_per_sec": ("redis_instantaneous_ops_per_sec",
                                  "Commands per second, Redis's own recent estimate."),
    "pubsub_channels": ("redis_pubsub_channels", "Pub/sub channels with subscribers."),
    "pubsub_patterns": ("redis_pubsub_patterns", "Pub/sub patterns with subscribers."),
    "connected_slaves": ("redis_connected_slaves", "Replicas connected to this server."),
    "master_repl_offset": ("redis_master_repl_offset",
                           "Replication offset of this server (bytes)."),
    "repl_backlog_size": ("redis_replication_backlog_bytes", "Replication backlog size."),
    # The rest of redis_exporter's INFO table (Redis >= 5 field names).
    "process_id": ("redis_process_id", "Process id of the server."),
    "io_threads_active": ("redis_io_threads_active", "1 while I/O threads are in use."),
    "tracking_clients": ("redis_tracking_clients", "Clients using client-side caching."),
    "clients_in_timeout_table": ("redis_clients_in_timeout_table",
                                 "Blocked clients with a timeout."),
    "client_recent_max_output_buffer": ("redis_client_recent_max_output_buffer_bytes",
                                        "Largest client output buffer, recent."),
    "client_recent_max_input_buffer": ("redis_client_recent_max_input_buffer_bytes",
                                       "Largest client input buffer, recent."),
    "allocator_active": ("redis_allocator_active_bytes", "Allocator active bytes."),
    "allocator_allocated": ("redis_allocator_allocated_bytes", "Allocator allocated bytes."),
    "allocator_resident": ("redis_allocator_resident_bytes", "Allocator resident bytes."),
    "allocator_frag_ratio": ("redis_allocator_frag_ratio", "Allocator fragmentation ratio."),
    "allocator_frag_bytes": ("redis_allocator_frag_bytes", "Allocator fragmentation bytes."),
    "allocator_rss_ratio": ("redis_allocator_rss_ratio", "Allocator RSS ratio."),
    "allocator_rss_bytes": ("redis_allocator_rss_bytes", "Allocator RSS overhead bytes."),
    "used_memory_overhead": ("redis_memory_used_overhead_bytes",
                             "Memory for internal structures (not data)."),
    "used_memory_startup": ("redis_memory_used_startup_bytes", "Memory used at start."),
    "used_memory_dataset": ("redis_memory_used_dataset_bytes", "Memory used by the data."),
    "used_memory_scripts": ("redis_memory_used_scripts_bytes", "Memory used by scripts."),
    "number_of_cached_scripts": ("redis_number_of_cached_scripts", "Cached Lua scripts."),
    "mem_fragmentation_bytes": ("redis_mem_fragmentation_bytes",
                                "used_memory_rss - used_memory."),
    "mem_clients_slaves": ("redis_mem_clients_slaves", "Memory used by replica clients."),
    "mem_clients_normal": ("redis_mem_clients_normal", "Memory used by normal clients."),
    "expired_stale_perc": ("redis_expired_stale_percentage",
                           "Estimated percentage of expired keys not yet deleted."),
    "mem_not_counted_for_evict": ("redis_mem_not_counted_for_eviction_bytes",
                                  "Memory (AOF and replica buffers) left out of maxmemory."),
    "lazyfree_pending_objects": ("redis_lazyfree_pending_objects",
                                 "Objects waiting to be freed in the background."),
    "active_defrag_running": ("redis_active_defrag_running", "1 while active defrag runs."),
    "migrate_cached_sockets": ("redis_migrate_cached_sockets_total",
                               "Sockets open for MIGRATE."),
    "active_defrag_hits": ("redis_defrag_hits", "Values moved by active defrag."),
    "active_defrag_misses": ("redis_defrag_misses", "Values active defrag skipped."),
    "active_defrag_key_hits": ("redis_defrag_key_hits", "Keys defragmented."),
    "active_defrag_key_misses": ("redis_defrag_key_misses", "Keys defrag skipped."),
    "expired_time_cap_reached_count": ("redis_expired_time_cap_reached_total",
                                       "Active expiry cycles stopped by their time cap."),
    "rdb_last_bgsave_time_sec": ("redis_rdb_last_bgsave_duration_sec",
                                 "Duration of the last BGSAVE."),
    "rdb_current_bgsave_time_sec": ("redis_rdb_current_bgsave_duration_sec",
                                    "Duration of the running BGSAVE (-1 if none)."),
    "rdb_last_cow_size": ("redis_rdb_last_cow_size_bytes",
                          "Copy-on-write bytes of the last BGSAVE."),
    "aof_rewrite_scheduled": ("redis_aof_rewrite_scheduled",
                              "1 if an AOF rewrite waits for a BGSAVE."),
    "aof_last_rewrite_time_sec": ("redis_aof_last_rewrite_duration_sec",
                                  "Duration of the last AOF rewrite."),
    "aof_current_rewrite_time_sec": ("redis_aof_current_rewrite_duration_sec",
                                     "Duration of the running AOF rewrite (-1 if none)."),
    "aof_last_cow_size": ("redis_aof_last_cow_size_bytes",
                          "Copy-on-write bytes of the last AOF rewrite."),
    "aof_current_size": ("redis_aof_current_size_bytes", "AOF size (AOF on only)."),
    "aof_base_size": ("redis_aof_base_size_bytes", "AOF size after the last rewrite."),
    "aof_pending_rewrite": ("redis_aof_pending_rewrite", "1 if an AOF rewrite is pending."),
    "aof_buffer_length": ("redis_aof_buffer_length", "AOF buffer size."),
    "aof_rewrite_buffer_length": ("redis_aof_rewrite_buffer_length",
                                  "AOF rewrite buffer size."),
    "aof_pending_bio_fsync": ("redis_aof_pending_bio_fsync", "fsync jobs queued."),
    "aof_delayed_fsync": ("redis_aof_delayed_fsync", "Delayed fsyncs."),
    "module_fork_in_progress": ("redis_module_fork_in_progress", "1 while a module fork runs."),
    "module_fork_last_cow_size": ("redis_module_fork_last_cow_size",
                                  "Copy-on-write bytes of the last module fork."),
    "tracking_total_keys": ("redis_tracking_total_keys", "Keys tracked for clients."),
    "tracking_total_items": ("redis_tracking_total_items", "Items tracked for clients."),
    "tracking_total_prefixes": ("redis_tracking_total_prefixes",
                                "Prefixes tracked for clients."),
    "repl_backlog_active": ("redis_repl_backlog_is_active", "1 if the backlog is in use."),
    "repl_backlog_first_byte_offset": ("redis_repl_backlog_first_byte_offset",
                                       "Replication offset of the backlog's first byte."),
    "repl_backlog_histlen": ("redis_repl_backlog_history_bytes", "Bytes in the backlog."),
    "second_repl_offset": ("redis_second_repl_offset",
                           "Offset up to which the previous replication id is accepted."),
    "slave_expires_tracked_keys": ("redis_slave_expires_tracked_keys",
                                   "Keys a writable replica tracks for expiry."),
    "slave_priority": ("redis_slave_priority", "replica-priority setting (replicas only)."),
    "sync_full": ("redis_replica_resyncs_full", "Full resyncs with replicas."),
    "sync_partial_ok": ("redis_replica_partial_resync_accepted",
                        "Partial resync requests accepted."),
    "sync_partial_err": ("redis_replica_partial_resync_denied",
                         "Partial resync requests denied."),
    "cluster_stats_messages_sent": ("redis_cluster_messages_sent_total",
                                    "Cluster bus messages sent (CLUSTER INFO)."),
    "cluster_stats_messages_received": ("redis_cluster_messages_received_total",
                                        "Cluster bus messages received (CLUSTER INFO)."),
    # A Redis before 5.0 names these two differently.
    "client_longest_output_list": ("redis_client_longest_output_list",
                                   "Longest client output list (Redis < 5)."),
    "client_biggest_input_buf": ("redis_client_biggest_input_buf",
                                 "Biggest client input buffer (Redis < 5)."),
}
COUNTERS: dict[str, tuple[str, str]] = {
    "total_connections_received": ("redis_connections_received_total",
                                   "Connections accepted by the server."),
    "rejected_connections": ("redis_rejected_connections_total",
                             "Connections refused because of maxclients."),
    "total_commands_processed": ("redis_commands_processed_total", "Commands processed."),
    "total_net_input_bytes": ("redis_net_input_bytes_total", "Bytes read from the network."),
    "total_net_output_bytes": ("redis_net_output_bytes_total", "Bytes written to the network."),
    "keyspace_hits": ("redis_keyspace_hits_total", "Key lookups that found the key."),
    "keyspace_misses": ("redis_keyspace_misses_total", "Key lookups that missed."),
    "expired_keys": ("redis_expired_keys_total", "Keys deleted because their TTL ran out."),
    "evicted_keys": ("redis_evicted_keys_total", "Keys evicted because of maxmemory."),
    "used_cpu_sys": ("redis_cpu_sys_seconds_total", "System CPU used by the server."),
    "used_cpu_user": ("redis_cpu_user_seconds_total", "User CPU used by the server."),
    "used_cpu_sys_children": ("redis_cpu_sys_children_seconds_total",
                              "System CPU used by background children."),
    "used_cpu_user_children": ("redis_cpu_user_children_seconds_total",
                               "User CPU used by background children."),
    "used_cpu_sys_main_thread": ("redis_cpu_sys_main_thread_seconds_total",
                                 "System CPU used by the main thread."),
    "used_cpu_user_main_thread": ("redis_cpu_user_main_thread_seconds_total",
                                  "User CPU used by the main thread."),
}
# Counters redis_exporter names without ``_total``: exported exactly so.
BARE_COUNTERS: dict[str, tuple[str, str]] = {
    "unexpected_error_replies": ("redis_unexpected_error_replies",
                                 "Error replies of unexpected kinds (AOF load, replication)."),
    "total_error_replies": ("redis_total_error_replies", "Error replies sent."),
    "total_reads_processed": ("redis_total_reads_processed", "Read events processed."),
    "total_writes_processed": ("redis_total_writes_processed", "Write events processed."),
    "io_threaded_reads_processed": ("redis_io_threaded_reads_processed",
                                    "Read events processed by I/O threads."),
    "io_threaded_writes_processed": ("redis_io_threaded_writes_processed",
                                     "Write events processed by I/O threads."),
    "dump_payload_sanitizations": ("redis_dump_payload_sanitizations",
                                   "Deep checks of RESTORE payloads."),
}
# INFO field -> metric for "ok"/"up" status strings (1 good, 0 bad).
STATUS: dict[str, tuple[str, str, str]] = {
    "rdb_last_bgsave_status": ("redis_rdb_last_bgsave_status", "ok",
                               "1 if the last BGSAVE succeeded."),
    "aof_last_bgrewrite_status": ("redis_aof_last_bgrewrite_status", "ok",
                                  "1 if the last AOF rewrite succeeded."),
    "aof_last_write_status": ("redis_aof_last_write_status", "ok",
                              "1 if the last AOF write succeeded."),
}
# Replicas only, labelled with their primary (master_host, master_port) as redis_exporter.
REPLICA_GAUGES: dict[str, tuple[str, str]] = {
    "slave_repl_offset": ("redis_slave_repl_offset", "Replication offset of this replica."),
    "master_sync_in_progress": ("redis_master_sync_in_progress",
                                "1 while this replica syncs from its primary."),
    "master_last_io_seconds_ago": ("redis_master_last_io_seconds_ago",
                                   "Seconds since the last interaction with the primary."),
}
MASTER_LABELS = ["master_host", "master_port"]
INFO_LABELS = ("redis_version", "redis_build_id", "redis_mode", "os", "maxmemory_policy",
               "tcp_port", "run_id", "process_id", "role")
SLAVE_LABELS = ["slave_ip", "slave_port", "slave_state"]
_SLAVE_LINE = re.compile(r"^slave\d+$")
_DB_LINE = re.compile(r"^db\d+$")


@dataclass
class Reading:
    """What one round trip brought back (None: not asked, or refused)."""

    info: dict[str, str]
    slowlog_length: int | None = None
    slowlog_last: tuple[float, float] | None = None  # (id, seconds) of the newest entry
    maxclients: int | None = None


class RedisScrapeError(Exception):
    """A scrape failure with a message safe to log (no password)."""


def parse_info(text: str) -> dict[str, str]:
    """``INFO`` text -> {field: value}; ``# Section`` headers and blank lines skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(":")
        if sep:
            out[key] = value.strip()
    return out


def parse_kv(value: str) -> dict[str, str]:
    """``keys=1,expires=0,avg_ttl=0`` -> {"keys": "1", ...}."""
    out: dict[str, str] = {}
    for part in value.split(","):
        key, sep, val = part.partition("=")
        if sep:
            out[key] = val
    return out


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text.rstrip("%"))
    except ValueError:
        return None


class PasswordFileCredentials(CredentialProvider):
    """Reads the password file at every connect, so a rotated password is picked up."""

    def __init__(self, username: str | None, path: str) -> None:
        self.username = username
        self.path = path

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        try:
            password = read_secret_file(self.path, "password_file")
        except SettingError as err:
            raise redis.AuthenticationError(f"password_file: {err.message}") from None
        return (self.username, password) if self.username else (password,)


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect; ``describe`` is safe for logs (no password)."""

    url: str
    username: str | None
    password: str | None
    password_file: str | None
    socket_timeout: float
    target: str | None = None  # probe target name

    @property
    def describe(self) -> str:
        kw = parse_url(self.url)  # type: ignore[no-untyped-call]
        if "path" in kw:
            where = f"unix://{kw['path']}"
        else:
            scheme = "rediss" if self.url.startswith("rediss:") else "redis"
            where = f"{scheme}://{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"
        return where if self.target is None else f"{where} (target {self.target})"

    def connection_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = parse_url(self.url)  # type: ignore[no-untyped-call]
        kw["db"] = 0  # INFO is server-wide; never SELECT
        if self.username is not None:
            kw["username"] = self.username
        if self.password is not None:
            kw["password"] = self.password
        elif self.password_file is not None:
            kw["credential_provider"] = PasswordFileCredentials(
                kw.pop("username", None), self.password_file)
            kw.pop("password", None)
        kw.update(socket_timeout=self.socket_timeout, socket_connect_timeout=self.socket_timeout,
                  retry=Retry(NoBackoff(), 0), protocol=2, health_check_interval=0,
                  **NO_CLIENT_SETINFO)
        return kw


class RedisCollector(Collector):
    """One Redis server: INFO + SLOWLOG LEN per scrape on one persistent connection."""

    name = "redis"

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        kw = endpoint.connection_kwargs()
        connection_class = kw.pop("connection_class", redis.Connection)
        try:
            # The pool: one persistent connection, opened on the first scrape, reopened only
            # when it breaks.  Scrapes are single-flight, so a second one is never needed;
            # owning it lets every connect and read be bounded by the scrape deadline.
            self.conn: AbstractConnection = connection_class(**kw)
        except TypeError as err:
            raise ConfigError(f"redis: url {endpoint.describe}: unsupported option in the "
                              f"URL's query string ({err})") from None
        self._lock = threading.Lock()
        self._info_cmd: tuple[str, ...] = INFO_ALL
        self._need_config = True  # until an INFO shows maxclients (Redis >= 7.0)
        # Optional commands the server refused ("SLOWLOG GET", "CONFIG GET"), logged once,
        # each with why: "acl" (NOPERM), "renamed" (unknown command: rename-command or a
        # managed Redis), "unsupported" (unknown subcommand); read by checks.py.
        self.refusals: dict[str, str] = {}
        self._start_time: tuple[str, float] | None = None  # (run_id, start time)
        # Configured databases (CONFIG GET databases); None: ask on the next round trip.
        self._databases: int | None = None
        self._io_threads: int | None = None  # CONFIG GET io-threads, asked with databases
        self._cluster = False  # the last INFO said cluster_enabled:1

    @classmethod
    def from_settings(cls, s: RedisSettings | RedisTarget, target: str | None = None,
                      default_timeout: float = 5.0) -> RedisCollector:
        timeout = s.socket_timeout_seconds
        assert s.url is not None
        return cls(Endpoint(s.url, s.username, s.password, s.password_file,
                            default_timeout if timeout is None else timeout, target))

    # -- talking to Redis ----------------------------------------------------------------

    def _commands(self) -> list[tuple[str, ...]]:
        cmds = [self._info_cmd]
        cmds += [cmd for cmd in (SLOWLOG_LEN, SLOWLOG_GET) if _key(cmd) not in self.refusals]
        if self._cluster and _key(CLUSTER_INFO) not in self.refusals:
            cmds.append(CLUSTER_INFO)
        if "CONFIG GET" not in self.refusals:
            if self._need_config:
                cmds.append(CONFIG_GET_MAXCLIENTS)
            if self._databases is None:
                cmds += [CONFIG_GET_DATABASES, CONFIG_GET_IO_THREADS]
        return cmds

    def _round_trip(self, conn: AbstractConnection, cmds: Sequence[tuple[str, ...]],
                    deadline: float) -> list[Any]:
        """Send ``cmds`` pipelined; a refused command's reply is the ResponseError."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RedisScrapeError("no time left before the scrape deadline")
        budget = min(self.endpoint.socket_timeout, remaining)
        conn.socket_connect_timeout = budget
        conn.socket_timeout = budget
        conn.send_packed_command(conn.pack_commands(cmds))  # type: ignore[no-untyped-call]
        replies: list[Any] = []
        for _ in cmds:
            budget = max(0.001, min(self.endpoint.socket_timeout, deadline - time.monotonic()))
            try:
                replies.append(conn.read_response(timeout=budget))
            except redis.ResponseError as err:
                replies.append(err)
        return replies

    def _query(self, deadline: float) -> Reading:
        conn = self.conn
        if conn._sock is None:  # a new connection: read the number of databases again
            self._databases = None
        cmds = self._commands()
        try:
            reused = conn._sock is not None
            try:
                replies = self._round_trip(conn, cmds, deadline)
            except redis.TimeoutError:
                raise
            except redis.ConnectionError:
                if not reused:
                    raise
                # The kept connection was broken (a Redis restart): reconnect once, now.
                conn.disconnect()  # type: ignore[no-untyped-call]
                replies = self._round_trip(conn, cmds, deadline)
        except BaseException:
            conn.disconnect()  # type: ignore[no-untyped-call]  # never reuse a half-read one
            raise
        return self._read_replies(cmds, replies)

    def _read_replies(self, cmds: Sequence[tuple[str, ...]], replies: Sequence[Any]
                      ) -> Reading:
        info: dict[str, str] | None = None
        cluster: dict[str, str] = {}
        slowlog: int | None = None
        slowlog_last: tuple[float, float] | None = None
        maxclients: int | None = None
        for cmd, reply in zip(cmds, replies, strict=True):
            if isinstance(reply, redis.ResponseError):
                if cmd[0] == "INFO":
                    if str(reply).startswith(("NOAUTH", "WRONGPASS")):
                        raise RedisScrapeError(
                            f"authentication failed for {self.endpoint.describe}: "
                            f"{first_line(reply)} (check the username and password)")
                    if self._info_cmd is INFO_SECTIONS:  # fall back to the 1-argument form
                        self._info_cmd = INFO_ALL
                    raise RedisScrapeError(f"INFO refused: {first_line(reply)}")
                self._refuse(cmd, reply)
                continue
            if cmd[0] == "INFO":
                info = parse_info(reply.decode("utf-8", "replace")
                                  if isinstance(reply, bytes) else str(reply))
            elif cmd == SLOWLOG_LEN:
                slowlog = int(reply)
            elif cmd == SLOWLOG_GET:
                slowlog_last = _slowlog_last(reply)
            elif cmd == CLUSTER_INFO:
                cluster = parse_info(reply.decode("utf-8", "replace")
                                     if isinstance(reply, bytes) else str(reply))
            elif cmd == CONFIG_GET_MAXCLIENTS and isinstance(reply, list) and len(reply) >= 2:
                maxclients = int(reply[1])
            elif cmd == CONFIG_GET_DATABASES:
                self._databases = _config_int(reply)
            elif cmd == CONFIG_GET_IO_THREADS:
                self._io_threads = _config_int(reply) or None
        assert info is not None
        # CLUSTER INFO's cluster_state, cluster_slots_fail, ... (the redis-mixin alerts on
        # them) join INFO's fields; every cluster_* field becomes redis_cluster_*.
        info.update({k: v for k, v in cluster.items() if k.startswith("cluster_")})
        self._cluster = info.get("cluster_enabled") == "1"
        if self._cluster:
            self._databases = 1  # a cluster node has db0 only (CONFIG still says 16)
        restarted = self._start_time is not None and self._start_time[0] != info.get("run_id")
        if restarted and CONFIG_GET_DATABASES not in cmds:
            self._databases = None  # maybe with another config: ask again
        version = info.get("redis_version", "")
        if version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 7:
            self._info_cmd = INFO_SECTIONS
        if "maxclients" in info:
            self._need_config = False
            maxclients = int(info["maxclients"])
        return Reading(info, slowlog, slowlog_last, maxclients)

    def _refuse(self, cmd: tuple[str, ...], err: redis.ResponseError) -> None:
        """An optional command failed: refused (ACL, renamed) -> log once, never send again;
        anything else (BUSY, LOADING) -> leave its metric out of this scrape only."""
        text = str(err).lower()
        if not (isinstance(err, redis.exceptions.NoPermissionError)
                or "unknown command" in text or "unknown subcommand" in text):
            log.debug('collector=redis target="%s" msg="%s failed; metric left out of this '
                      'scrape" err="%s"', self.endpoint.describe, " ".join(cmd), first_line(err))
            return
        if _key(cmd) in self.refusals:
            return  # logged already (CONFIG GET is sent for several settings at once)
        self.refusals[_key(cmd)] = (
            "acl" if isinstance(err, redis.exceptions.NoPermissionError)
            else "renamed" if "unknown command" in text else "unsupported")
        log.warning('collector=redis target="%s" msg="server refused %s; leaving it out from '
                    'now on (see docs/redis.md for the ACL)" err="%s"',
                    self.endpoint.describe, " ".join(cmd), first_line(err))

    # -- collect -------------------------------------------------------------------------

    def collect(self, deadline: float) -> list[Metric]:
        with self._lock:
            try:
                reading = self._query(deadline)
                databases, io_threads = self._databases or UNKNOWN_DATABASES, self._io_threads
            except redis.AuthenticationError as err:
                raise RedisScrapeError(f"authentication failed for {self.endpoint.describe}: "
                                       f"{first_line(err)} (check the username and password)"
                                       ) from None
            except redis.TimeoutError:
                raise RedisScrapeError(f"timed out talking to {self.endpoint.describe}") from None
            except redis.ConnectionError as err:
                raise RedisScrapeError(f"cannot reach {self.endpoint.describe}: "
                                       f"{_reason(err)}") from None
            except redis.ResponseError as err:  # e.g. LOADING
                raise RedisScrapeError(f"{self.endpoint.describe} answered an error: "
                                       f"{first_line(err)}") from None
            except redis.RedisError as err:  # protocol errors: not a Redis server?
                raise RedisScrapeError(f"unexpected reply from {self.endpoint.describe}: "
                                       f"{type(err).__name__}") from None
        return self._metrics(reading, databases, io_threads)

    def failure_metrics(self) -> list[Metric]:
        up = GaugeMetricFamily("redis_up", "1 if the last scrape of Redis succeeded.", 0.0)
        return [up, *service_families(SERVICE, 0.0)]

    def close(self) -> None:
        self.conn.disconnect()  # type: ignore[no-untyped-call]

    def _metrics(self, reading: Reading, databases: int = UNKNOWN_DATABASES,
                 io_threads: int | None = None) -> list[Metric]:
        info, maxclients = reading.info, reading.maxclients
        out: list[Metric] = [
            GaugeMetricFamily("redis_up", "1 if the last scrape of Redis succeeded.", 1.0)]
        labels = list(INFO_LABELS)
        inst = GaugeMetricFamily("redis_instance_info", "Redis server facts, value 1.",
                                 labels=labels)
        inst.add_metric([info.get(k, "") for k in labels], 1.0)
        out.append(inst)
        for field, (name, help_text) in GAUGES.items():
            value = _number(info.get(field))
            if value is not None:
                out.append(GaugeMetricFamily(name, help_text, value))
        for field, (name, help_text) in COUNTERS.items():
            value = _number(info.get(field))
            if value is not None:
                out.append(CounterMetricFamily(name, help_text, value))
        for field, (name, help_text) in BARE_COUNTERS.items():
            value = _number(info.get(field))
            if value is not None:
                family = bare_counter(name, help_text)
                family.add_sample(name, {}, value)
                out.append(family)
        for field, text in info.items():  # redis_exporter passes every cluster_* field on
            number = _number(_STATUS_WORDS.get(text, text))
            if field.startswith("cluster_") and field not in GAUGES and number is not None:
                out.append(GaugeMetricFamily(f"redis_{field}", f"INFO {field}.", number))
        for field, (name, good, help_text) in STATUS.items():
            if field in info:
                out.append(GaugeMetricFamily(name, help_text,
                                             1.0 if info[field] == good else 0.0))
        out.extend(self._replica(info))
        fork = _number(info.get("latest_fork_usec"))
        if fork is not None:
            out.append(GaugeMetricFamily("redis_latest_fork_seconds",
                                         "Duration of the latest fork.", fork / 1e6))
        start = self._start(info)
        if start is not None:
            out.append(GaugeMetricFamily("redis_start_time_seconds",
                                         "Unix time the server started.", start))
        if maxclients is not None:
            out.append(GaugeMetricFamily("redis_config_maxclients",
                                         "maxclients setting.", float(maxclients)))
        maxmemory = _number(info.get("maxmemory"))
        if maxmemory is not None:  # INFO's copy: current after a CONFIG SET too
            out.append(GaugeMetricFamily("redis_config_maxmemory", "maxmemory setting.",
                                         maxmemory))
        if io_threads is not None:
            out.append(GaugeMetricFamily("redis_config_io_threads", "io-threads setting.",
                                         float(io_threads)))
        if reading.slowlog_length is not None:
            out.append(GaugeMetricFamily("redis_slowlog_length",
                                         "Entries in the slow log.",
                                         float(reading.slowlog_length)))
        if reading.slowlog_last is not None:
            last_id, seconds = reading.slowlog_last
            out.append(GaugeMetricFamily("redis_slowlog_last_id",
                                         "Id of the newest slow log entry (0 if none).",
                                         last_id))
            out.append(GaugeMetricFamily("redis_last_slow_execution_duration_seconds",
                                         "Duration of the newest slow log entry.", seconds))
        out.extend(self._keyspace(info, databases))
        out.extend(self._commandstats(info))
        out.extend(self._errorstats(info))
        out.extend(self._replicas(info))
        version = info.get("redis_version", "")
        role = "replica" if info.get("role") == "slave" else "primary"
        out.extend(service_families(SERVICE, 1.0, version, role))
        return out

    def _start(self, info: dict[str, str]) -> float | None:
        """Start time, fixed per run_id so it does not jitter by a second between scrapes."""
        uptime = _number(info.get("uptime_in_seconds"))
        if uptime is None:
            return None
        run_id = info.get("run_id", "")
        if self._start_time is None or self._start_time[0] != run_id:
            self._start_time = (run_id, float(int(time.time() - uptime)))
        return self._start_time[1]

    @staticmethod
    def _keyspace(info: dict[str, str], databases: int) -> list[Metric]:
        """Keys per database; 0 for the ``databases`` configured ones INFO leaves out."""
        keys = GaugeMetricFamily("redis_db_keys", "Keys in the database.", labels=["db"])
        expiring = GaugeMetricFamily("redis_db_keys_expiring", "Keys with a TTL in the database.",
                                     labels=["db"])
        ttl = GaugeMetricFamily("redis_db_avg_ttl_seconds",
                                "Average TTL of the keys that have one.", labels=["db"])
        for field, value in info.items():
            if not _DB_LINE.match(field):
                continue
            kv = parse_kv(value)
            keys.add_metric([field], _number(kv.get("keys")) or 0.0)
            expiring.add_metric([field], _number(kv.get("expires")) or 0.0)
            ttl.add_metric([field], (_number(kv.get("avg_ttl")) or 0.0) / 1000.0)
        for index in range(databases):  # as redis_exporter: keys and expiring only
            db = f"db{index}"
            if db not in info:
                keys.add_metric([db], 0.0)
                expiring.add_metric([db], 0.0)
        return [keys, expiring, ttl]

    @staticmethod
    def _commandstats(info: dict[str, str]) -> list[Metric]:
        calls = CounterMetricFamily("redis_commands_total", "Calls per command.", labels=["cmd"])
        usec = CounterMetricFamily("redis_commands_duration_seconds_total",
                                   "Time spent per command.", labels=["cmd"])
        rejected = CounterMetricFamily("redis_commands_rejected_calls_total",
                                       "Calls refused before running (ACL, OOM, arity).",
                                       labels=["cmd"])
        failed = CounterMetricFamily("redis_commands_failed_calls_total",
                                     "Calls that failed while running.", labels=["cmd"])
        for field, value in info.items():
            if not field.startswith("cmdstat_"):
                continue
            cmd = field[len("cmdstat_"):]
            kv = parse_kv(value)
            calls.add_metric([cmd], _number(kv.get("calls")) or 0.0)
            usec.add_metric([cmd], (_number(kv.get("usec")) or 0.0) / 1e6)
            if "rejected_calls" in kv:  # Redis >= 6.2
                rejected.add_metric([cmd], _number(kv["rejected_calls"]) or 0.0)
                failed.add_metric([cmd], _number(kv.get("failed_calls")) or 0.0)
        return [calls, usec, rejected, failed]

    @staticmethod
    def _errorstats(info: dict[str, str]) -> list[Metric]:
        """``errorstat_ERR:count=4`` -> redis_errors_total{err="ERR"} 4 (Redis >= 6.2)."""
        errors = CounterMetricFamily("redis_errors_total", "Error replies per error prefix.",
                                     labels=["err"])
        for field, value in info.items():
            if field.startswith("errorstat_"):
                errors.add_metric([field[len("errorstat_"):]],
                                  _number(parse_kv(value).get("count")) or 0.0)
        return [errors]

    @staticmethod
    def _replica(info: dict[str, str]) -> list[Metric]:
        """A replica's link to its primary, labelled with the primary's address."""
        if "master_host" not in info:
            return []
        primary = [info["master_host"], info.get("master_port", "")]
        link = GaugeMetricFamily("redis_master_link_up", "1 if this replica's link to its "
                                 "primary is up (replicas only).", labels=MASTER_LABELS)
        link.add_metric(primary, 1.0 if info.get("master_link_status") == "up" else 0.0)
        out: list[Metric] = [link]
        for field, (name, help_text) in REPLICA_GAUGES.items():
            value = _number(info.get(field))
            if value is not None:
                family = GaugeMetricFamily(name, help_text, labels=MASTER_LABELS)
                family.add_metric(primary, value)
                out.append(family)
        replica = GaugeMetricFamily("redis_slave_info", "This replica's primary and whether "
                                    "it is read-only, value 1.",
                                    labels=[*MASTER_LABELS, "read_only"])
        replica.add_metric([*primary, info.get("slave_read_only", "")], 1.0)
        out.append(replica)
        return out

    @staticmethod
    def _replicas(info: dict[str, str]) -> list[Metric]:
        offset = GaugeMetricFamily("redis_connected_slave_offset_bytes",
                                   "Replication offset acknowledged by each replica.",
                                   labels=SLAVE_LABELS)
        lag = GaugeMetricFamily("redis_connected_slave_lag_seconds",
                                "Seconds since each replica last acknowledged.",
                                labels=SLAVE_LABELS)
        for field, value in info.items():
            if not _SLAVE_LINE.match(field):
                continue
            kv = parse_kv(value)
            labels = [kv.get("ip", ""), kv.get("port", ""), kv.get("state", "")]
            offset.add_metric(labels, _number(kv.get("offset")) or 0.0)
            lag.add_metric(labels, _number(kv.get("lag")) or 0.0)
        return [offset, lag]


# redis_exporter reads these INFO words as numbers.
_STATUS_WORDS = {"ok": "1", "true": "1", "err": "0", "fail": "0", "false": "0"}


def _key(cmd: tuple[str, ...]) -> str:
    """The command as refused: ``SLOWLOG GET``, ``CONFIG GET``."""
    return " ".join(cmd[:2])


def _slowlog_last(reply: Any) -> tuple[float, float]:
    """``SLOWLOG GET 1`` -> (id, seconds) of the newest entry; (0, 0) for an empty log."""
    if isinstance(reply, list) and reply and isinstance(reply[0], list) and len(reply[0]) >= 3:
        return float(reply[0][0]), float(reply[0][2]) / 1e6
    return 0.0, 0.0


def _config_int(reply: Any) -> int:
    """``CONFIG GET name`` reply ``[name, value]`` -> the value; UNKNOWN_DATABASES if none."""
    if isinstance(reply, list) and len(reply) >= 2:
        try:
            return max(UNKNOWN_DATABASES, int(reply[1]))
        except (TypeError, ValueError):
            pass
    return UNKNOWN_DATABASES


def first_line(err: Exception) -> str:
    """A short, password-free summary of a server error: its first line, capped."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:120]


def _reason(err: Exception) -> str:
    """Connection error without redis-py's noise: 'Connection refused', 'Name or ...'."""
    text = str(err)
    match = re.search(r"Error \d+ connecting to [^.]+\S*\. (.+?)\.?$", text)
    return (match.group(1) if match else text.splitlines()[0] if text else
            type(err).__name__)[:160]


def build(settings: RedisSettings, scrape: ScrapeSettings) -> list[Collector]:
    """The collector behind /metrics (when ``redis.url`` is set)."""
    if settings.url is None:
        return []
    return [RedisCollector.from_settings(settings)]


def probes(settings: RedisSettings, scrape: ScrapeSettings) -> dict[str, list[Collector]]:
    """One collector per named target for /probe?target=<name>."""
    return {t.name: [RedisCollector.from_settings(
        t, target=t.name, default_timeout=settings.socket_timeout_seconds)]
        for t in settings.targets}
