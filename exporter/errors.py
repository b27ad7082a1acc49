"""The errors of bad input: ConfigError (one line for the user) and SettingError
(raised by a section's ``check()``, turned into a ConfigError naming source and key)."""

from __future__ import annotations


class ConfigError(Exception):
    """A bad input: ``str(err)`` is the one line the user sees.

    Control characters that came from the input (a newline inside a key) are escaped so
    the message stays on one line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


def one_line(text: str) -> str:
    """Escape non-printable characters (newlines included) so text stays on one line.

    >>> one_line("a\\nb")
    'a\\\\nb'
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class SettingError(ValueError):
    """Raised by a settings class's ``check()`` for a value that fails a cross-field rule."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message
