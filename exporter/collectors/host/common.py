"""What every host sub-collector shares: the kernel roots and cheap family builders.

``Paths`` is node_exporter's ``--path.procfs`` / ``--path.sysfs`` / ``--path.rootfs``:
every read goes through it, so a container with the host's ``/proc``, ``/sys`` and ``/``
mounted (e.g. at ``/host/proc``) reports the host, and tests read fixture trees.

The builders append ``Sample`` tuples straight to a family with label dicts built once
(``labels()``), skipping prometheus_client's per-call ``dict(zip(...))``: a host scrape
makes ~500 samples and this is the hot path.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from exporter.metrics import Metric, Sample

Labels = dict[str, str]
NO_LABELS: Labels = {}


class NoData(Exception):
    """The kernel lacks this source (no /proc/pressure, no conntrack): skipped quietly."""


@dataclass(frozen=True)
class Paths:
    procfs: str = "/proc"
    sysfs: str = "/sys"
    rootfs: str = "/"

    # Cached: the collectors ask for the same ~100 paths on every scrape.
    @functools.lru_cache(maxsize=1024)  # noqa: B019 - Paths are few and live forever
    def proc(self, *parts: str) -> str:
        return os.path.join(self.procfs, *parts)

    @functools.lru_cache(maxsize=1024)  # noqa: B019
    def sys(self, *parts: str) -> str:
        return os.path.join(self.sysfs, *parts)

    def root(self, path: str) -> str:
        """``/etc/os-release`` under the rootfs (``/host/etc/os-release``)."""
        return os.path.join(self.rootfs, path.lstrip("/"))

    def strip_root(self, mountpoint: str) -> str:
        """``/host/var`` -> ``/var`` with rootfs ``/host``, as node_exporter labels mounts."""
        root = self.rootfs.rstrip("/")
        if not root:
            return mountpoint
        if mountpoint == root:
            return "/"
        if mountpoint.startswith(root + "/"):
            return mountpoint[len(root):]
        return mountpoint


def read_bytes(path: str, dir_fd: int | None = None) -> bytes:
    """A whole kernel file with plain syscalls: open() with its text wrapper costs three
    times as much per file, and a scrape reads ~150 small files (most under sysfs)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        data = os.read(fd, 65536)
        # Read to EOF: a short read is not an end of file for every /proc file.
        chunk = os.read(fd, 65536) if data else b""
        if not chunk:
            return data
        chunks = [data, chunk]
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


ATTRIBUTE_MAX = 4096  # a sysfs attribute's show() writes one page at most


def read_attribute(path: str, dir_fd: int | None = None) -> bytes:
    """A sysfs attribute (or a /proc/sys value): one read() returns it whole, so the read
    that would see the end of file is skipped (~100 of them a scrape, a quarter of the
    host collector's syscalls); anything a page long or longer is read to the end."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        data = os.read(fd, 2 * ATTRIBUTE_MAX)
        if len(data) < ATTRIBUTE_MAX:
            return data
        chunks = [data]
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str) -> str:
    """A whole small kernel file; a missing file is ``NoData`` (the source is absent)."""
    try:
        return read_bytes(path).decode("utf-8", "replace")
    except FileNotFoundError:
        raise NoData(path) from None


def read_optional(path: str, dir_fd: int | None = None) -> str | None:
    """A sysfs attribute, or None when absent or unreadable (EINVAL on a down link)."""
    try:
        return read_attribute(path, dir_fd).decode("utf-8", "replace").strip()
    except OSError:
        return None


def family(name: str, doc: str, typ: str) -> Metric:
    """An empty family; counters are named with their ``_total`` as node_exporter does."""
    return Metric(name[:-6] if typ == "counter" and name.endswith("_total") else name, doc, typ)


def add(metric: Metric, name: str, labels: Labels, value: float) -> None:
    metric.samples.append(Sample(name, labels, value))


def single(name: str, doc: str, typ: str, value: float) -> Metric:
    """A family of one unlabelled sample."""
    metric = family(name, doc, typ)
    metric.samples.append(Sample(name, NO_LABELS, value))
    return metric


def labels(names: Sequence[str], values: Sequence[str]) -> Labels:
    return dict(zip(names, values, strict=True))


class Files:
    """The kernel files of one scrape: read once even when two collectors use one
    (``cpu`` and ``stat`` both parse /proc/stat); ``clear()`` starts the next scrape."""

    def __init__(self) -> None:
        self._text: dict[str, str] = {}

    def read(self, path: str) -> str:
        text = self._text.get(path)
        if text is None:
            text = self._text[path] = read_text(path)
        return text

    def clear(self) -> None:
        self._text.clear()


class SubCollector:
    """One node_exporter collector (``meminfo``, ``netdev``...): its own success and timing.

    ``collect`` raises ``NoData`` when the kernel lacks the source, anything else on a
    real failure; either way only this collector's series are missing.
    """

    name: ClassVar[str]

    def __init__(self, paths: Paths, files: Files) -> None:
        self.paths = paths
        self.files = files

    def collect(self) -> list[Metric]:
        raise NotImplementedError
