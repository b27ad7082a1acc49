"""``python -m exporter.docs [path]``: write docs/configuration.md from the settings schema
of the core sections and every collector's section (``make docs``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exporter.collectors import COLLECTORS, SECTIONS
from exporter.settings.docs import render

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def configuration_md() -> str:
    return render(SECTIONS, [(spec.name, spec.help, spec.default) for spec in COLLECTORS])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m exporter.docs",
                                     description="write docs/configuration.md from the schema")
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    path: Path = parser.parse_args(argv).path
    path.write_text(configuration_md(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
