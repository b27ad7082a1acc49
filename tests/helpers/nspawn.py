"""systemd as PID 1 for the tests: a cached Debian root booted by ``systemd-nspawn``.

The machine itself runs no systemd, so every nspawn call passes ``--register=no
--keep-unit`` (no machined, no scope unit). Two ways in:

* ``run_offline(tree, script)``: a shell script in the root, not booted, with the
  machine's network (apt-get, pip). Nothing keeps running afterwards.
* ``Booted(tree)``: ``systemd-nspawn -b --private-network``; systemd is PID 1 and the
  container has only its own loopback, so nothing in it reaches a server of the machine.
  ``run()`` executes a command inside (``nsenter -t <PID 1> -a``)::

      with Booted(tree, log) as box:
          box.run("systemctl", "is-active", "stackmon").stdout   # 'active\\n'

``Booted.__exit__`` powers the container off (SIGTERM to nspawn), kills its PID 1 (and
so the whole PID namespace) if it has not gone within 30 s, and reports a process left
in the container's PID namespace as an error. Ctrl-C and pytest's SIGTERM unwind through
it; an atexit hook and a parent-death signal (pytest killed outright) catch the rest.
Every container gets a machine name of its own, so two suites at once (two worktrees)
never share nspawn's per-machine state under /run/systemd/nspawn/.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from tests.helpers import roots
from tests.helpers.exporter import wait_for

NSPAWN = ("systemd-nspawn", "--register=no", "--keep-unit", "--quiet")
# What runs inside gets a clean environment: the suite's STACKMON_* and proxies stay out.
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "TERM": "dumb"}
BOOT_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
PR_SET_PDEATHSIG = 1
_names = itertools.count()


def machine_name() -> str:
    """A name no other container of this machine has now (also the container's hostname)."""
    return f"stackmon-test-{os.getpid()}-{next(_names)}"


def skip_reason() -> str | None:
    """Why this machine cannot boot a root, or None when it can."""
    reason = roots.skip_reason()
    if reason is not None:
        return reason
    for tool, package in (("systemd-nspawn", "systemd-container"), ("nsenter", "util-linux")):
        if shutil.which(tool) is None:
            return f"{tool} not installed (apt-get install {package}; scripts/test-services.sh)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlayfs (the tests never write to a cached root)"
    return None


def copy_files(repo: Path, dest: Path) -> int:
    """Copy the files git knows of (tracked, and new ones not ignored) as they are on
    disk, uncommitted changes included; returns how many."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=repo, capture_output=True, check=True, timeout=60).stdout
    count = 0
    for name in sorted(set(out.decode().split("\0")) - {""}):
        src = repo / name
        if not src.exists() and not src.is_symlink():  # deleted in the worktree
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
        count += 1
    return count


def run_offline(tree: Path, script: str, chdir: str = "/", binds: Sequence[str] = (),
                env: Mapping[str, str] | None = None, timeout: float = 600
                ) -> subprocess.CompletedProcess[str]:
    """``bash -c script`` in the (not booted) root with the machine's network; ``binds``
    are nspawn's ``--bind=`` values (``/host/dir:/in/root``)."""
    cmd = [*NSPAWN, f"--machine={machine_name()}", "-D", str(tree), f"--chdir={chdir}",
           *(f"--bind={b}" for b in binds),
           *(f"--setenv={k}={v}" for k, v in (env or {}).items()), "bash", "-c", script]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          env=ENV, stdin=subprocess.DEVNULL)


class Booted:
    """The root booted with systemd as PID 1 and a private network (see the module doc)."""

    def __init__(self, tree: Path, log: Path, syscalls: Sequence[str] = ()) -> None:
        """``syscalls``: added to nspawn's own seccomp allow-list for the container (it
        refuses, e.g., the @clock calls to a container without CAP_SYS_TIME)."""
        self.tree = tree
        self.syscalls = syscalls
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid1 = 0
        self.pidns = ""

    def __enter__(self) -> Booted:
        with open(self.log, "wb") as out:
            # Its own session: a Ctrl-C in the terminal reaches pytest, which then stops
            # the container in order, instead of nspawn dying half-way.
            self.proc = subprocess.Popen(
                [*NSPAWN, f"--machine={machine_name()}", "-D", str(self.tree), "-b",
                 "--private-network", "--console=read-only",
                 *([f"--system-call-filter={' '.join(self.syscalls)}"] if self.syscalls else [])],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=ENV,
                start_new_session=True, preexec_fn=_terminate_with_parent)
        atexit.register(self._kill)
        try:
            self.pid1 = wait_for(self._find_pid1, timeout=30, interval=0.1,
                                 what="the container's PID 1")
            # "degraded" (a unit failed) still lets the tests run; they say what failed.
            state = wait_for(self._system_state, timeout=BOOT_TIMEOUT, interval=0.2,
                             what="systemd in the container to answer")
            if state not in ("running", "degraded"):
                raise RuntimeError(f"container did not boot: {state!r}\n{self.console()}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _system_state(self) -> str:
        # Empty (and an error) until PID 1 listens on its private bus socket.
        return self.run("systemctl", "is-system-running", "--wait", timeout=BOOT_TIMEOUT,
                        check=False).stdout.strip()

    def _find_pid1(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}:\n"
                               f"{self.console()}")
        mine = os.readlink("/proc/self/ns/pid")
        for child in psutil.Process(self.proc.pid).children():
            with contextlib.suppress(psutil.Error, OSError):
                # PID 1 of the new PID namespace, once it has exec'd systemd
                if os.readlink(f"/proc/{child.pid}/ns/pid") != mine and child.name() == "systemd":
                    self.pidns = os.readlink(f"/proc/{child.pid}/ns/pid")
                    return child.pid
        return 0

    def console(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def run(self, *args: str, input: str | None = None, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """A command inside the container (all its namespaces), as root."""
        proc = subprocess.run(["nsenter", "-t", str(self.pid1), "-a", *args], input=input,
                              capture_output=True, text=True, timeout=timeout, check=False,
                              env=ENV)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n"
                                 f"{proc.stdout}{proc.stderr}")
        return proc

    def sh(self, script: str, input: str | None = None, timeout: float = 60,
           check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("bash", "-c", script, input=input, timeout=timeout, check=check)

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """A file inside the container (through the overlay's merged tree)."""
        target = self.tree / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def __exit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # nspawn asks systemd to power off
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill()
                proc.wait(timeout=STOP_TIMEOUT)
        atexit.unregister(self._kill)
        self.proc = None

        def left() -> list[int]:  # the kernel empties the namespace once PID 1 has gone
            return [pid for pid in psutil.pids() if self.pidns and _pidns(pid) == self.pidns]

        with contextlib.suppress(AssertionError):
            wait_for(lambda: not left(), timeout=10, what="the container's processes to end")
        if left():
            raise RuntimeError(f"processes of the container still running: {left()}")

    def _kill(self) -> None:
        """Last resort: PID 1 of a PID namespace takes every process in it along."""
        for pid in (self.pid1, self.proc.pid if self.proc else 0):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _terminate_with_parent() -> None:
    """In the nspawn child: SIGTERM (a clean power-off) when pytest dies without
    unwinding (SIGKILL), so no container outlives the suite."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _pidns(pid: int) -> str:
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/{pid}/ns/pid")
    return ""
