"""The Overview dashboard (stackmon-overview): hosts at a glance, the status of every
service stackmon checks, host detail, and the Django application's API row."""

from __future__ import annotations

from grafana.dashboards_src.shared import PG_CONNECTIONS, REDIS_MEMORY
from grafana.lib.dashboard import Dash, Var
from grafana.lib.panels import (
    GREEN,
    ORANGE,
    RED,
    UP,
    UP_TEXT,
    above,
    bar,
    below,
    below_warning,
    detail,
    gg,
    st,
    tbl,
    ts,
    up,
)
from grafana.lib.promql import Q, quantile, rate, rates, ratio

IDLE = '{mode="idle"}'
NOT_IDLE = '{mode!="idle"}'
NOT_LO = '{device!="lo"}'

CPUS = 'count by (job, instance) (node_cpu_seconds_total{mode="idle"})'
MEM_USED = "1 - node_memory_MemAvailable_bytes{} / node_memory_MemTotal_bytes{}"
ROOT_USED = ('1 - node_filesystem_avail_bytes{mountpoint="/", fstype!=""} '
             '/ node_filesystem_size_bytes{mountpoint="/", fstype!=""}')
POOL_USE = ("sum by (job, instance) (celery_worker_tasks_active{}) / on (job, instance) "
            "clamp_min(sum by (job, instance) (celery_worker_pool_max_concurrency{}), 1)")
APP = "job, instance, view"

OVERVIEW = Dash(
    "overview", "stackmon / Overview",
    "Hosts and the status of every service stackmon checks.", "stackmon_build_info", [
        ("At a glance", [
            bar("CPU", "Busy share of CPU time, all CPUs (1 - idle). HostHighCpuUsage fires "
                "(warning) above 90 % for 15 m.", "percentunit",
                Q(f"1 - avg by (job, instance) ({rate('node_cpu_seconds_total', selector=IDLE)})",
                  "{{instance}}"), steps=above(0.9)),
            bar("Memory used", "Memory in use: 1 - MemAvailable / MemTotal. HostMemoryAvailableLow "
                "fires (warning) when less than 10 % is available for 15 m.", "percentunit",
                Q(MEM_USED, "{{instance}}"), steps=above(0.9)),
            bar("Swap", "Swap in use: 1 - SwapFree / SwapTotal (0 % on a host without swap). "
                "HostSwapFillingUp fires (warning) above 80 % for 10 m.", "percentunit",
                Q("1 - node_memory_SwapFree_bytes{} / clamp_min(node_memory_SwapTotal_bytes{}, 1)",
                  "{{instance}}"), steps=above(0.8)),
            bar("Root filesystem", "Share of / not available to users (1 - avail / size). "
                "HostFilesystemFillingUp fires (warning) past 85 % when it will fill within a "
                "day; HostFilesystemAlmostFull (critical) past 95 %.", "percentunit",
                Q(ROOT_USED, "{{instance}}"), steps=above(0.85, 0.95)),
            gg("PostgreSQL connections", "Connections / max_connections. "
               "PostgresTooManyConnections fires (warning) above 80 %. Click for the "
               "Database dashboard.", "percentunit", Q(PG_CONNECTIONS, "{{instance}}"),
               steps=above(0.8), links=[detail("database", "Database dashboard")]),
            gg("Redis memory", "used_memory of maxmemory, or of the host's memory when "
               "maxmemory is 0 (no limit). RedisMemoryNearMax and RedisOutOfSystemMemory fire "
               "(warning) above 90 %. Click for the Cache dashboard.", "percentunit",
               Q(REDIS_MEMORY, "{{instance}}"), steps=above(0.9),
               links=[detail("cache", "Cache dashboard")]),
            gg("Celery pool", "Tasks executing / pool processes, over all workers "
               "(celery_worker_tasks_active / celery_worker_pool_max_concurrency); no alert. "
               "Click for the Celery dashboard.", "percentunit",
               Q(POOL_USE, "{{instance}}"), links=[detail("celery", "Celery dashboard")]),
            st("Cores", "CPUs the kernel reports (count of node_cpu_seconds_total idle "
               "series).", "short", Q(CPUS, "{{instance}}"), h=5),
            st("RAM total", "node_memory_MemTotal_bytes.", "bytes",
               Q("node_memory_MemTotal_bytes{}", "{{instance}}"), h=5),
            st("Uptime", "Time since the host booted (time() - node_boot_time_seconds).", "s",
               Q("time() - node_boot_time_seconds{}", "{{instance}}"), h=5),
        ]),
        ("Services", [
            up("PostgreSQL", "stackmon_service_up{service=\"postgres\"}: 1 if the postgres "
               "collector reached the server. PostgresDown fires (critical) when pg_up is 0 "
               "for 1 m. Click for the Database dashboard.",
               Q('stackmon_service_up{service="postgres"}', "{{instance}}"),
               links=[detail("database", "Database dashboard")]),
            up("Redis", "stackmon_service_up{service=\"redis\"}: 1 if the redis collector "
               "reached the server. RedisDown fires (critical) when redis_up is 0 for 1 m. "
               "Click for the Cache dashboard.",
               Q('stackmon_service_up{service="redis"}', "{{instance}}"),
               links=[detail("cache", "Cache dashboard")]),
            up("Celery", "stackmon_service_up{service=\"celery\"}: 1 if the broker answered. "
               "CeleryBrokerDown fires (critical) when celery_broker_up is 0 for 2 m. Click "
               "for the Celery dashboard.",
               Q('stackmon_service_up{service="celery"}', "{{instance}}"),
               links=[detail("celery", "Celery dashboard")]),
            st("Services up", "stackmon_service_up of every configured check (http, tcp, "
               "nginx): 1 if the service answered in the last scrape. ServiceDown fires "
               "(critical) when one is 0 for 2 m.", "none",
               Q('stackmon_service_up{service!~"postgres|redis|celery"}',
                 "{{instance}} {{service}}"), steps=UP, mapping=UP_TEXT, w=12),
            st("Service versions", "stackmon_service_info: version and role each service "
               "reports (value 1).", "none",
               Q("stackmon_service_info{}", "{{instance}} {{service}} {{version}} ({{role}})"),
               text=True, w=12),
            st("TLS certificate expires in", "Time left until the notAfter of the "
               "certificate each https check was served "
               "(stackmon_service_tls_cert_expiry_timestamp_seconds - time()). "
               "ServiceTLSCertExpiring fires (warning) below 14 d for 10 m, "
               "ServiceTLSCertExpiringCritical fires (critical) below 3 d and "
               "ServiceTLSCertExpired fires (critical) once it has expired.", "s",
               Q("stackmon_service_tls_cert_expiry_timestamp_seconds{} - time()",
                 "{{instance}} {{service}}"),
               steps=below(3 * 86400, 14 * 86400), w=12),
            ts("Check duration", "Time each service check took, connect and TLS included "
               "(stackmon_service_check_duration_seconds). ServiceCheckSlow fires (warning) "
               "above 1 s.", "s",
               Q("stackmon_service_check_duration_seconds{}", "{{instance}} {{service}}"),
               steps=above(1)),
            ts("HTTP status code", "Status code of each http check's response; 0 when no "
               "response came (refused, timeout, TLS error).", "none",
               Q("stackmon_service_http_status_code{}", "{{instance}} {{service}}"),
               steps=[(None, RED), (200, GREEN), (400, ORANGE), (500, RED)]),
            up("nginx up", "nginx_up per nginx check: 1 if its stub_status page was read "
               "and parsed. NginxDown fires (critical) when 0 for 2 m.",
               Q("nginx_up{}", "{{instance}} {{service}}"), w=12),
            ts("nginx connections", "Client connections of each nginx check by state "
               "(nginx_connections_active / reading / writing / waiting).", "short",
               *[Q(f"nginx_connections_{state}{{}}", f"{{{{instance}}}} {{{{service}}}} {state}")
                 for state in ("active", "reading", "writing", "waiting")]),
            ts("nginx requests", "Client requests per second of each nginx check "
               "(rate of nginx_http_requests_total).", "reqps",
               Q(rate("nginx_http_requests_total", "job, instance, service"),
                 "{{instance}} {{service}}")),
            ts("Collector success", "stackmon_scrape_collector_success: 1 if the collector "
               "finished in time without error. StackmonCollectorFailing fires (warning) when "
               "0 for 5 m.", "none",
               Q("stackmon_scrape_collector_success{}", "{{instance}} {{collector}}"),
               steps=[(None, ORANGE), (1, GREEN)], max=1),
            ts("Collector duration", "Time each collector took in the scrape "
               "(stackmon_scrape_collector_duration_seconds).", "s",
               Q("stackmon_scrape_collector_duration_seconds{}", "{{instance}} {{collector}}")),
        ]),
        ("Host", [
            ts("CPU busy", "1 - idle share of CPU time, averaged over all CPUs. "
               "HostHighCpuUsage fires (warning) above 90 % for 15 m.", "percentunit",
               Q("1 - avg by (job, instance) "
                 f"({rate('node_cpu_seconds_total', selector=IDLE)})",
                 "{{instance}}"), steps=above(0.9), max=1, w=8),
            ts("CPU by mode", "Share of all CPUs' time per mode (idle left out): CPU seconds "
               "per second / number of CPUs.", "percentunit",
               Q(f"{rate('node_cpu_seconds_total', 'job, instance, mode', NOT_IDLE)}"
                 f" / on (job, instance) group_left {CPUS}", "{{instance}} {{mode}}"),
               stack=True, max=1, w=8),
            ts("Load average", "1, 5 and 15 minute load averages and the number of CPUs "
               "(load above it means runnable tasks wait; node-mixin warns above 2 per CPU).",
               "short",
               Q("node_load1{}", "{{instance}} 1m"), Q("node_load5{}", "{{instance}} 5m"),
               Q("node_load15{}", "{{instance}} 15m"), Q(CPUS, "{{instance}} cores"), w=8),
            ts("Load per CPU", "1-minute load average / number of CPUs. HostLoadHigh fires "
               "(warning) above 2 for 15 m.", "short",
               Q(f"node_load1{{}} / on (job, instance) {CPUS}", "{{instance}}"),
               steps=above(2), w=8),
            ts("CPU frequency", "Current frequency per CPU, averaged and the highest "
               "(node_cpu_scaling_frequency_hertz; only where the kernel exposes cpufreq).",
               "hertz",
               Q("avg by (job, instance) (node_cpu_scaling_frequency_hertz{})",
                 "{{instance}} average"),
               Q("max by (job, instance) (node_cpu_scaling_frequency_hertz{})",
                 "{{instance}} max"), w=8),
            ts("Memory", "Memory used (total - available), available and total.", "bytes",
               Q("node_memory_MemTotal_bytes{} - node_memory_MemAvailable_bytes{}",
                 "{{instance}} used"),
               Q("node_memory_MemAvailable_bytes{}", "{{instance}} available"),
               Q("node_memory_MemTotal_bytes{}", "{{instance}} total"), w=8),
            ts("Memory available", "MemAvailable / MemTotal. HostMemoryAvailableLow fires "
               "(warning) below 10 % for 15 m.", "percentunit",
               Q("node_memory_MemAvailable_bytes{} / node_memory_MemTotal_bytes{}",
                 "{{instance}}"), steps=below_warning(0.1), max=1, w=8),
            ts("Swap used", "Swap in use (SwapTotal - SwapFree) and its size.", "bytes",
               Q("node_memory_SwapTotal_bytes{} - node_memory_SwapFree_bytes{}",
                 "{{instance}} used"),
               Q("node_memory_SwapTotal_bytes{}", "{{instance}} total"), w=8),
            ts("Filesystem used", "Share of each filesystem not available to users "
               "(1 - avail / size). HostFilesystemFillingUp fires (warning) past 85 % when "
               "it will fill within a day; HostFilesystemAlmostFull (critical) past 95 %.",
               "percentunit",
               Q('1 - node_filesystem_avail_bytes{fstype!=""} '
                 '/ node_filesystem_size_bytes{fstype!=""}', "{{instance}} {{mountpoint}}"),
               steps=above(0.85, 0.95), max=1, w=8),
            ts("Inodes used", "Share of each filesystem's inodes in use (1 - files_free / "
               "files). HostInodesFillingUp fires (warning) past 80 % when they will run out "
               "within a day; HostInodesAlmostExhausted fires (critical) past 95 %.",
               "percentunit",
               Q('1 - node_filesystem_files_free{fstype!=""} '
                 '/ node_filesystem_files{fstype!=""}', "{{instance}} {{mountpoint}}"),
               steps=above(0.8, 0.95), max=1, w=8),
            ts("Clock offset", "Distance of the system clock from its time source, either "
               "way (|node_timex_offset_seconds|). HostClockSkew fires (warning) beyond 50 ms "
               "while not shrinking.", "s",
               Q("abs(node_timex_offset_seconds{})", "{{instance}}"), steps=above(0.05), w=8),
            ts("Clock synchronised", "1 while the kernel reports the clock synchronised "
               "(node_timex_sync_status). HostClockNotSynchronised fires (warning) when 0 for "
               "5 m and the maximum error reaches 16 s.", "none",
               Q("node_timex_sync_status{}", "{{instance}}"),
               steps=[(None, ORANGE), (1, GREEN)], max=1, w=8),
            tbl("Disk space", "Size, used (size - free), available to users and used share "
                "per mounted filesystem; the share is coloured at the HostFilesystemFillingUp "
                "(85 %) and HostFilesystemAlmostFull (95 %) thresholds.", "percentunit",
                [("Size", "bytes"), ("Used", "bytes"), ("Available", "bytes"),
                 ("Used %", "percentunit")],
                Q('node_filesystem_size_bytes{fstype!=""}'),
                Q('node_filesystem_size_bytes{fstype!=""} '
                  '- node_filesystem_free_bytes{fstype!=""}'),
                Q('node_filesystem_avail_bytes{fstype!=""}'),
                Q('1 - node_filesystem_avail_bytes{fstype!=""} '
                  '/ node_filesystem_size_bytes{fstype!=""}'),
                steps=above(0.85, 0.95), h=7),
            ts("Network traffic", "Bytes per second received (+) and transmitted (-) per "
               "interface (loopback left out).", "Bps",
               Q(rate("node_network_receive_bytes_total", "job, instance, device", NOT_LO),
                 "{{instance}} {{device}} rx"),
               Q(f'-{rate("node_network_transmit_bytes_total", "job, instance, device", NOT_LO)}',
                 "{{instance}} {{device}} tx"), w=8),
            ts("Network packets", "Packets per second received (+) and transmitted (-) per "
               "interface (loopback left out).", "pps",
               Q(rate("node_network_receive_packets_total", "job, instance, device", NOT_LO),
                 "{{instance}} {{device}} rx"),
               Q(f'-{rate("node_network_transmit_packets_total", "job, instance, device", NOT_LO)}',
                 "{{instance}} {{device}} tx"), w=8),
            ts("Network errors and drops", "Receive/transmit errors and drops per second "
               "(loopback left out). HostNetworkReceiveErrors / HostNetworkTransmitErrors fire "
               "(warning) when errors exceed 1 % of packets for 1 h.", "pps",
               *rates("job, instance, device", "{{instance}} {{device}}", {
                   "node_network_receive_errs_total": "rx errors",
                   "node_network_transmit_errs_total": "tx errors",
                   "node_network_receive_drop_total": "rx drops",
                   "node_network_transmit_drop_total": "tx drops",
               }, NOT_LO), w=8),
            ts("Disk throughput", "Bytes per second read (+) and written (-) per device.",
               "Bps",
               Q(rate("node_disk_read_bytes_total", "job, instance, device"),
                 "{{instance}} {{device}} read"),
               Q(f'-{rate("node_disk_written_bytes_total", "job, instance, device")}',
                 "{{instance}} {{device}} write"), w=8),
            ts("Disk IOPS", "Completed reads (+) and writes (-) per second.", "iops",
               Q(rate("node_disk_reads_completed_total", "job, instance, device"),
                 "{{instance}} {{device}} reads"),
               Q(f'-{rate("node_disk_writes_completed_total", "job, instance, device")}',
                 "{{instance}} {{device}} writes"), w=8),
            ts("Disk busy", "Share of time each device was busy with I/O (100 % on NVMe or "
               "virtio is not saturation: HostDiskIOSaturated watches the queue depth).",
               "percentunit",
               Q(rate("node_disk_io_time_seconds_total", "job, instance, device"),
                 "{{instance}} {{device}}"), steps=above(0.9), max=1, w=8),
        ]),
        ("API (Django application)", [
            ts("Request rate", "Requests per second per Django view, from the application's "
               "own /metrics (django-prometheus: "
               "django_http_requests_latency_seconds_by_view_method).", "reqps",
               Q(rate("django_http_requests_latency_seconds_by_view_method_count", APP),
                 "{{instance}} {{view}}"), w=8),
            ts("5xx ratio", "Responses with a 5xx status / all responses per view "
               "(django_http_responses_total_by_status_view_method); 0 when idle or "
               "without errors.",
               "percentunit",
               Q(ratio(rate("django_http_responses_total_by_status_view_method_total", APP,
                            '{status=~"5.."}'),
                       rate("django_http_responses_total_by_status_view_method_total", APP)),
                 "{{instance}} {{view}}"), max=1, w=8),
            ts("p95 latency", "95th percentile of the response time per view "
               "(django_http_requests_latency_seconds_by_view_method).", "s",
               Q(quantile(0.95, "django_http_requests_latency_seconds_by_view_method_bucket",
                          APP), "{{instance}} {{view}}"), w=8),
        ]),
    ], extra_vars=[
        Var("app_job", "job", "django_http_requests_latency_seconds_by_view_method_count"),
        Var("app_instance", "instance",
            'django_http_requests_latency_seconds_by_view_method_count{job=~"$app_job"}'),
    ])
