"""redis: INFO and SLOWLOG LEN of one server, named servers on /probe (redis_exporter names)."""

from exporter.collectors.base import CollectorSpec, lazy
from exporter.collectors.redis.settings import RedisSettings

SPEC = CollectorSpec(
    "redis", "Redis INFO and SLOWLOG LEN (redis_exporter names; redis.url, "
    "redis.targets for /probe)",
    RedisSettings, lazy("exporter.collectors.redis.collector", "build"), default=None,
    configured=lambda s: s.url is not None or bool(s.targets),
    probes=lazy("exporter.collectors.redis.collector", "probes"),
    checks=lazy("exporter.collectors.redis.checks", "diagnose"))
