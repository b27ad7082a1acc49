"""The schema: ``setting()`` declares one field of a settings section, ``SettingPath``
names a scalar setting and derives its file key, env var and flag from that name.

A section is a frozen dataclass with ``section: ClassVar[str]`` (its YAML key), fields
made by ``setting()``, and optionally ``check()`` (cross-field rules, raising
SettingError) and ``extra_secrets()`` (secret values hidden inside other values).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

ENV_PREFIX = "STACKMON_"
# Env vars that are not settings but are still ours.
ENV_EXTRA = frozenset({"STACKMON_CONFIG_FILE"})


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    min: float | None = None,
    max: float | None = None,
    choices: Sequence[str] | None = None,
    regex: bool = False,
    secret: bool = False,
    flag: str | None = None,
    check: Callable[[Any], str | None] | None = None,
    default_factory: Callable[[], Any] | None = None,
    password_inside: bool = False,
) -> Any:
    """Declare one setting: its default, help text and the rules its value obeys.

    ``secret`` values are never echoed and are refused on the command line;
    ``check`` returns what was expected ("a path starting with /") or None.
    ``password_inside`` marks a URL/DSN that may carry a password: allowed from the file
    and env, refused on the command line when it does.
    """
    meta = {
        "help": help,
        "min": min,
        "max": max,
        "choices": tuple(choices) if choices else None,
        "regex": regex,
        "secret": secret,
        "flag": flag,
        "check": check,
        "password_inside": password_inside,
    }
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SettingPath:
    """One scalar setting reachable from env and flags, e.g. ``("web", "listen_address")``."""

    path: tuple[str, ...]
    field: dataclasses.Field[Any]
    type: Any

    @property
    def key(self) -> str:
        """``web.listen_address``"""
        return ".".join(self.path)

    @property
    def env(self) -> str:
        """``STACKMON_WEB_LISTEN_ADDRESS``"""
        return ENV_PREFIX + "_".join(self.path).upper()

    @property
    def flag(self) -> str:
        """``--web.listen-address``"""
        explicit = self.field.metadata.get("flag")
        if explicit:
            return str(explicit)
        return "--" + self.path[0] + "." + "-".join(self.path[1:]).replace("_", "-")

    @property
    def secret(self) -> bool:
        return bool(self.field.metadata.get("secret"))

    @property
    def help(self) -> str:
        return str(self.field.metadata.get("help", ""))


def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def setting_paths(sections: Iterable[Any]) -> list[SettingPath]:
    """Every scalar setting of these sections (lists of targets are file-only)."""
    out: list[SettingPath] = []
    for section in sections:
        types_ = hints(section)
        for f in dataclasses.fields(section):
            if not f.init:
                continue
            tp, _ = unwrap_optional(types_[f.name])
            if dataclasses.is_dataclass(tp) or typing.get_origin(tp) is tuple:
                if typing.get_origin(tp) is tuple and typing.get_args(tp)[0] is str:
                    out.append(SettingPath((section.section, f.name), f, types_[f.name]))
                continue
            out.append(SettingPath((section.section, f.name), f, types_[f.name]))
    return out


def suggest(word: str, options: Sequence[str]) -> str:
    """The "did you mean" tail of an error, or "".

    >>> suggest("listen_adress", ["listen_address", "telemetry_path"])
    ' (did you mean "listen_address"?)'
    """
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def type_name(tp: Any) -> str:
    """What a value of this type looks like to a user: ``a number``, ``a list of strings``."""
    tp, _optional = unwrap_optional(tp)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        return "a list of strings" if inner is str else "a list of mappings"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return names.get(tp, str(tp))
