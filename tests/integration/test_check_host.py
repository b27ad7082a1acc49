"""``stackmon check``'s host checks in real setups, each wrong in exactly one way, then
right: a "container" (a PID and mount namespace of its own, made with unshare, as a
container runtime makes them) without and with the host's /proc mounted, ``--path.rootfs``
pointing at a directory that is not a root and at the host's / bind-mounted, a real
seccomp filter refusing adjtimex with EPERM (as systemd's ProtectClock=yes with
SystemCallErrorNumber=EPERM), and a missing textfile directory.

The namespaces and mounts exist only inside the unshare'd processes (private mount
propagation): nothing is mounted on the machine itself."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import seccomp
from tests.helpers.check import CheckRun, check_command, run_check, run_command

HOST_ONLY = ["--no-collector.postgres", "--no-collector.redis", "--no-collector.celery",
             "--no-collector.services"]


def in_container(root: Path, args: list[str], mounts: dict[str, str]) -> CheckRun:
    """``stackmon check`` in a new PID namespace with its own /proc, after bind-mounting
    ``mounts`` (source -> path under ``root``) in a private mount namespace: the setup of
    ``docker run -v /proc:/host/proc ...`` without Docker."""
    if shutil.which("unshare") is None:
        pytest.fail("unshare (util-linux) is needed for the container tests")
    binds = [f"mkdir -p {shlex.quote(str(root / target))} && mount --bind "
             f"{shlex.quote(source)} {shlex.quote(str(root / target))}"
             for source, target in mounts.items()]
    inner = shlex.join(["unshare", "--pid", "--fork", "--mount-proc", "--",
                        *check_command(["--format", "json", *HOST_ONLY, *args])])
    script = " && ".join([*binds, f"exec {inner}"])
    return run_command(["unshare", "--mount", "--propagation", "private", "--",
                        "sh", "-c", script])


def test_container_without_the_hosts_proc(tmp_path: Path) -> None:
    wrong = in_container(tmp_path, [], {})
    found = wrong.finding("host", "procfs")
    assert wrong.code == 1 and found["status"] == "missing", wrong.explain()
    assert "PID namespace of its own" in found["detail"]
    assert "--path.procfs=/host/proc" in found["fix"]
    assert "Overview / Root filesystem" in found["affected"]["panels"]
    proc = tmp_path / "host" / "proc"
    right = in_container(tmp_path, [f"--path.procfs={proc}"], {"/proc": "host/proc"})
    found = right.finding("host", "procfs")
    assert found["status"] == "ok", right.explain()
    assert "1 level(s) above" in found["detail"]


def test_rootfs_not_a_root(tmp_path: Path) -> None:
    """As compose's stackmon-host with --path.rootfs naming the directory of the host's
    /proc and /sys mounts instead of the host's / (and then the right one)."""
    mounts = {"/proc": "host/proc", "/sys": "host/sys", "/": "rootfs"}
    args = [f"--path.procfs={tmp_path}/host/proc", f"--path.sysfs={tmp_path}/host/sys"]
    wrong = in_container(tmp_path, [*args, f"--path.rootfs={tmp_path}/host"], mounts)
    found = wrong.finding("host", "rootfs")
    assert wrong.code == 1 and found["status"] == "missing", wrong.explain()
    assert "is not a root directory: it has no dev, etc/os-release" in found["detail"]
    assert wrong.status("host", "procfs") == "ok"
    right = in_container(tmp_path, [*args, f"--path.rootfs={tmp_path}/rootfs"], mounts)
    assert right.status("host", "rootfs") == "ok", right.explain()
    assert right.code == 0, right.explain()


def test_timex_refused_by_a_seccomp_filter() -> None:
    wrong = run_check(HOST_ONLY, prefix=seccomp.prefix())
    found = wrong.finding("host", "timex")
    assert wrong.code == 1 and found["status"] == "missing", wrong.explain()
    assert "EPERM" in found["detail"] and "ProtectClock=no" in found["fix"]
    assert found["affected"]["panels"] == ["Overview / Clock offset",
                                           "Overview / Clock synchronised"]
    right = run_check(HOST_ONLY)  # the same command without the filter
    assert right.status("host", "timex") == "ok", right.explain()


def test_seccomp_filter_refuses_exactly_adjtimex() -> None:
    """The filter of the test above is real: adjtimex fails with EPERM under it only."""
    script = ("import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); "
              "buf = ctypes.create_string_buffer(512); r = libc.adjtimex(buf); "
              "print(r, os.strerror(ctypes.get_errno()) if r < 0 else 'ok', "
              "open('/proc/self/status').read().split('Seccomp:')[1].split()[0])")
    under = subprocess.run([*seccomp.prefix(), sys.executable, "-c", script],
                           capture_output=True, text=True, timeout=60, check=True)
    assert under.stdout.split() == ["-1", "Operation", "not", "permitted", "2"], under
    plain = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=60, check=True)
    assert plain.stdout.split()[1] == "ok", plain


def test_textfile_directory_missing(tmp_path: Path) -> None:
    directory = tmp_path / "textfile_collector"
    args = [*HOST_ONLY, f"--collector.textfile.directory={directory}"]
    wrong = run_check(args)
    found = wrong.finding("host", "textfile")
    assert wrong.code == 1 and found["status"] == "missing", wrong.explain()
    assert f"{directory} does not exist" in found["detail"]
    subprocess.run(shlex.split(found["fix"].split("#", 1)[0]), check=True)  # as printed
    right = run_check(args)
    assert right.status("host", "textfile") == "ok", right.explain()
    assert right.code == 0, right.explain()
