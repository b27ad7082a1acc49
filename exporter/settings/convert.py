"""Coercion: a raw value (YAML, or text from env and flags) becomes a typed, checked one.

One converter per type (``to_bool``, ``to_int``, ``to_float``, ``to_str``), then the
rules every setting may carry (bounds, choices, regex, check). Values in messages go
through :func:`exporter.secrets.show`, so a password never reaches the user's terminal::

    environment STACKMON_SCRAPE_TIMEOUT_SECONDS: scrape.timeout_seconds: got "x",
    expected a number
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any

from exporter.errors import ConfigError, SettingError
from exporter.secrets import has_password, show
from exporter.settings.schema import ENV_PREFIX, hints, suggest, type_name, unwrap_optional


class Origins:
    """Remembers where each raw value came from, for error messages."""

    def __init__(self, file_label: str) -> None:
        self.file_label = file_label
        self.by_path: dict[tuple[str, ...], str] = {}

    def of(self, path: tuple[str, ...]) -> str:
        """``stackmon.yml``, ``environment STACKMON_X`` or ``flag --x.y``."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.by_path:
                return self.by_path[path[:n]]
        return self.file_label


class _Bad(Exception):
    """A converter's "expected ..." text; coerce() adds source, key and value."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def to_bool(value: Any, from_text: bool) -> bool:
    if isinstance(value, bool):
        return value
    if from_text and isinstance(value, str):
        low = value.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise _Bad("true or false")


def to_int(value: Any, from_text: bool) -> int:
    if isinstance(value, str) and from_text:
        try:
            value = int(value.strip())
        except ValueError:
            raise _Bad("an integer") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad("an integer")
    return value


def to_float(value: Any, from_text: bool) -> float:
    if isinstance(value, str) and from_text:
        try:
            value = float(value.strip())
        except ValueError:
            raise _Bad("a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad("a number")
    if value != value or value in (float("inf"), float("-inf")):
        raise _Bad("a finite number")
    return float(value)


def to_str(value: Any, from_text: bool) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Bad("a string")
    return str(value)


CONVERTERS: dict[Any, Callable[[Any, bool], Any]] = {
    bool: to_bool, int: to_int, float: to_float, str: to_str,
}


def check_rules(result: Any, meta: Mapping[str, Any]) -> None:
    """The rules a setting declared: bounds, choices, regex, check()."""
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and result < lo) or (hi is not None and result > hi):
        bounds = f"between {lo:g} and {hi:g}" if lo is not None and hi is not None else (
            f"at least {lo:g}" if lo is not None else f"at most {hi:g}")
        raise _Bad(f"a value {bounds}")
    choices = meta.get("choices")
    if choices and result not in choices:
        raise _Bad("one of " + ", ".join(choices) + suggest(str(result), choices))
    if meta.get("regex"):
        try:
            re.compile(result)
        except re.error as err:
            raise _Bad(f"a valid regular expression ({err})") from None
    check = meta.get("check")
    if check is not None:
        problem = check(result)
        if problem:
            raise _Bad(problem)


def coerce(value: Any, tp: Any, path: tuple[str, ...], meta: Mapping[str, Any],
           origins: Origins, from_text: bool) -> Any:
    """One raw value -> the typed value of ``tp`` at ``path``, or a ConfigError."""
    key = ".".join(path)
    where = origins.of(path)

    def bad(expected: str, got: Any = value) -> ConfigError:
        shown = show(got, path[-1].partition("[")[0], bool(meta.get("secret")))
        return ConfigError(f"{where}: {key}: got {shown}, expected {expected}")

    tp, optional = unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise bad(type_name(tp))
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, Mapping):
            raise bad("a mapping")
        return build(tp, value, path, origins)
    if typing.get_origin(tp) is tuple:
        return _coerce_list(value, tp, path, meta, origins, from_text, bad)
    convert = CONVERTERS.get(tp)
    if convert is None:  # pragma: no cover - schema bug, not user input
        raise TypeError(f"unsupported setting type {tp!r} for {key}")
    try:
        result = convert(value, from_text)
    except _Bad as err:
        raise bad(err.expected) from None
    try:
        check_rules(result, meta)
    except _Bad as err:
        # Text is quoted as parsed ("got -1.0" for "-1"), a YAML value as written ("got 0").
        raise bad(err.expected, result if isinstance(value, str) else value) from None
    if meta.get("password_inside") and where.startswith("flag ") and has_password(result):
        env_name = ENV_PREFIX + "_".join(path).upper()
        raise ConfigError(f"{where}: {key}: a password inside the URL is not accepted on the "
                          "command line (other users can read it in the process list); set "
                          f"{env_name}, use the config file, or put the password in "
                          f"{path[0]}.password_file")
    return result


def _coerce_list(value: Any, tp: Any, path: tuple[str, ...], meta: Mapping[str, Any],
                 origins: Origins, from_text: bool,
                 bad: Callable[[str], ConfigError]) -> tuple[Any, ...]:
    """A list (or comma-separated text from env and flags) of one item type."""
    inner = typing.get_args(tp)[0]
    if from_text and isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple):
        raise bad(type_name(tp))
    items = [coerce(item, inner, (*path[:-1], f"{path[-1]}[{i}]"), meta, origins, from_text)
             for i, item in enumerate(value)]
    if dataclasses.is_dataclass(inner):
        names = [getattr(item, "name", None) for item in items]
        dupes = sorted({n for n in names if n is not None and names.count(n) > 1})
        if dupes:
            raise ConfigError(f'{origins.of(path)}: {".".join(path)}: target name '
                              f'"{dupes[0]}" appears twice, expected unique names')
    return tuple(items)


def build(cls: type, raw: Mapping[str, Any], path: tuple[str, ...], origins: Origins) -> Any:
    """A settings dataclass from its raw mapping: every key known, every value coerced,
    required fields present, then its ``check()``."""
    types_ = hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        sub = (*path, str(key))
        if not isinstance(key, str) or key not in fields:
            where = origins.of(sub)
            raise ConfigError(f"{where}: {'.'.join(sub)}: unknown key"
                              f"{suggest(str(key), list(fields))}")
        from_text = origins.of(sub) != origins.file_label
        kwargs[key] = coerce(value, types_[key], sub, fields[key].metadata, origins, from_text)
    missing = [name for name, f in fields.items()
               if name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        key = ".".join((*path, missing[0]))
        raise ConfigError(f"{origins.of(path)}: {key}: missing, expected "
                          f"{type_name(types_[missing[0]])}")
    obj = cls(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        try:
            check()
        except SettingError as err:
            key = ".".join((*path, err.key))
            raise ConfigError(f"{origins.of((*path, err.key))}: {key}: {err.message}") from None
    return obj
