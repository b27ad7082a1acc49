"""textfile: node_exporter's textfile collector as it runs under default flags.

Sample output::

    node_textfile_scrape_error 0

node_exporter reads ``*.prom`` files only from ``--collector.textfile.directory``; with
none given (its default) it reads nothing and reports no error.  stackmon has no such
directory, so the same holds always; the series exists because Node Exporter Full and
node-mixin's NodeTextFileCollectorScrapeError alert query it.
"""

from __future__ import annotations

from exporter.collectors.host.common import SubCollector, single
from exporter.metrics import Metric


class Textfile(SubCollector):
    name = "textfile"

    def collect(self) -> list[Metric]:
        return [single("node_textfile_scrape_error",
                       "1 if there was an error opening or reading a file, 0 otherwise",
                       "gauge", 0.0)]
