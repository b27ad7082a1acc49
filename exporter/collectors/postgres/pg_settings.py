"""pg_settings: every numeric and boolean setting, as postgres_exporter exports them.

Time settings are converted to seconds (``_seconds``), memory settings to bytes
(``_bytes``); -1 ("disabled") stays -1; booleans are 1/0.

Sample output::

    pg_settings_max_connections{server="127.0.0.1:5432"} 100.0
    pg_settings_shared_buffers_bytes{server="127.0.0.1:5432"} 1.34217728e+08
    pg_settings_log_min_duration_statement_seconds{server="127.0.0.1:5432"} -1.0
    pg_settings_fsync{server="127.0.0.1:5432"} 1.0
"""

from __future__ import annotations

from exporter.collectors.postgres.view import PreparedQuery, Results, ServerInfo
from exporter.metrics import GaugeMetricFamily, Metric

SETTINGS_SQL = """
SELECT name, setting, coalesce(unit, ''), vartype FROM pg_settings
WHERE vartype IN ('bool', 'integer', 'real')
"""

# pg_settings unit -> (factor to seconds or bytes, metric name suffix).
UNIT_FACTORS: dict[str, tuple[float, str]] = {
    "": (1.0, ""),
    "ms": (1e-3, "_seconds"), "s": (1.0, "_seconds"), "min": (60.0, "_seconds"),
    "h": (3600.0, "_seconds"), "d": (86400.0, "_seconds"),
    "B": (1.0, "_bytes"), "kB": (1024.0, "_bytes"), "MB": (1024.0**2, "_bytes"),
    "GB": (1024.0**3, "_bytes"), "TB": (1024.0**4, "_bytes"),
    "4kB": (4096.0, "_bytes"), "8kB": (8192.0, "_bytes"), "16kB": (16384.0, "_bytes"),
    "32kB": (32768.0, "_bytes"), "64kB": (65536.0, "_bytes"),
    "16MB": (16 * 1024.0**2, "_bytes"), "32MB": (32 * 1024.0**2, "_bytes"),
    "64MB": (64 * 1024.0**2, "_bytes"),
}


def queries(server: ServerInfo) -> list[PreparedQuery]:
    return [PreparedQuery("settings", SETTINGS_SQL)]


def setting_metric(name: str, setting: str, unit: str, vartype: str
                   ) -> tuple[str, float] | None:
    """pg_settings row -> (metric name, value in base units); None when not exportable.

    >>> setting_metric("work_mem", "4096", "kB", "integer")
    ('pg_settings_work_mem_bytes', 4194304.0)

    Extensions' settings have a dot (``pg_stat_statements.max``): it becomes ``_``, as
    in postgres_exporter (``pg_settings_pg_stat_statements_max``).
    """
    name = name.replace(".", "_")
    if vartype == "bool":
        return f"pg_settings_{name}", 1.0 if setting == "on" else 0.0
    conversion = UNIT_FACTORS.get(unit)
    if vartype not in ("integer", "real") or conversion is None:
        return None  # a unit a future version adds must not be mislabelled
    try:
        value = float(setting)
    except ValueError:
        return None
    factor, suffix = conversion
    if value < 0:  # -1 = disabled: kept as is, like postgres_exporter
        factor = 1.0
    return f"pg_settings_{name}{suffix}", value * factor


def metrics(r: Results, server: ServerInfo) -> list[Metric]:
    out: list[Metric] = []
    for name, setting, unit, vartype in r.get("settings", []):
        if name == "statement_timeout" and server.statement_timeout:
            setting = server.statement_timeout  # the server's, not our session's
        converted = setting_metric(str(name), str(setting), str(unit), str(vartype))
        if converted is not None:
            family = GaugeMetricFamily(converted[0], f"Server setting {name}.",
                                       labels=["server"])
            family.add_metric([server.server], converted[1])
            out.append(family)
    return out
