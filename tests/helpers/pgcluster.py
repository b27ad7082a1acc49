"""Throw-away PostgreSQL clusters (initdb/pg_ctl) on free loopback ports, for tests.

They run as the ``postgres`` OS user (initdb refuses root) in temp dirs owned by it.
The session's own server (tests/helpers/backends.py) is one of these; fault tests start,
stop, restart and SIGSTOP further ones. The machine's server on 5432 is never used.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import psycopg

from tests.helpers.exporter import Exporter, Samples, free_port, wait_for


def _default_pg_bin() -> str:
    """The newest installed server's binaries (Debian: /usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    return str(found[-1].parent) if found else "/usr/lib/postgresql/15/bin"


PG_BIN = Path(os.environ.get("STACKMON_PG_BIN") or _default_pg_bin())
PG_USER = "postgres"


def _as_postgres(cmd: Sequence[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *cmd]
    return list(cmd)


def run_pg(cmd: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return proc


def make_owned_tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PG_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


class Cluster:
    """One cluster: ``datadir`` in its own temp dir, socket in the same dir."""

    def __init__(self, root: Path, datadir: Path, port: int, options: Sequence[str],
                 bin_dir: Path = PG_BIN) -> None:
        self.root = root
        self.bin_dir = bin_dir
        self.datadir = datadir
        self.port = port
        self.options = list(options)

    @classmethod
    def create(cls, options: Sequence[str] = (), hba_lines: Sequence[str] = (),
               bin_dir: Path = PG_BIN, port: int | None = None) -> Cluster:
        """``bin_dir`` picks the server version (another major's initdb/pg_ctl/postgres)."""
        root = make_owned_tempdir("stackmon-pg-")
        datadir = root / "data"
        run_pg([str(bin_dir / "initdb"), "-D", str(datadir), "-U", "postgres", "--auth=trust",
                "-E", "UTF8", "--no-sync"])
        if hba_lines:
            hba = datadir / "pg_hba.conf"
            hba.write_text("\n".join(hba_lines) + "\n" + hba.read_text())
        cluster = cls(root, datadir, port or free_port(), options, bin_dir)
        cluster.start()
        return cluster

    def standby(self, slot: str, name: str) -> Cluster:
        """A streaming standby of this cluster built with pg_basebackup, started."""
        root = make_owned_tempdir("stackmon-pg-standby-")
        datadir = root / "data"
        run_pg([str(self.bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port),
                "-U", "postgres", "-D", str(datadir), "-R", "-X", "stream", "-C", "-S", slot,
                "--checkpoint=fast",
                "--no-sync"])
        standby = Cluster(root, datadir, free_port(), [f"-c cluster_name={name}"],
                          self.bin_dir)
        standby.start()
        return standby

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def connect(self, dbname: str = "postgres", **kw: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}",
                               autocommit=True, **kw)

    def start(self) -> None:
        opts = " ".join([f"-p {self.port}", f"-k {self.root}", "-c listen_addresses=127.0.0.1",
                         "-c fsync=off", "-c shared_buffers=16MB", *self.options])
        run_pg([str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "-l",
                str(self.root / "server.log"), "-o", opts, "-w", "-t", "60", "start"])

    def stop(self) -> None:
        run_pg([str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w",
                "stop"])

    def running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def pids(self) -> list[int]:
        """The postmaster and all of its children."""
        pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
        parent = psutil.Process(pid)
        return [pid, *(c.pid for c in parent.children(recursive=True))]

    def signal_all(self, sig: signal.Signals) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def sql(self, query: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        with self.connect(dbname) as conn:
            cur = conn.execute(query)
            return list(cur.fetchall()) if cur.description else []

    def destroy(self) -> None:
        if self.running():
            try:
                self.signal_all(signal.SIGCONT)
                self.stop()
            except (RuntimeError, OSError, psutil.Error):
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def wait_ready(cluster: Cluster, timeout: float = 30) -> None:
    def ok() -> bool:
        with cluster.connect(connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    wait_for(ok, timeout=timeout, what=f"PostgreSQL on port {cluster.port}")


def wait_streaming(primary: Cluster) -> None:
    """Until a standby streams from ``primary``."""
    wait_for(lambda: primary.sql("SELECT 1 FROM pg_stat_replication WHERE state = "
                                 "'streaming'"), timeout=30, what="standby streaming")


def scrape_with_replay_lag(exporter: Exporter, primary: Cluster, standby_name: str) -> Samples:
    """Write WAL on ``primary`` until ``exporter`` shows the standby's replay lag."""
    def lagging() -> Samples | None:
        primary.sql("CREATE TABLE IF NOT EXISTS wal_maker (x int)")
        primary.sql("INSERT INTO wal_maker SELECT generate_series(1, 1000)")
        s = exporter.scrape()
        return s if s.has("pg_stat_replication_replay_lag_seconds",
                          application_name=standby_name) else None
    result: Samples = wait_for(lagging, timeout=30,
                               what="replay lag of the standby on the primary")
    return result
