"""Guard: the suite leaves the machine's own PostgreSQL, Redis and RabbitMQ alone.

Two read-only checks, wired into tests/conftest.py:

* ``Watcher``: while the tests run, the suite's processes (pytest and every descendant:
  exporters, Celery workers, CLIs) must open no connection to the default ports or the
  servers' default Unix sockets (libpq without a host uses /var/run/postgresql). Seen
  through an audit hook on ``socket.connect`` in pytest itself and by sampling
  /proc/net/tcp{,6} and ``ss -x`` (every 0.5 s) against the sockets of our process tree.
  Any hit fails the run.
* ``snapshot()`` before and after: per-DB key counts of Redis on 6379, the vhosts of the
  default RabbitMQ node, the databases and roles of PostgreSQL on 5432. Printed at the
  end; a difference fails the run with ``STACKMON_TEST_GUARD=strict`` (on a machine
  where other programs use those servers meanwhile it is only reported).

Sample report::

    guard: no connection from the suite to 127.0.0.1:5432/6379/5672/4369/25672
    guard: rabbitmq before ['/', 'guard-vhost'] after ['/', 'guard-vhost']: unchanged
    guard: redis before {0: 1, 1: 1, ...} after {0: 1, 1: 1, ...}: unchanged
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

# PostgreSQL, Redis, RabbitMQ (AMQP, epmd, Erlang distribution) on their default ports.
DEFAULT_PORTS = (5432, 6379, 5672, 4369, 25672)
# Their default Unix sockets: libpq without a host connects to .s.PGSQL.5432 in its socket
# directory (Debian: /var/run/postgresql), Debian's redis.conf offers redis-server.sock.
DEFAULT_SOCKET_NAMES = (".s.PGSQL.5432",)
DEFAULT_SOCKET_PATHS = ("/var/run/redis/redis-server.sock", "/run/redis/redis-server.sock")


def default_socket(path: str, names: tuple[str, ...] = DEFAULT_SOCKET_NAMES,
                   paths: tuple[str, ...] = DEFAULT_SOCKET_PATHS) -> bool:
    """A path one of the machine's servers listens on by default.

    >>> default_socket("/var/run/postgresql/.s.PGSQL.5432"), default_socket("/tmp/.s.PGSQL.23817")
    (True, False)
    """
    return path in paths or os.path.basename(path) in names


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def _redis_keys(port: int = 6379) -> dict[int, int] | str:
    """Key count of each DB (``SELECT n`` + ``DBSIZE``: read-only)."""
    import redis

    client = redis.Redis(port=port, socket_timeout=5)
    try:
        ndb = int(client.config_get("databases").get("databases") or 16)
        counts = {}
        for db in range(ndb):
            client.execute_command("SELECT", db)  # type: ignore[no-untyped-call]
            counts[db] = int(client.execute_command("DBSIZE"))  # type: ignore[no-untyped-call]
        return counts
    except redis.RedisError as err:  # e.g. a password on the machine's Redis
        return f"unreadable ({err.__class__.__name__})"
    finally:
        client.close()


def _rabbit_vhosts() -> list[str] | str:
    """``rabbitmqctl list_vhosts`` on the machine's default node (Debian's wrapper runs it
    as the rabbitmq user with that node's cookie)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
    ctl = "/usr/sbin/rabbitmqctl" if Path("/usr/sbin/rabbitmqctl").exists() else "rabbitmqctl"
    try:
        proc = subprocess.run([ctl, "-q", "list_vhosts"], capture_output=True, text=True,
                              timeout=60, env=env, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unreadable ({err.__class__.__name__})"
    if proc.returncode != 0:
        return f"unreadable (rabbitmqctl exit {proc.returncode})"
    return sorted(v for v in proc.stdout.split() if v != "name")


def _pg_catalog() -> dict[str, list[str]] | str:
    """Databases and roles, over the local socket as the postgres OS user (peer auth; the
    machine's server may ask for passwords over TCP)."""
    query = ("SELECT 'db:' || datname FROM pg_database UNION ALL "
             "SELECT 'role:' || rolname FROM pg_roles ORDER BY 1")
    cmd = ["psql", "-X", "-At", "-p", "5432", "-d", "postgres", "-c", query]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd="/")
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unreadable ({err.__class__.__name__})"
    if proc.returncode != 0:
        return f"unreadable (psql exit {proc.returncode})"
    rows = proc.stdout.split()
    return {"databases": [r[3:] for r in rows if r.startswith("db:")],
            "roles": [r[5:] for r in rows if r.startswith("role:")]}


def snapshot() -> dict[str, Any]:
    """What the suite must not change, for each default-port server that answers."""
    snap: dict[str, Any] = {}
    if port_open(6379):
        snap["redis"] = _redis_keys()
    if port_open(5672):
        snap["rabbitmq"] = _rabbit_vhosts()
    if port_open(5432):
        snap["postgres"] = _pg_catalog()
    return snap


def settle(timeout: float = 30.0) -> None:
    """Wait for the processes a snapshot started to be gone: ``rabbitmqctl``'s Erlang VM
    can still hold its socket to the machine's epmd (4369) for a moment after
    ``subprocess.run`` returned, and the watcher's first scan would count it as the
    suite's (seen once in CI: ``beam.smp ... -home /var/lib/rabbitmq``)."""
    psutil.wait_procs(psutil.Process().children(recursive=True), timeout=timeout)


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """One line per server: "unchanged" or what differs."""
    lines = []
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name, "absent"), after.get(name, "absent")
        verdict = "unchanged" if a == b else "CHANGED"
        lines.append(f"guard: {name} before {b} after {a}: {verdict}")
    return lines


def _loopback_hex_ports(ports: tuple[int, ...]) -> set[str]:
    return {f"{p:04X}" for p in ports}


@dataclass
class Hit:
    pid: int
    port: int
    cmdline: str


@dataclass
class Watcher:
    """Records connections from this process tree to ``ports`` on loopback."""

    ports: tuple[int, ...] = DEFAULT_PORTS
    socket_names: tuple[str, ...] = DEFAULT_SOCKET_NAMES
    socket_paths: tuple[str, ...] = DEFAULT_SOCKET_PATHS
    interval: float = 0.5  # a scan costs ~10 ms (the kernel writes /proc/net/tcp)
    hits: list[Hit] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _active: bool = False

    def start(self) -> Watcher:
        self._active = True
        sys.addaudithook(self._audit)
        self._thread = threading.Thread(target=self._loop, name="guard-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Hit]:
        self._active = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.scan()  # one last look
        return self.hits

    def _audit(self, event: str, args: tuple[Any, ...]) -> None:
        # Audit hooks cannot be removed: inactive after stop().
        if not self._active or event != "socket.connect":
            return
        address = args[1]
        if isinstance(address, str | bytes):  # AF_UNIX
            path = os.fsdecode(address)
            if default_socket(path, self.socket_names, self.socket_paths):
                self._record(Hit(os.getpid(), 0, f"pytest (in-process) -> {path}"))
            return
        if (isinstance(address, tuple) and len(address) >= 2
                and address[1] in self.ports and _is_loopback(str(address[0]))):
            self._record(Hit(os.getpid(), int(address[1]), "pytest (in-process)"))

    def _record(self, hit: Hit) -> None:
        if not any(h.pid == hit.pid and h.port == hit.port for h in self.hits):
            self.hits.append(hit)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):
                self.scan()

    def scan(self) -> None:
        """Sockets to a watched port (any state) or default Unix socket owned by one of our
        processes."""
        inodes = self._tcp_peers()
        inodes.update(_unix_peers(self.socket_names, self.socket_paths))
        if not inodes:
            return
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            with contextlib.suppress(OSError, psutil.Error):
                fd_dir = Path(f"/proc/{proc.pid}/fd")
                for fd in fd_dir.iterdir():
                    with contextlib.suppress(OSError):
                        port = inodes.get(os.readlink(fd))
                        if port is not None:
                            self._record(Hit(proc.pid, port, " ".join(proc.cmdline())[:200]))

    def _tcp_peers(self) -> dict[str, int]:
        """``socket:[inode]`` -> port of every loopback TCP socket to a watched port."""
        wanted = _loopback_hex_ports(self.ports)
        needles = tuple(f":{p} " for p in wanted)
        inodes: dict[str, int] = {}
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError), open(table) as f:
                next(f, None)
                for line in f:
                    if not any(n in line for n in needles):  # cheap: most lines are not
                        continue
                    parts = line.split()
                    remote_ip, _, remote_port = parts[2].partition(":")
                    # inode 0: TIME_WAIT, no process holds it any more
                    if (remote_port in wanted and parts[9] != "0"
                            and _hex_is_loopback(remote_ip)):
                        inodes[f"socket:[{parts[9]}]"] = int(remote_port, 16)
        return inodes


def _unix_peers(names: tuple[str, ...], paths: tuple[str, ...]) -> dict[str, int]:
    """``socket:[inode]`` -> 0 for the client end of every connection to a default Unix
    socket. /proc/net/unix names only the server's end; ``ss -x`` (sock_diag) also gives
    each end's peer inode, which is the client's."""
    try:
        proc = subprocess.run(["ss", "-xn"], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    peers = {}
    for line in proc.stdout.splitlines()[1:]:
        # Netid State Recv-Q Send-Q Local-Address Local-Inode Peer-Address Peer-Inode
        parts = line.split()
        if (len(parts) >= 8 and default_socket(parts[4], names, paths)
                and parts[7] not in ("0", "*")):
            peers[f"socket:[{parts[7]}]"] = 0
    return peers


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _hex_is_loopback(hex_ip: str) -> bool:
    """/proc/net/tcp addresses: 0100007F is 127.0.0.1; ::1 and ::ffff:127.x in tcp6."""
    if len(hex_ip) == 8:
        return hex_ip.endswith("7F")  # little-endian: the first octet is last
    return (hex_ip == "00000000000000000000000001000000"
            or (hex_ip.startswith("0000000000000000FFFF0000") and hex_ip.endswith("7F")))
