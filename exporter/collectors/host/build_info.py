"""node_exporter_build_info, describing stackmon, so dashboards find the host.

Sample output::

    node_exporter_build_info{branch="",goarch="amd64",goos="linux",
                             goversion="python3.11.2",revision="stackmon",version="0.1.0"} 1

node-mixin's "USE Method / Node" dashboard lists its instances with
``label_values(node_exporter_build_info, instance)``: without this series it shows no
host at all.  The labels are node_exporter's; the values say what really runs
(stackmon's version, Python's).  Exported only while the host collector is on.
"""

from __future__ import annotations

import platform

from exporter import __version__
from exporter.collectors.host.common import add, family
from exporter.metrics import Metric

GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}
NAME = "node_exporter_build_info"


def build_info() -> Metric:
    metric = family(NAME, "A metric with a constant '1' value labeled by version, revision, "
                    "branch, goversion from which node_exporter was built, and the goos and "
                    "goarch for the build.", "gauge")
    machine = platform.machine()
    add(metric, NAME, {"branch": "", "goarch": GOARCH.get(machine, machine),
                       "goos": platform.system().lower(),
                       "goversion": f"python{platform.python_version()}",
                       "revision": "stackmon", "version": __version__}, 1.0)
    return metric
