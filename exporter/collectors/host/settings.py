"""The host collector's section: where the kernel's trees are, and which filesystems,
disks and network devices it skips.

    host:
      procfs: /host/proc        # also --path.procfs, node_exporter's flag
      filesystem_mount_points_exclude: "^/(dev|proc|sys)($|/)"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from exporter.settings import setting

# node_exporter's defaults (collector/filesystem_linux.go, diskstats_linux.go).
FS_MOUNT_POINTS_EXCLUDE = (
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs"
    r"|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs"
    r"|squashfs|erofs|sysfs|tracefs)$"
)
DISK_DEVICES_EXCLUDE = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"



def _check_kernel_root(value: str) -> str | None:
    if not value.startswith("/"):
        return "an absolute path, e.g. /host/proc"
    return None


def _check_textfile_directory(value: str) -> str | None:
    if not value.startswith("/"):
        return "an absolute path, e.g. /var/lib/node_exporter/textfile_collector"
    return None


@dataclass(frozen=True)
class HostSettings:
    """Which filesystems, disks and network devices the host collector skips."""

    section: ClassVar[str] = "host"
    filesystem_mount_points_exclude: str = setting(
        FS_MOUNT_POINTS_EXCLUDE, "regex of mount points to ignore", regex=True
    )
    filesystem_fs_types_exclude: str = setting(
        FS_TYPES_EXCLUDE, "regex of filesystem types to ignore", regex=True
    )
    filesystem_mount_timeout_seconds: float = setting(
        1.0, "a mount whose statfs takes longer is reported as an error and skipped until "
        "it answers", min=0.01, max=60,
    )
    disk_devices_exclude: str = setting(
        DISK_DEVICES_EXCLUDE, "regex of block devices to ignore", regex=True
    )
    network_devices_exclude: str = setting("", "regex of network devices to ignore", regex=True)
    # node_exporter's --path.* flags, so a container with the host's /proc, /sys and /
    # mounted (e.g. under /host) reports the host.
    procfs: str = setting("/proc", "procfs mountpoint", flag="--path.procfs",
                          check=_check_kernel_root)
    sysfs: str = setting("/sys", "sysfs mountpoint", flag="--path.sysfs",
                         check=_check_kernel_root)
    rootfs: str = setting("/", "rootfs mountpoint: filesystems are statfs'ed and "
                          "/etc/os-release read under it, mount points reported relative to it",
                          flag="--path.rootfs", check=_check_kernel_root)
    # node_exporter's textfile collector: *.prom files written by cron jobs and scripts.
    textfile_directory: tuple[str, ...] = setting(
        (), "directories whose *.prom files are exported as node_exporter's textfile "
        "collector does (comma-separated in env and flags)",
        flag="--collector.textfile.directory", check=_check_textfile_directory)

