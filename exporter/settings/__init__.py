"""The settings engine: one schema drives the YAML file, ``STACKMON_*`` env vars and
command-line flags (see ``sources``), with "did you mean" on every unknown name.

Modules here never import a collector: each collector's section is a dataclass in
``exporter/collectors/<name>/settings.py``, handed to :func:`load` by the CLI.
"""

from exporter.errors import ConfigError, SettingError, one_line
from exporter.settings.core import (
    CORE_SECTIONS,
    DEFAULT_PORT,
    LOG_LEVELS,
    LogSettings,
    ScrapeSettings,
    WebSettings,
    check_target_name,
    parse_listen_address,
)
from exporter.settings.schema import ENV_EXTRA, ENV_PREFIX, SettingPath, setting, setting_paths
from exporter.settings.sources import Config, env_settings, load, read_yaml

__all__ = [
    "CORE_SECTIONS", "DEFAULT_PORT", "ENV_EXTRA", "ENV_PREFIX", "LOG_LEVELS", "Config",
    "ConfigError", "LogSettings", "ScrapeSettings", "SettingError", "SettingPath",
    "WebSettings", "check_target_name", "env_settings", "load", "one_line",
    "parse_listen_address", "read_yaml", "setting", "setting_paths",
]
