"""Sources and precedence: defaults < YAML file (``--config.file``) < ``STACKMON_*``
environment variables < command-line flags, merged into one raw tree and validated once.

The YAML key ``web.listen_address`` is the env var ``STACKMON_WEB_LISTEN_ADDRESS`` and
the flag ``--web.listen-address``. Every problem is a one-line ConfigError naming the
source, the key, the value (never a secret's) and what was expected::

    stackmon.yml: web.listen_adress: unknown key (did you mean "listen_address"?)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.errors import ConfigError
from exporter.secrets import show
from exporter.settings.convert import Origins, build, coerce
from exporter.settings.core import CORE_SECTIONS, LogSettings, ScrapeSettings, WebSettings
from exporter.settings.schema import (
    ENV_EXTRA,
    ENV_PREFIX,
    SettingPath,
    setting_paths,
    suggest,
)

# What Kubernetes injects into every pod for a Service named "stackmon" in its namespace
# (the docker-links convention): STACKMON_SERVICE_HOST, STACKMON_SERVICE_PORT[_<NAME>],
# STACKMON_PORT, STACKMON_PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR]. Not settings, not typos.
KUBERNETES_SERVICE_ENV = re.compile(
    r"STACKMON_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?"
    r"|PORT|PORT_[0-9]+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)")


def is_kubernetes_service_variable(name: str) -> bool:
    """Whether ``name`` is one of the variables Kubernetes sets for a Service "stackmon".

    >>> [is_kubernetes_service_variable(n) for n in ("STACKMON_PORT_9860_TCP_ADDR",
    ...     "STACKMON_SERVICE_PORT_METRICS", "STACKMON_PORTS", "STACKMON_WEB_PORT")]
    [True, True, False, False]
    """
    return KUBERNETES_SERVICE_ENV.fullmatch(name) is not None


@dataclass(frozen=True)
class Config:
    """The whole validated configuration: the core sections, each collector's section
    (``config.postgres`` is ``config.sections["postgres"]``) and the collector switches."""

    web: WebSettings = field(default_factory=WebSettings)
    log: LogSettings = field(default_factory=LogSettings)
    scrape: ScrapeSettings = field(default_factory=ScrapeSettings)
    sections: Mapping[str, Any] = field(default_factory=dict)
    collectors: Mapping[str, bool | None] = field(default_factory=dict)
    source: str = "defaults"
    # Where each value set by the file, environment or flags came from (see origin()).
    origins: Mapping[tuple[str, ...], str] = field(default_factory=dict)

    def origin(self, *path: str) -> str:
        """Where a setting's value came from, for errors found after loading (a port in
        use): ``flag --web.listen-address``, ``environment STACKMON_WEB_LISTEN_ADDRESS``,
        the config file's path, or ``defaults``."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.origins:
                return self.origins[path[:n]]
        return "defaults"

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get("sections", {})
        if name in sections:
            return sections[name]
        raise AttributeError(name)

    def secrets(self) -> list[str]:
        """Every secret value in the configuration, for log redaction."""
        found: list[str] = []
        for section in (self.web, self.log, self.scrape, *self.sections.values()):
            _collect_secrets(section, found)
        return [s for s in found if s]


def _collect_secrets(obj: Any, found: list[str]) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.metadata.get("secret") and isinstance(value, str):
            found.append(value)
        elif dataclasses.is_dataclass(value):
            _collect_secrets(value, found)
        elif isinstance(value, tuple):
            for item in value:
                if dataclasses.is_dataclass(item):
                    _collect_secrets(item, found)
    hook = getattr(obj, "extra_secrets", None)
    if callable(hook):
        found.extend(hook())


def read_yaml(path: str) -> dict[str, Any]:
    """Read the config file; any problem becomes a ConfigError naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a YAML file") from None
    except PermissionError:
        raise ConfigError(f"{path}: config file not readable (permission denied)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text, expected a YAML file") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from None
    import yaml  # here, not at start: only a config file needs it (1.7 MB)

    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = err.problem or err.context or "malformed YAML"
        raise ConfigError(f"{path}:{line} malformed YAML: {problem}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {type(err).__name__}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, "
                          f"got {type(data).__name__}")
    return data


_COLLECTOR_FIELD: dataclasses.Field[Any] = dataclasses.fields(
    dataclasses.make_dataclass("_Switch", [("on", bool, field(default=False))]))[0]


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def env_settings(sections: Sequence[type], collectors: Iterable[str]) -> dict[str, SettingPath]:
    """Every ``STACKMON_*`` variable that sets something, by name (ENV_EXTRA aside)."""
    by_env = {sp.env: sp for sp in setting_paths(sections)}
    for name in collectors:
        by_env[f"{ENV_PREFIX}COLLECTORS_{name.upper()}"] = SettingPath(
            ("collectors", name), _COLLECTOR_FIELD, bool)
    return by_env


def load(
    *,
    config_file: str | None,
    env: Mapping[str, str],
    flags: Mapping[tuple[str, ...], Any],
    collector_defaults: Mapping[str, bool | None],
    sections: Sequence[type] = (),
) -> Config:
    """Merge defaults, file, env and flags, then validate everything once.

    ``sections`` are the collectors' settings classes (the core ones are always known);
    ``flags`` maps a setting path such as ``("web", "listen_address")`` to the text
    given on the command line; collector switches use ``("collectors", name)``.
    """
    all_sections = (*CORE_SECTIONS, *sections)
    file_label = config_file or "defaults"
    origins = Origins(file_label)
    raw: dict[str, Any] = read_yaml(config_file) if config_file else {}
    set_by_file = {path: file_label for path in _leaf_paths(raw)}

    by_env = env_settings(all_sections, collector_defaults)
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in ENV_EXTRA:
            continue
        sp = by_env.get(name)
        if sp is None and is_kubernetes_service_variable(name):
            continue
        if sp is None:
            raise ConfigError(f"environment: {name}: unknown variable"
                              f"{suggest(name, list(by_env))}")
        _set(raw, sp.path, env[name])
        origins.by_path[sp.path] = f"environment {name}"
    paths = setting_paths(all_sections)
    for path, value in flags.items():
        _set(raw, path, value)
        sp = next((p for p in paths if p.path == path), None)
        label = sp.flag if sp else f"--{'collector' if path[0] == 'collectors' else path[0]}." \
            + "-".join(path[1:])
        origins.by_path[path] = f"flag {label}"

    collectors_raw = raw.pop("collectors", {}) or {}
    if not isinstance(collectors_raw, Mapping):
        raise ConfigError(f"{origins.of(('collectors',))}: collectors: expected a mapping of "
                          "collector name to true/false")
    enabled: dict[str, bool | None] = dict(collector_defaults)
    for name, value in collectors_raw.items():
        path = ("collectors", str(name))
        if name not in collector_defaults:
            raise ConfigError(f"{origins.of(path)}: collectors.{name}: unknown collector"
                              f"{suggest(str(name), list(collector_defaults))}")
        enabled[name] = coerce(value, bool, path, {}, origins,
                               from_text=origins.of(path) != file_label)

    built: dict[str, Any] = {}
    known = {s.section: s for s in all_sections}  # type: ignore[attr-defined]
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{origins.of((str(key),))}: {key}: unknown section"
                              f"{suggest(str(key), [*known, 'collectors'])}")
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{origins.of((key,))}: {key}: got {show(value, key)}, "
                              "expected a mapping")
        built[key] = build(known[key], value, (key,), origins)
    core = {s.section: built.pop(s.section, s()) for s in CORE_SECTIONS}  # type: ignore[attr-defined]
    collector_sections = {s.section: built.get(s.section) or s()  # type: ignore[attr-defined]
                          for s in sections}
    return Config(**core, sections=collector_sections, collectors=enabled, source=file_label,
                  origins={**set_by_file, **origins.by_path})


def _leaf_paths(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The setting paths a YAML tree sets: ``{"web": {"listen_address": ...}}`` gives
    ``[("web", "listen_address")]``."""
    out: list[tuple[str, ...]] = []
    for key, value in tree.items():
        path = (*prefix, str(key))
        out += _leaf_paths(value, path) if isinstance(value, Mapping) else [path]
    return out
