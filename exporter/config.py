"""Re-exports only, for code written before the split: the settings engine lives in
``exporter.settings``, secrets in ``exporter.secrets`` and each collector's section in
``exporter.collectors.<name>.settings``. New code imports from there."""

from exporter.collectors.celery.settings import CelerySettings
from exporter.collectors.host.settings import (
    DISK_DEVICES_EXCLUDE,
    FS_MOUNT_POINTS_EXCLUDE,
    FS_TYPES_EXCLUDE,
    HostSettings,
)
from exporter.collectors.postgres.settings import PostgresSettings, PostgresTarget
from exporter.collectors.redis.settings import RedisSettings, RedisTarget
from exporter.collectors.services.settings import ServiceCheck, ServicesSettings, parse_host_port
from exporter.errors import ConfigError, SettingError, one_line
from exporter.secrets import REDACTED, has_password, read_secret_file
from exporter.settings import (
    DEFAULT_PORT,
    ENV_EXTRA,
    ENV_PREFIX,
    Config,
    LogSettings,
    ScrapeSettings,
    SettingPath,
    WebSettings,
    parse_listen_address,
    read_yaml,
    setting,
)

__all__ = [
    "DEFAULT_PORT", "DISK_DEVICES_EXCLUDE", "ENV_EXTRA", "ENV_PREFIX", "FS_MOUNT_POINTS_EXCLUDE",
    "FS_TYPES_EXCLUDE", "REDACTED", "CelerySettings", "Config", "ConfigError", "HostSettings",
    "LogSettings", "PostgresSettings", "PostgresTarget", "RedisSettings", "RedisTarget",
    "ScrapeSettings", "ServiceCheck", "ServicesSettings", "SettingError", "SettingPath",
    "WebSettings", "has_password", "one_line", "parse_host_port", "parse_listen_address",
    "read_secret_file", "read_yaml", "setting",
]
