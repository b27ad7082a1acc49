"""textfile: node_exporter's textfile collector: metrics from ``*.prom`` files.

Sample output::

    node_textfile_mtime_seconds{file="/var/lib/node_exporter/textfile/backup.prom"} 1.7e+09
    node_textfile_scrape_error 0
    backup_last_success_timestamp_seconds 1.7e+09

As node_exporter with ``--collector.textfile.directory`` (``host.textfile_directory``):
every ``*.prom`` file of each directory is parsed as the Prometheus text format and its
families are exported; ``node_textfile_mtime_seconds`` gives each file read and
``node_textfile_scrape_error`` is 1 when a directory or file could not be read or parsed
(a file with client-side timestamps is skipped whole, as node_exporter does).  With no
directory configured (node_exporter's default) nothing is read and the error is 0.

Families another part of stackmon exports (the host collector's own names, and the
``pg_``, ``redis_``, ``celery_``, ``nginx_``, ``stackmon_``, ``process_`` prefixes) are
refused with an error: a twin would make the whole scrape ambiguous.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from exporter.collectors.base import bare_counter
from exporter.collectors.host.common import Files, Paths, SubCollector, add, family, single
from exporter.metrics import Metric

log = logging.getLogger("stackmon.host")
MTIME = "node_textfile_mtime_seconds"
ERROR = "node_textfile_scrape_error"
# Prefixes of the families other collectors (and the process metrics) export.
RESERVED_PREFIXES = ("pg_", "redis_", "celery_", "nginx_", "stackmon_", "process_",
                     "node_textfile_")
MAX_FILE_BYTES = 16 << 20  # a runaway writer must not make a scrape read gigabytes


class TextfileError(ValueError):
    """A file that cannot be exported (its message is logged)."""


class Textfile(SubCollector):
    name = "textfile"

    def __init__(self, paths: Paths, files: Files, directories: Sequence[str] = ()) -> None:
        super().__init__(paths, files)
        self.directories = tuple(directories)
        self._logged: dict[str, str] = {}  # path -> last error logged (log once per change)

    def collect(self, exclude: frozenset[str] | set[str] = frozenset()) -> list[Metric]:
        """The files' families; ``exclude``: names the host collector already exported."""
        error = False
        families: dict[str, Metric] = {}
        mtimes: dict[str, float] = {}
        failed: set[str] = set()
        for directory in self.directories:
            try:
                names = sorted(n for n in os.listdir(directory) if n.endswith(".prom"))
            except OSError as err:
                error = True
                failed.add(directory)
                self._log(directory, "cannot read the textfile directory", err.strerror or err)
                continue
            for name in names:
                path = os.path.join(directory, name)
                try:
                    parsed, mtime = _read(path, exclude)
                    _merge(families, parsed, path)
                except (OSError, ValueError) as err:
                    error = True
                    failed.add(path)
                    self._log(path, "cannot export the textfile", err)
                    continue
                mtimes[path] = mtime
        for path in [p for p in self._logged if p not in failed]:
            del self._logged[path]  # read again: the next failure is logged anew
        out = list(families.values())
        if mtimes:
            times = family(MTIME, "Unixtime mtime of textfiles successfully read.", "gauge")
            for path, mtime in sorted(mtimes.items()):
                add(times, MTIME, {"file": path}, mtime)
            out.append(times)
        out.append(single(ERROR, "1 if there was an error opening or reading a file, "
                          "0 otherwise", "gauge", 1.0 if error else 0.0))
        return out

    def _log(self, path: str, message: str, err: object) -> None:
        text = str(err)
        if self._logged.get(path) != text:
            self._logged[path] = text
            log.warning('collector=host part=textfile msg="%s" path="%s" err="%s"',
                        message, path, text)


def _read(path: str, exclude: frozenset[str] | set[str]) -> tuple[list[Metric], float]:
    """One file's families (and its mtime), or TextfileError."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_FILE_BYTES + 1)
        mtime = float(int(os.fstat(fh.fileno()).st_mtime))  # whole seconds, as node_exporter
    if len(data) > MAX_FILE_BYTES:
        raise TextfileError(f"larger than {MAX_FILE_BYTES} bytes")
    try:
        # prometheus_client's parser, imported only with a textfile directory configured
        # (its package costs 12 MB; bench/RESULTS.md, "Memory").
        from prometheus_client.parser import text_string_to_metric_families

        # Its families have exporter.metrics' attributes (the same API).
        parsed: list[Any] = list(text_string_to_metric_families(data.decode("utf-8")))
    except (ValueError, UnicodeDecodeError) as err:
        raise TextfileError(f"not the Prometheus text format: {err}") from None
    out: list[Metric] = []
    for fam in parsed:
        if any(s.timestamp is not None for s in fam.samples):
            raise TextfileError("contains unsupported client-side timestamps, skipping "
                                "entire file")
        names = {s.name for s in fam.samples} | {fam.name}
        if names & set(exclude) or fam.name.startswith(RESERVED_PREFIXES):
            raise TextfileError(f"{fam.name}: exported by stackmon itself")
        if not fam.documentation:
            fam.documentation = f"Metric read from {path}"
        if fam.type == "counter" and any(s.name == fam.name for s in fam.samples):
            # A counter written without _total keeps its name, as node_exporter does.
            bare = bare_counter(fam.name, fam.documentation)
            bare.samples = fam.samples
            fam = bare
        out.append(fam)
    return out, mtime


def _merge(families: dict[str, Metric], parsed: list[Metric], path: str) -> None:
    """Add one file's families; a family in two files must agree on help and type."""
    for fam in parsed:
        first = families.get(fam.name)
        if first is None:
            continue
        if (first.type, first.documentation) != (fam.type, fam.documentation):
            raise TextfileError(f"{fam.name}: declared differently in another file")
        if {(s.name, tuple(sorted(s.labels.items()))) for s in first.samples} & \
                {(s.name, tuple(sorted(s.labels.items()))) for s in fam.samples}:
            raise TextfileError(f"{fam.name}: the same series is in another file")
    for fam in parsed:
        first = families.get(fam.name)
        if first is None:
            families[fam.name] = fam
        else:
            first.samples.extend(fam.samples)
