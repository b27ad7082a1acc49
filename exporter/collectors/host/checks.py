"""The host collector's diagnostics: are the kernel trees the host's, may adjtimex(2) be
called, do the textfile directories exist.  Reads only (adjtimex with ``modes = 0``).

* ``procfs``: stackmon in a PID namespace of its own (a container) must read the host's
  /proc (``--path.procfs=/host/proc``): the container's own lists the container's mounts.
  Told apart by ``NSpid`` in ``<procfs>/self/status``: it lists our PID in every PID
  namespace from the one the procfs was mounted in down to ours, so one entry in a
  non-initial namespace means the procfs is the container's own.
* ``rootfs``: ``--path.rootfs`` must be a root directory (os-release, proc, sys, dev).
* ``timex``: a seccomp filter (systemd's ``ProtectClock=yes`` with
  ``SystemCallErrorNumber=EPERM``, a container profile) refuses adjtimex with EPERM.
* ``textfile``: every ``--collector.textfile.directory`` exists and is readable.

Sample findings (``stackmon check``)::

    host  procfs  missing  stackmon runs in a PID namespace ...  docker run ... --path.procfs=...
    host  timex   missing  adjtimex(2) was refused with EPERM ...  systemctl edit stackmon ...
"""

from __future__ import annotations

import ctypes
import errno
import os

from exporter.checks import Check, Finding, Status
from exporter.collectors.host import timex
from exporter.collectors.host.collector import HostCollector

# The inode of the initial PID namespace (include/linux/proc_ns.h, PROC_PID_INIT_INO).
INITIAL_PID_NS = "pid:[4026531836]"
FILESYSTEM_FAMILIES = ("node_filesystem_size_bytes", "node_filesystem_free_bytes",
                       "node_filesystem_avail_bytes", "node_filesystem_files",
                       "node_filesystem_files_free", "node_filesystem_readonly",
                       "node_filesystem_device_error")
FILESYSTEM_PANELS = ("Overview / Root filesystem", "Overview / Filesystem used",
                     "Overview / Inodes used", "Overview / Disk space")

PROCFS = Check(
    "host", "procfs", "--path.procfs is the host's /proc (not a container's own)",
    families=FILESYSTEM_FAMILIES, panels=FILESYSTEM_PANELS,
    fixes={"": "docker run --pid=host -v /proc:/host/proc:ro ... stackmon "
               "--path.procfs=/host/proc  # compose.yaml: the stackmon-host service",
           "absent": "mount the host's /proc at {procfs} (docker run -v /proc:{procfs}:ro) or "
                     "set --path.procfs to where it is mounted"})
ROOTFS = Check(
    "host", "rootfs", "--path.rootfs is a root directory (the host's /, mounted)",
    families=(*FILESYSTEM_FAMILIES, "node_os_info", "node_os_version"),
    panels=FILESYSTEM_PANELS,
    fixes={"": "docker run -v /:/rootfs:ro,rslave ... stackmon --path.rootfs=/rootfs  "
               "# or --path.rootfs=/ outside a container"})
TIMEX = Check(
    "host", "timex", "adjtimex(2) may be called (read only) for the clock's state",
    families=("node_timex_offset_seconds", "node_timex_frequency_adjustment_ratio",
              "node_timex_maxerror_seconds", "node_timex_estimated_error_seconds",
              "node_timex_status", "node_timex_loop_time_constant", "node_timex_tick_seconds",
              "node_timex_pps_frequency_hertz", "node_timex_pps_jitter_seconds",
              "node_timex_pps_shift_seconds", "node_timex_pps_stability_hertz",
              "node_timex_pps_jitter_total", "node_timex_pps_calibration_total",
              "node_timex_pps_error_total", "node_timex_pps_stability_exceeded_total",
              "node_timex_tai_offset_seconds", "node_timex_sync_status"),
    panels=("Overview / Clock offset", "Overview / Clock synchronised"),
    fixes={"eperm": "systemctl edit stackmon  # [Service] ProtectClock=no and "
                    "SystemCallFilter=adjtimex clock_adjtime (reading only: the unit's empty "
                    "CapabilityBoundingSet= leaves no CAP_SYS_TIME to set the clock)\n"
                    "# in a container: allow adjtimex and clock_adjtime in the seccomp "
                    "profile (Docker's default profile allows both)",
           "other": "# adjtimex(2) failed with {error}: see docs/host.md, Troubleshooting"})
TEXTFILE = Check(
    "host", "textfile", "every --collector.textfile.directory exists and can be read",
    families=("node_textfile_mtime_seconds",),
    fixes={"": "install -d -m 0755 {directories}  # or mount them into the container, or "
               "fix --collector.textfile.directory; the scripts writing *.prom files must "
               "write there"})

CHECKS = (PROCFS, ROOTFS, TIMEX, TEXTFILE)
ROOT_MARKS = ("proc", "sys", "dev")
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")


def diagnose(collector: HostCollector, deadline: float) -> list[Finding]:
    paths = collector.paths
    out = [check_procfs(paths.procfs), check_rootfs(paths.rootfs), check_timex()]
    if collector.textfile.directories:
        out.append(check_textfile(collector.textfile.directories))
    return out


def own_pid_namespace() -> str | None:
    """``pid:[4026531836]`` (the initial namespace) or another; None when unreadable."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def nspid(procfs: str) -> list[str] | None:
    """Our PID in each namespace from ``procfs``'s down to ours (``NSpid`` of self)."""
    try:
        with open(os.path.join(procfs, "self", "status"), encoding="ascii",
                  errors="replace") as fh:
            for line in fh:
                if line.startswith("NSpid:"):
                    return line.split()[1:]
    except OSError:
        return None
    return None


def unreachable(path: str) -> str | None:
    """Why ``path`` is not a directory stackmon can enter, or None when it is."""
    try:
        if not os.path.isdir(os.path.realpath(path)) and os.path.exists(path):
            return f"{path} is not a directory"
        os.listdir(path)
    except FileNotFoundError:
        return f"{path} does not exist"
    except PermissionError:
        return f"{path} cannot be read by uid {os.getuid()} (permission denied)"
    except OSError as err:
        return f"{path} cannot be read ({err.strerror})"
    return None


def check_procfs(procfs: str, own_ns: str | None = None) -> Finding:
    problem = unreachable(procfs)
    if problem:
        return PROCFS.finding(Status.MISSING, problem, cause="absent", procfs=procfs)
    levels = nspid(procfs)
    if levels is None:
        return PROCFS.finding(Status.MISSING, f"{procfs} is not a procfs (no self/status "
                              "with NSpid)", cause="absent", procfs=procfs)
    if len(levels) > 1:
        return PROCFS.finding(Status.OK, f"{procfs} is the PID namespace {len(levels) - 1} "
                              "level(s) above stackmon's (the host's, mounted)")
    own = own_ns if own_ns is not None else own_pid_namespace()
    if own == INITIAL_PID_NS:
        return PROCFS.finding(Status.OK, f"stackmon runs in the host's PID namespace and "
                              f"{procfs} shows it")
    if own is None:
        return PROCFS.finding(Status.UNKNOWN, "cannot read /proc/self/ns/pid")
    return PROCFS.finding(
        Status.MISSING, f"stackmon runs in a PID namespace of its own ({own}, a container) "
        f"and {procfs} is that namespace's procfs, not the host's: the container's mounts "
        "are reported", procfs=procfs)


def check_rootfs(rootfs: str) -> Finding:
    problem = unreachable(rootfs)
    if problem:
        return ROOTFS.finding(Status.MISSING, f"--path.rootfs {problem}")
    lacking = [m for m in ROOT_MARKS if not os.path.isdir(os.path.join(rootfs, m))]
    if not any(os.path.exists(os.path.join(rootfs, f)) for f in OS_RELEASE):
        lacking.append("etc/os-release")
    if lacking:
        return ROOTFS.finding(Status.MISSING, f"--path.rootfs {rootfs} is not a root "
                              f"directory: it has no {', '.join(lacking)}")
    return ROOTFS.finding(Status.OK, f"{rootfs} is a root directory")


def check_timex() -> Finding:
    call = timex.libc_adjtimex()
    if call is None:
        return TIMEX.finding(Status.MISSING, "the C library has no adjtimex",
                             cause="other", error="ENOSYS")
    tx = timex._Timex()  # the struct the collector passes too
    if call(ctypes.byref(tx)) >= 0:  # modes = 0: reads the kernel's state, changes nothing
        return TIMEX.finding(Status.OK, "adjtimex(2) answers")
    code = ctypes.get_errno()
    name = errno.errorcode.get(code, str(code))
    if code == errno.EPERM:
        return TIMEX.finding(Status.MISSING, "adjtimex(2) was refused with EPERM: a seccomp "
                             "filter forbids it (systemd ProtectClock=yes, a container's "
                             "seccomp profile)", cause="eperm")
    return TIMEX.finding(Status.BROKEN, f"adjtimex(2) failed with {name}", cause="other",
                         error=name)


def check_textfile(directories: tuple[str, ...]) -> Finding:
    problems = {d: unreachable(d) for d in directories}
    bad = [d for d, problem in problems.items() if problem]
    if not bad:
        return TEXTFILE.finding(Status.OK, f"{', '.join(directories)} readable")
    detail = "; ".join(str(problems[d]) for d in bad)
    return TEXTFILE.finding(Status.MISSING, detail + ": node_textfile_scrape_error is 1 and "
                            "the files' metrics are missing", directories=" ".join(bad))
