"""os: /etc/os-release under the rootfs, as node_exporter's os collector.

Sample output::

    node_os_info{build_id="",id="debian",id_like="",image_id="",image_version="",
                 name="Debian GNU/Linux",pretty_name="Debian GNU/Linux 12 (bookworm)",
                 variant="",variant_id="",version="12 (bookworm)",
                 version_codename="bookworm",version_id="12"} 1
    node_os_version{id="debian",id_like="",name="Debian GNU/Linux"} 12
"""

from __future__ import annotations

import re
import shlex

from exporter.collectors.host.common import NoData, SubCollector, add, family
from exporter.http.exposition import freeze
from exporter.metrics import Metric

FILES = ("/etc/os-release", "/usr/lib/os-release")
INFO_LABELS = ("build_id", "id", "id_like", "image_id", "image_version", "name",
               "pretty_name", "variant", "variant_id", "version", "version_codename",
               "version_id")
VERSION = re.compile(r"^\d+(\.\d+)?")


def parse_os_release(text: str) -> dict[str, str]:
    """``NAME="Debian GNU/Linux"`` lines -> {"name": "Debian GNU/Linux"}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            try:
                words = shlex.split(value)
            except ValueError:
                words = [value]
            out[key.lower()] = " ".join(words)
    return out


class Os(SubCollector):
    name = "os"
    # The families of the last file text seen, rendered once (exposition.freeze): the
    # file is read every scrape, but parsed (shlex) only when it changes.
    _cached: tuple[str, list[Metric]] = ("", [])

    def collect(self) -> list[Metric]:
        for path in FILES:
            try:
                text = self.files.read(self.paths.root(path))
                break
            except NoData:
                continue
        else:
            raise NoData("os-release")
        if self._cached[0] != text or not self._cached[1]:
            self._cached = (text, [freeze(f) for f in self._families(text)])
        return list(self._cached[1])

    @staticmethod
    def _families(text: str) -> list[Metric]:
        release = parse_os_release(text)
        info = family("node_os_info", "A metric with a constant '1' value labeled by "
                      + ", ".join(INFO_LABELS) + ".", "gauge")
        add(info, "node_os_info", {k: release.get(k, "") for k in INFO_LABELS}, 1.0)
        out = [info]
        match = VERSION.match(release.get("version_id", ""))
        if match:
            version = family("node_os_version",
                             "Metric containing the major.minor part of the OS version.",
                             "gauge")
            add(version, "node_os_version", {k: release.get(k, "") for k in
                                             ("id", "id_like", "name")},
                float(match.group(0)))
            out.append(version)
        return out
