"""Generate stackmon's Grafana dashboards (grafana/dashboards/*.json) with grafana-foundation-sdk.

Run ``.venv/bin/python -m grafana.generate`` (or ``make dashboards``) after changing a
dashboard; the JSON files are committed and never edited by hand. A unit test fails when they
differ from what this command writes.

The sources have the shape of the public monitoring mixins:

- ``grafana/lib/``: the shared library (no metric names): ``promql.py`` (queries, the
  job/instance scope, rate / increase / ratio / quantile), ``panels.py`` (panel kinds,
  thresholds, data links), ``dashboard.py`` (variables, annotation, links, rendering);
- ``grafana/dashboards_src/``: one module per dashboard (``overview.py``, ``database.py``,
  ``cache.py``, ``celery.py``, ``tasks.py``), ``shared.py`` for what several of them show,
  and the list of them in ``__init__.py``;
- this module: the command.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from grafana.dashboards_src import DASHBOARDS
from grafana.lib.dashboard import write

__all__ = ["DASHBOARDS", "OUT_DIR", "main", "write_all"]

OUT_DIR = Path(__file__).resolve().parent / "dashboards"


def write_all(out_dir: Path = OUT_DIR) -> list[Path]:
    """Write every dashboard as ``<slug>.json`` into ``out_dir``."""
    return write(DASHBOARDS.values(), out_dir)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    for path in write_all(parser.parse_args(argv).out):
        print(path)


if __name__ == "__main__":
    main()
