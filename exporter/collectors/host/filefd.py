"""filefd: /proc/sys/fs/file-nr, as node_exporter's filefd collector.

Sample output::

    node_filefd_allocated 1947
    node_filefd_maximum 2.46619e+06
"""

from __future__ import annotations

from exporter.collectors.host.common import SubCollector, single
from exporter.metrics import Metric


class Filefd(SubCollector):
    name = "filefd"

    def collect(self) -> list[Metric]:
        allocated, _unused, maximum = self.files.read(
            self.paths.proc("sys", "fs", "file-nr")).split()[:3]
        return [single("node_filefd_allocated", "File descriptor statistics: allocated.",
                       "gauge", float(allocated)),
                single("node_filefd_maximum", "File descriptor statistics: maximum.",
                       "gauge", float(maximum))]
