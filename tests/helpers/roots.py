"""Debian roots for the tests that run the documented deployments for real (DESIGN.md §7).

A root is made once by ``debootstrap`` and cached outside the repository, keyed by what
goes into it (suite, mirror, packages, this module's recipe version), so a second run of
the suite reuses it:

    /var/cache/stackmon-tests/roots/systemd-3f9a0c1e2b4d/   (a complete Debian bookworm)

Tests never change a cached root: ``Overlay`` mounts a writable layer over it in a temp
dir (overlayfs), and removing that layer is the whole clean-up. Concurrent suites (two
worktrees) wait on a lock file instead of building the same root twice.

What differs from a root made on a user's machine, and why:

* The machine's CA bundle (``/etc/ssl/certs/ca-certificates.crt``) is copied in, so pip
  inside the root trusts the same HTTPS proxy the machine itself uses. Nothing else of the
  machine goes in.
* ``apt-get clean`` runs at the end (smaller cache; apt downloads again when asked).

``skip_reason()`` says why a machine cannot build roots (not root, no debootstrap);
``scripts/test-services.sh`` installs debootstrap, so on the machines the suite targets
the tests run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

CACHE = Path(os.environ.get("STACKMON_TEST_CACHE", "/var/cache/stackmon-tests"))
SUITE = "bookworm"
MIRROR = os.environ.get("STACKMON_TEST_MIRROR", "http://deb.debian.org/debian")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Raise when the recipe below changes in a way the key does not capture.
RECIPE = 1
BUILD_TIMEOUT = 1200
COMPLETE = ".stackmon-root-complete"


def skip_reason() -> str | None:
    """Why roots cannot be built here, or None when they can."""
    if os.geteuid() != 0:
        return "building a Debian root needs root (debootstrap, overlay mounts)"
    if shutil.which("debootstrap") is None:
        return "debootstrap not installed (scripts/test-services.sh installs it)"
    return None


def root_key(name: str, packages: Sequence[str], suite: str = SUITE) -> str:
    """The cache key of a root: same inputs, same key.

    >>> root_key("x", ["b", "a"]) == root_key("x", ["a", "b"])
    True
    >>> root_key("x", ["a"]) == root_key("x", ["a", "c"])
    False
    """
    recipe = {"name": name, "suite": suite, "mirror": MIRROR, "packages": sorted(packages),
              "recipe": RECIPE}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def debian_root(name: str, packages: Sequence[str], suite: str = SUITE) -> Path:
    """A cached minbase root of ``suite`` with ``packages``; built on first use (~1 min)."""
    reason = skip_reason()
    if reason is not None:
        raise RuntimeError(reason)
    roots = CACHE / "roots"
    roots.mkdir(parents=True, exist_ok=True)
    dest = roots / f"{name}-{root_key(name, packages, suite)}"
    with open(roots / f"{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / COMPLETE).exists():
            return dest
        tmp = Path(tempfile.mkdtemp(prefix=f"{dest.name}.", dir=roots))
        try:
            _build(tmp, packages, suite)
            if dest.exists():  # a build that died half-way
                shutil.rmtree(dest)
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def _build(root: Path, packages: Sequence[str], suite: str) -> None:
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(sorted(packages))}",
           suite, str(root), MIRROR]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                          check=False)
    if proc.returncode != 0:
        log = root / "debootstrap" / "debootstrap.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else proc.stderr[-2000:]
        raise RuntimeError(f"debootstrap {suite} failed (exit {proc.returncode}):\n{tail}")
    if CA_BUNDLE.exists():
        shutil.copyfile(CA_BUNDLE, root / "etc/ssl/certs/ca-certificates.crt")
    subprocess.run(["chroot", str(root), "apt-get", "clean"], capture_output=True,
                   timeout=120, check=False)
    (root / COMPLETE).write_text(" ".join(sorted(packages)) + "\n")


PREFIX = "stackmon-overlay-"


def remove_stale_overlays() -> list[str]:
    """Unmount and remove the overlays of test runs that were killed (SIGKILL skips every
    clean-up): their directory names carry the pid of a process that is gone."""
    removed = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[2] != "overlay" or PREFIX not in parts[1]:
            continue
        merged = Path(parts[1])
        pid = merged.parent.name[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            subprocess.run(["umount", "-l", str(merged)], capture_output=True, timeout=30,
                           check=False)
            shutil.rmtree(merged.parent, ignore_errors=True)
            removed.append(str(merged))
    return removed


class Overlay:
    """A writable view of a cached root: overlayfs with the root as its lower layer.

    >>> # with Overlay(debian_root("systemd", [...])) as tree: (tree / "etc/x").write_text("")
    """

    def __init__(self, lower: Path, parent: Path | None = None) -> None:
        self.lower = lower
        remove_stale_overlays()
        self.dir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))
        self.merged = self.dir / "merged"

    def __enter__(self) -> Path:
        for sub in ("upper", "work", "merged"):
            (self.dir / sub).mkdir()
        opts = f"lowerdir={self.lower},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.merged)],
                       check=True, capture_output=True, text=True, timeout=30)
        return self.merged

    def __exit__(self, *exc: object) -> None:
        # Lazy: a process of the test that still holds a file must not keep the mount.
        subprocess.run(["umount", "-l", str(self.merged)], capture_output=True, timeout=30,
                       check=False)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)


@contextlib.contextmanager
def overlay(lower: Path) -> Iterator[Path]:
    with Overlay(lower) as merged:
        yield merged
