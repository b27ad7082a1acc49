"""The Redis collector's diagnostics: the optional commands the server refused.

The collector sends ``SLOWLOG LEN``, ``SLOWLOG GET 1`` and (once per connection)
``CONFIG GET``; a refusal is remembered with its cause (``RedisCollector.refusals``): an
ACL without the command (``NOPERM``), or a command renamed away (``rename-command`` in
redis.conf, as managed Redis services do).  No command is sent here: the collector's own
run already asked.

Sample findings (``stackmon check``)::

    redis  slowlog     missing  the ACL user stackmon may not ...  ACL SETUSER stackmon +slowlog|len
    redis  config_get  missing  CONFIG is renamed or disabled ...      # redis.conf: ...
"""

from __future__ import annotations

from redis.connection import parse_url

from exporter.checks import Check, Finding, Status
from exporter.collectors.redis.collector import RedisCollector

ACL_PERSIST = "  # then ACL SAVE (with an aclfile) or CONFIG REWRITE, so it outlives a restart"
SLOWLOG = Check(
    "redis", "slowlog", "the server lets stackmon run SLOWLOG LEN and SLOWLOG GET",
    families=("redis_slowlog_length", "redis_slowlog_last_id",
              "redis_last_slow_execution_duration_seconds"),
    panels=("Cache / Slow log",),
    fixes={"acl": "ACL SETUSER {user} {rules}" + ACL_PERSIST,
           "renamed": "# redis.conf: remove the line rename-command SLOWLOG ... and restart "
                      "Redis (a managed Redis may not allow it: the slow log then stays "
                      "unmonitored)",
           "unsupported": "# upgrade Redis: this server does not know {commands}"})
CONFIG_GET = Check(
    "redis", "config_get", "the server lets stackmon run CONFIG GET",
    families=("redis_config_io_threads", "redis_db_keys", "redis_db_keys_expiring",
              "redis_config_maxclients"),
    panels=("Cache / Keys per database",),
    fixes={"acl": "ACL SETUSER {user} +config|get" + ACL_PERSIST,
           "renamed": "# redis.conf: remove the line rename-command CONFIG ... and restart "
                      "Redis (a managed Redis may not allow it: then redis_db_keys covers "
                      "only the databases that hold keys, and redis_config_io_threads and, "
                      "before Redis 7, redis_config_maxclients stay empty)",
           "unsupported": "# upgrade Redis: this server does not know {commands}"})

CHECKS = (SLOWLOG, CONFIG_GET)
COMMANDS = {SLOWLOG: ("SLOWLOG LEN", "SLOWLOG GET"), CONFIG_GET: ("CONFIG GET",)}


def acl_user(collector: RedisCollector) -> str:
    """The ACL user stackmon logs in as: redis.username, the URL's, else ``default``."""
    endpoint = collector.endpoint
    if endpoint.username:
        return endpoint.username
    return str(parse_url(endpoint.url).get("username") or "default")  # type: ignore[no-untyped-call]


def diagnose(collector: RedisCollector, deadline: float) -> list[Finding]:
    refusals = dict(collector.refusals)
    out = []
    for check in CHECKS:
        refused = {cmd: refusals[cmd] for cmd in COMMANDS[check] if cmd in refusals}
        if not refused:
            out.append(check.finding(Status.OK, f"{' and '.join(COMMANDS[check])} answered"))
            continue
        causes = set(refused.values())
        cause = "acl" if "acl" in causes else "renamed" if "renamed" in causes \
            else "unsupported"
        commands = " and ".join(refused)
        user = acl_user(collector)
        detail = {
            "acl": f"the ACL user {user} may not run {commands} (NOPERM)",
            "renamed": f"the server does not know {commands}: renamed or disabled "
                       "(rename-command)",
            "unsupported": f"the server does not support {commands}",
        }[cause]
        rules = " ".join("+" + cmd.lower().replace(" ", "|") for cmd, why in refused.items()
                         if why == "acl")
        out.append(check.finding(Status.MISSING, detail, cause=cause, user=user, rules=rules,
                                 commands=commands))
    return out
