"""``python -m exporter.docs [path]``: write docs/configuration.md from the settings schema
of the core sections and every collector's section (``make docs``)."""

from __future__ import annotations

import sys
from pathlib import Path

from exporter.collectors import COLLECTORS, SECTIONS
from exporter.settings.docs import render

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def configuration_md() -> str:
    return render(SECTIONS, [(spec.name, spec.help, spec.default) for spec in COLLECTORS])


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else DEFAULT_PATH
    path.write_text(configuration_md(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
