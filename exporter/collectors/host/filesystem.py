"""filesystem: statfs of every mount, as node_exporter's filesystem collector.

Sample output::

    node_filesystem_size_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"} 2.7055e+11
    node_filesystem_avail_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"} 8.4121e+10
    node_filesystem_readonly{device="/dev/vda",fstype="ext4",mountpoint="/"} 0
    node_filesystem_device_error{device="/dev/vda",fstype="ext4",mountpoint="/"} 0

Mounts come from ``<procfs>/1/mounts`` (the host's view when the host's /proc is
mounted in a container), else ``<procfs>/self/mounts``.  Mount points are labelled
relative to ``--path.rootfs`` and statfs'ed under it, as node_exporter does.  A mount
whose statfs hangs (a stale network mount) gets ``node_filesystem_device_error 1`` and
is skipped until the call returns, so it never holds up a scrape.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from exporter.collectors.host.common import Files, Labels, NoData, Paths, SubCollector, family
from exporter.metrics import Metric, Sample

StatFn = Callable[[str], os.statvfs_result]
FAMILIES = (  # name, help
    ("node_filesystem_size_bytes", "Filesystem size in bytes."),
    ("node_filesystem_free_bytes", "Filesystem free space in bytes."),
    ("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes."),
    ("node_filesystem_files", "Filesystem total file nodes."),
    ("node_filesystem_files_free", "Filesystem total free file nodes."),
    ("node_filesystem_readonly", "Filesystem read-only status."),
)
ERROR = "node_filesystem_device_error"
# Filesystems whose statfs answers from memory (the superblock's counters) and cannot
# hang: called inline, sparing each scrape two thread hand-offs, which cost most under
# CPU contention.  Everything else (NFS, CIFS, FUSE, Ceph, ZFS with a suspended pool,
# types we do not know) goes through the worker thread with its timeout.
LOCAL_FSTYPES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "vfat",
                           "msdos", "exfat", "f2fs", "jfs", "nilfs2", "hfsplus"})
_ESCAPE = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    device: str
    mountpoint: str  # as labelled: relative to the rootfs
    fstype: str
    readonly: bool
    labels: Labels


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field) if "\\" in field else field


def parse_mounts(text: str, paths: Paths) -> list[Mount]:
    """The mounts of a /proc/<pid>/mounts text, first of each (device, point, type)."""
    mounts: list[Mount] = []
    seen: set[tuple[str, str, str]] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        device, fstype = _unescape(parts[0]), parts[2]
        mountpoint = paths.strip_root(_unescape(parts[1]))
        key = (device, mountpoint, fstype)
        if key in seen:
            continue
        seen.add(key)
        mounts.append(Mount(device, mountpoint, fstype, "ro" in parts[3].split(","),
                            {"device": device, "fstype": fstype, "mountpoint": mountpoint}))
    return mounts


class StatfsRunner:
    """Runs statvfs off the scrape thread so a hung mount costs at most its timeout.

    One long-lived worker thread does the calls (starting a thread per scrape cost more
    than the statfs calls).  When a call hangs, that worker is given up: the mount stays
    "stuck" (skipped) until the call returns, the next scrape gets a fresh worker, and the
    old one ends once its call comes back.
    """

    def __init__(self, statfs: StatFn) -> None:
        self.statfs = statfs
        self.stuck: set[str] = set()
        self.lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Callable[[], None]] | None = None
        self.worker: threading.Thread | None = None

    def _worker(self, jobs: queue.SimpleQueue[Callable[[], None]]) -> None:
        while True:
            jobs.get()()
            with self.lock:
                if self._jobs is not jobs:
                    return  # given up while hung; a newer worker serves the scrapes

    def run(self, paths: list[str], timeout: float
            ) -> dict[str, os.statvfs_result | OSError | None]:
        results: dict[str, os.statvfs_result | OSError | None] = dict.fromkeys(paths)
        with self.lock:
            todo = [p for p in paths if p not in self.stuck]
            jobs = self._jobs
            if jobs is None and todo:
                jobs = self._jobs = queue.SimpleQueue()
                self.worker = threading.Thread(target=self._worker, args=(jobs,),
                                               name="statfs", daemon=True)
                self.worker.start()
        if not todo or jobs is None:
            return results
        done = threading.Event()
        current: list[str] = []

        def work() -> None:
            for path in todo:
                current[:] = [path]
                try:
                    results[path] = self.statfs(path)
                except OSError as err:
                    results[path] = err
                with self.lock:
                    self.stuck.discard(path)
            current.clear()
            done.set()

        jobs.put(work)
        if not done.wait(timeout):
            with self.lock:
                self.stuck.update(current)
                if self._jobs is jobs:
                    self._jobs = None
        return dict(results)


class Filesystem(SubCollector):
    name = "filesystem"

    def __init__(self, paths: Paths, files: Files, mount_points_exclude: str = "",
                 fs_types_exclude: str = "", mount_timeout: float = 1.0,
                 statfs: StatFn = os.statvfs) -> None:
        super().__init__(paths, files)
        self.mount_exclude = re.compile(mount_points_exclude) if mount_points_exclude else None
        self.fstype_exclude = re.compile(fs_types_exclude) if fs_types_exclude else None
        self.mount_timeout = mount_timeout
        self.runner = StatfsRunner(statfs)
        self.deadline = float("inf")  # set by the host collector before each collect

    def mounts(self) -> list[Mount]:
        try:
            text = self.files.read(self.paths.proc("1", "mounts"))
        except (NoData, PermissionError):
            text = self.files.read(self.paths.proc("self", "mounts"))
        return [m for m in parse_mounts(text, self.paths)
                if not (self.mount_exclude and self.mount_exclude.search(m.mountpoint))
                and not (self.fstype_exclude and self.fstype_exclude.search(m.fstype))]

    def collect(self) -> list[Metric]:
        mounts = self.mounts()
        families = [family(name, doc, "gauge") for name, doc in FAMILIES]
        size, free, avail, files, files_free, readonly = (f.samples.append for f in families)
        error = family(ERROR, "Whether an error occurred while getting statistics for the "
                       "given device.", "gauge")
        results: dict[str, os.statvfs_result | OSError | None] = {}
        remote: set[str] = set()
        for m in mounts:
            path = self.paths.root(m.mountpoint)
            if m.fstype not in LOCAL_FSTYPES:
                remote.add(path)
            elif path not in results:
                try:
                    results[path] = self.runner.statfs(path)
                except OSError as err:
                    results[path] = err
        if remote:
            timeout = min(self.mount_timeout, max(0.0, self.deadline - time.monotonic()))
            results.update(self.runner.run(sorted(remote), timeout))
        for m in mounts:
            st = results.get(self.paths.root(m.mountpoint))
            lbl = m.labels
            if not isinstance(st, os.statvfs_result):
                error.samples.append(Sample(ERROR, lbl, 1.0))
                continue
            error.samples.append(Sample(ERROR, lbl, 0.0))
            bsize = float(st.f_frsize or st.f_bsize)
            size(Sample(FAMILIES[0][0], lbl, st.f_blocks * bsize))
            free(Sample(FAMILIES[1][0], lbl, st.f_bfree * bsize))
            avail(Sample(FAMILIES[2][0], lbl, st.f_bavail * bsize))
            files(Sample(FAMILIES[3][0], lbl, float(st.f_files)))
            files_free(Sample(FAMILIES[4][0], lbl, float(st.f_ffree)))
            # From the host's mount table, as node_exporter: statfs's ST_RDONLY describes
            # the exporter's own view, read-only under ProtectSystem=strict or a ro bind.
            readonly(Sample(FAMILIES[5][0], lbl, 1.0 if m.readonly else 0.0))
        return [*families, error]
