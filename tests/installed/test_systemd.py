"""The shipped systemd unit, installed as the README says, under a real systemd (issue 20).

A Debian 12 root (cached by tests/helpers/roots.py) is booted with ``systemd-nspawn -b
--private-network``: systemd is PID 1 and the container has only its own loopback, so
nothing in it can reach a server of the machine. What runs in it comes from the files a
user reads, never from this file:

* the README's Install block, line by line: the lines that need no running systemd
  (apt-get, venv, pip install, install -m) in the root before it boots, with the
  machine's network and the worktree's files (uncommitted changes included) as the
  clone; the ``systemctl`` line once systemd runs;
* the credential drop-in, the password files and the ``*_PASSWORD_FILE`` lines from
  docs/deployment.md; the PostgreSQL role from docs/security.md, the Redis ACL user from
  docs/redis.md.

Differences from a real host, and why:

* nspawn's own seccomp filter refuses the @clock calls to a container without
  CAP_SYS_TIME; it is told to let ``adjtimex`` and ``clock_adjtime`` through, so the
  unit's own filter is what decides (a host has no such outer filter). The container
  still has no CAP_SYS_TIME: nothing in it can change the machine's clock.
* The container's ``/`` is an overlayfs (the cached root below a throwaway layer), a type
  the filesystem collector skips by default like node_exporter; the read-only test
  includes it with the documented setting.
* PostgreSQL and Redis run in the container on 15432 and 16379 (not their default
  ports), with passwords; the machine's servers are never involved.

Cost: ~70 s once to build the root (cold cache); then per run ~10-20 s to install
(apt-get update, pip taking wheels from a wheelhouse under /var/cache/stackmon-tests,
see ``keep_wheels``), ~1 s to boot, ~25 s of tests: ~40 s in all on a quiet machine.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.collectors.host.settings import FS_TYPES_EXCLUDE
from tests.helpers import logfmt, nspawn, roots
from tests.helpers.exporter import REPO, Samples, wait_for

pytestmark = pytest.mark.timeout(600)  # the first test builds the root on a cold cache

README = REPO / "README.md"
DEPLOYMENT = REPO / "docs" / "deployment.md"
SECURITY = REPO / "docs" / "security.md"
REDIS_DOC = REPO / "docs" / "redis.md"
UNIT = REPO / "contrib" / "systemd" / "stackmon.service"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "curl",
            "ca-certificates", "postgresql", "redis-server")
WHEELS = roots.CACHE / "wheels"  # see keep_wheels()
CLONE = "/root/stackmon"  # where the "clone of this repository" is
CLOCK_READS = ("adjtimex", "clock_adjtime")
PG_PORT, REDIS_PORT = 15432, 16379
# Host sub-collectors allowed to report 0 in the container, with the reason. None now:
# every source the collectors read exists under nspawn.
NOT_IN_A_CONTAINER: dict[str, str] = {}
BAD_LINE = re.compile(r"level=(warn|warning|error|critical)\b|Traceback", re.I)


# --- what the user reads ---------------------------------------------------------------

def fenced_blocks(markdown: str) -> list[tuple[str, str, str]]:
    """(info string, body, the text before the fence) of every fenced code block.

    >>> fenced_blocks("a\\n\\n```sh\\nx\\n```\\n")
    [('sh', 'x\\n', 'a\\n\\n')]
    """
    out = []
    for m in re.finditer(r"^ *```(\w*)\n(.*?)^ *```$", markdown, re.M | re.S):
        out.append((m[1], m[2], markdown[:m.start()]))
    return out


def install_lines() -> tuple[list[str], list[str]]:
    """The README's Install block: (lines before boot, lines that need systemd)."""
    text = README.read_text()
    section = text[text.index("\n## Install\n"):]
    section = section[:section.index("\n## ", 5)]
    blocks = [body for info, body, _ in fenced_blocks(section) if info == "sh"]
    assert len(blocks) == 1, "README's Install section should have one sh block"
    lines = [line for line in blocks[0].splitlines() if line.strip()]
    offline = [line for line in lines if "systemctl" not in line]
    online = [line for line in lines if "systemctl" in line]
    assert offline and online, lines
    return offline, online


@dataclass
class Credentials:
    """docs/deployment.md's credential setup."""

    files: list[str]            # the shell lines that make the root-only password files
    drop_in_path: str           # /etc/systemd/system/stackmon.service.d/credentials.conf
    drop_in: str                # its text: [Service] + LoadCredential= lines
    sources: dict[str, str]     # credential name -> the root-only file it is copied from
    env: dict[str, str]         # STACKMON_*_PASSWORD_FILE=/run/credentials/...


def credential_setup() -> Credentials:
    blocks = fenced_blocks(DEPLOYMENT.read_text())
    drop_ins = [(body, before) for info, body, before in blocks if "LoadCredential=" in body
                and body.startswith("[Service]")]
    assert len(drop_ins) == 1, "docs/deployment.md: one [Service] block with LoadCredential="
    body, before = drop_ins[0]
    path = re.findall(r"`(/etc/systemd/system/stackmon\.service\.d/[\w.-]+\.conf)`", before)
    env_blocks = [b for _, b, _ in blocks if "STACKMON_POSTGRES_PASSWORD_FILE=" in b
                  and "STACKMON_REDIS_PASSWORD_FILE=" in b]
    assert path and len(env_blocks) == 1, "docs/deployment.md: the drop-in's path, the settings"
    files = [b for info, b, _ in blocks if info == "sh" and "_password" in b
             and "/dev/null /etc/stackmon/" in b]
    assert len(files) == 1, "docs/deployment.md: one block making the password files"
    return Credentials(
        files=files[0].splitlines(), drop_in_path=path[-1], drop_in=body,
        sources=dict(re.findall(r"^LoadCredential=(\w+):(\S+)$", body, re.M)),
        env=dict(line.split("=", 1) for line in env_blocks[0].splitlines() if "=" in line))


def env_file() -> str:
    """Where the unit reads its settings (``EnvironmentFile=-/etc/stackmon/stackmon.env``)."""
    found = re.findall(r"^EnvironmentFile=-?(\S+)$", UNIT.read_text(), re.M)
    assert len(found) == 1, found
    return str(found[0])


def drop_in_dir() -> str:
    return str(Path(credential_setup().drop_in_path).parent)


def monitoring_role_sql(password: str) -> str:
    """docs/security.md's PostgreSQL role, with ``password``."""
    block = [b for _, b, _ in fenced_blocks(SECURITY.read_text()) if "pg_monitor" in b]
    return block[0].replace("'...'", f"'{password}'")


def redis_acl(password: str) -> list[str]:
    """docs/redis.md's ``ACL SETUSER`` line (security.md points there), as arguments."""
    lines = [line for _, b, _ in fenced_blocks(REDIS_DOC.read_text())
             for line in b.splitlines() if line.startswith("ACL SETUSER stackmon ")]
    assert len(lines) == 1, lines
    return lines[0].replace(">CHANGE-ME", f">{password}").split()


# --- the container ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[nspawn.Booted]:
    """The root, installed per README, booted, with ``systemctl enable --now stackmon`` run."""
    reason = nspawn.skip_reason()
    if reason is not None:
        pytest.skip(f"systemd-nspawn tests: {reason}")
    root = roots.debian_root("systemd", PACKAGES)
    offline, online = install_lines()
    WHEELS.mkdir(parents=True, exist_ok=True)
    logs = tmp_path_factory.mktemp("systemd")
    with roots.Overlay(root) as tree:
        nspawn.copy_files(REPO, tree / CLONE.lstrip("/"))
        proc = nspawn.run_offline(tree, "set -e\n" + "\n".join(offline), chdir=CLONE,
                                  binds=[f"{WHEELS}:/wheels:norbind"],
                                  env={"PIP_FIND_LINKS": "/wheels"})
        assert proc.returncode == 0, f"README install:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        keep_wheels(tree, logs)
        with nspawn.Booted(tree, logs / "console.log", syscalls=CLOCK_READS) as booted:
            for line in online:
                booted.sh(f"cd {CLONE} && {line}")
            yield booted
    assert str(tree) not in Path("/proc/self/mounts").read_text(), "overlay still mounted"


def keep_wheels(tree: Path, scratch: Path) -> None:
    """Add the wheels of what pip just installed to the wheelhouse, if missing.

    PyPI's answers come through a proxy that makes them uncachable for pip, and the
    downloads were half of the install's time; with the wheelhouse as ``PIP_FIND_LINKS``
    pip takes the same files from disk (the resolver still asks PyPI, so a new release is
    still picked up). Files are moved in whole: a concurrent suite never sees half of one.
    """
    have = {wheel_key(p.name) for p in WHEELS.glob("*.whl")}
    installed = {(canonical(m[1]), m[2]) for p in tree.glob("opt/stackmon/lib/python3*/"
                                                          "site-packages/*.dist-info")
                 if (m := re.fullmatch(r"(.+)-([^-]+)\.dist-info", p.name))}
    missing = sorted(f"{name}=={version}" for name, version in installed - have
                     if name not in ("stackmon", "pip", "setuptools"))
    if not any(name == "setuptools" for name, _ in have):
        missing.append("setuptools")  # what `pip install .` builds with
    if not missing:
        return
    new = scratch / "wheels"
    new.mkdir()
    proc = nspawn.run_offline(tree, f"/opt/stackmon/bin/pip download -q --no-deps -d /new "
                                    f"{' '.join(missing)}", binds=[f"{new}:/new"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for wheel in new.glob("*.whl"):
        shutil.move(wheel, WHEELS / wheel.name)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_key(filename: str) -> tuple[str, str]:
    """(project, version) of a wheel's file name.

    >>> wheel_key("psycopg_binary-3.3.9-cp311-cp311-manylinux_2_28_x86_64.whl")
    ('psycopg-binary', '3.3.9')
    """
    name, version = filename.split("-")[:2]
    return canonical(name), version


def show(box: nspawn.Booted, *props: str) -> dict[str, str]:
    out = box.run("systemctl", "show", "stackmon", *(f"--property={p}" for p in props)).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def scrape(box: nspawn.Booted) -> Samples:
    proc = box.run("curl", "-sS", "--fail", "--max-time", "20",
                   "http://127.0.0.1:9860/metrics", check=False)
    assert proc.returncode == 0, f"scrape failed: {proc.stderr.strip()}; {status(box)}"
    return Samples.parse(proc.stdout)


def serving(box: nspawn.Booted) -> bool:
    return box.run("curl", "-sf", "--max-time", "2", "http://127.0.0.1:9860/-/healthy",
                   check=False).returncode == 0


def wait_serving(box: nspawn.Booted, timeout: float = 20) -> None:
    wait_for(lambda: serving(box), timeout=timeout, interval=0.1,
             what=f"stackmon to serve ({status(box)})")


def status(box: nspawn.Booted) -> str:
    return box.run("systemctl", "status", "stackmon", "--no-pager", "-l", "-n", "5",
                   check=False).stdout


def cursor(box: nspawn.Booted) -> str:
    """Where the journal ends now: ``journal(box, since=cursor(box))`` shows what follows."""
    out = box.run("journalctl", "-n", "1", "--show-cursor", "-q", "-o", "cat").stdout
    return out.rsplit("-- cursor: ", 1)[1].strip()


def journal(box: nspawn.Booted, since: str = "", own: bool = False) -> list[str]:
    """The unit's journal lines (stackmon's own and systemd's about it, or with ``own``
    only stackmon's), after ``since``.

    Filtered here, not with ``-u``: journalctl 252 with ``-u`` and ``--after-cursor``
    together skips entries (seen: an error line of stackmon missing from its output).
    """
    args = ["journalctl", "-o", "json", "--output-fields=MESSAGE,_SYSTEMD_UNIT,UNIT",
            "--no-pager", "-q"]
    if since:
        args.append(f"--after-cursor={since}")
    lines = []
    for entry in map(json.loads, box.run(*args).stdout.splitlines()):
        if entry.get("_SYSTEMD_UNIT") == "stackmon.service" or (
                not own and entry.get("UNIT") == "stackmon.service"):
            message = entry.get("MESSAGE")
            # journald stores a message with bytes outside UTF-8 as a list of ints
            lines.append(bytes(message).decode(errors="replace")
                         if isinstance(message, list) else str(message))
    return lines


def restart(box: nspawn.Booted) -> None:
    box.run("systemctl", "daemon-reload")
    box.run("systemctl", "reset-failed", "stackmon", check=False)
    box.run("systemctl", "restart", "stackmon")


@pytest.fixture
def service(box: nspawn.Booted) -> nspawn.Booted:
    """The unit as installed: no drop-in, an empty stackmon.env (as docs/deployment.md's
    install makes it), started afresh and serving."""
    box.run("rm", "-rf", drop_in_dir())
    box.run("install", "-d", "-m", "0750", str(Path(env_file()).parent))
    box.run("install", "-m", "0600", "/dev/null", env_file())
    restart(box)
    wait_serving(box)
    return box


def settings(box: nspawn.Booted, **env: str) -> None:
    box.write(env_file(), "".join(f"{k}={v}\n" for k, v in env.items()), mode=0o600)


def drop_in(box: nspawn.Booted, name: str, text: str) -> None:
    box.write(f"{drop_in_dir()}/{name}", text)


# --- the tests -------------------------------------------------------------------------

def test_enable_now_serves_every_host_collector(box: nspawn.Booted) -> None:
    """The README's lines as they are: 3 scrapes, every host sub-collector, no restart."""
    wait_serving(box)
    main_pid = show(box, "MainPID")["MainPID"]
    for _ in range(3):
        metrics = scrape(box)
        assert metrics.get("stackmon_scrape_collector_success", collector="host") == 1
        failed = {lbl["collector"] for lbl, v in
                  metrics.samples["node_scrape_collector_success"] if v != 1}
        assert failed == set(NOT_IN_A_CONTAINER), failed
    assert len(metrics.samples["node_scrape_collector_success"]) >= 20
    # node-mixin's clock alerts read these three (ProtectClock=no, docs/deployment.md)
    for name in ("node_timex_offset_seconds", "node_timex_sync_status",
                 "node_timex_maxerror_seconds"):
        assert metrics.has(name), name
    state = show(box, "ActiveState", "NRestarts", "MainPID")
    assert state == {"ActiveState": "active", "NRestarts": "0", "MainPID": main_pid}
    assert not [line for line in journal(box) if BAD_LINE.search(line)], journal(box)


def test_the_service_cannot_change_the_clock(box: nspawn.Booted) -> None:
    """Why ProtectClock=no gives nothing away: no capability can come back, so the kernel
    refuses any adjtimex that changes the clock (CAP_SYS_TIME)."""
    wait_serving(box)
    pid = show(box, "MainPID")["MainPID"]
    fields = dict(line.split(":\t", 1) for line in
                  box.run("cat", f"/proc/{pid}/status").stdout.splitlines() if ":\t" in line)
    assert int(fields["CapBnd"], 16) == 0, fields["CapBnd"]
    assert int(fields["CapEff"], 16) == 0, fields["CapEff"]
    assert fields["NoNewPrivs"].strip() == "1"


def test_root_filesystem_is_read_write(service: nspawn.Booted) -> None:
    """``/`` is read-write on the host; ProtectSystem=strict only makes it read-only in the
    service's own view, which must not leak into node_filesystem_readonly."""
    assert "|overlay" in FS_TYPES_EXCLUDE
    settings(service, STACKMON_HOST_FILESYSTEM_FS_TYPES_EXCLUDE="'"
             + FS_TYPES_EXCLUDE.replace("|overlay", "") + "'")
    restart(service)
    wait_serving(service)
    metrics = scrape(service)
    assert metrics.get("node_filesystem_readonly", mountpoint="/") == 0
    # and the root really is writable there
    service.run("touch", "/stackmon-rw-check")


def test_back_within_10s_after_kill_9(service: nspawn.Booted) -> None:
    before = show(service, "MainPID", "NRestarts")
    start = time.monotonic()
    service.sh(f"kill -9 {before['MainPID']}")

    def back() -> bool:
        now = show(service, "MainPID", "ActiveState")
        return (now["ActiveState"] == "active" and now["MainPID"] not in ("0", before["MainPID"])
                and serving(service))

    wait_for(back, timeout=10, interval=0.1, what="stackmon back after kill -9")
    assert time.monotonic() - start < 10
    assert int(show(service, "NRestarts")["NRestarts"]) == int(before["NRestarts"]) + 1
    assert scrape(service).get("stackmon_scrape_collector_success", collector="host") == 1


def test_bad_setting_ends_failed_with_one_line(service: nspawn.Booted) -> None:
    """Exit code 2 is a configuration error: no restart every 5 s, ``failed`` at once."""
    since = cursor(service)
    settings(service, STACKMON_SCRAPE_TIMEOUT_SECONDS="soon")
    service.run("systemctl", "restart", "stackmon")
    wait_for(lambda: show(service, "ActiveState")["ActiveState"] == "failed", timeout=15,
             interval=0.2, what=f"the unit to end failed ({status(service)})")
    state = show(service, "NRestarts", "ExecMainStatus", "Result")
    assert state == {"NRestarts": "0", "ExecMainStatus": "2", "Result": "exit-code"}
    assert "stackmon.service" in service.run("systemctl", "--failed", "--plain").stdout
    lines = wait_for(lambda: [line for line in journal(service, since)
                              if line.startswith("stackmon: error:")],
                     timeout=10, what="the error line in the journal")
    assert lines == ['stackmon: error: environment STACKMON_SCRAPE_TIMEOUT_SECONDS: '
                     'scrape.timeout_seconds: got "soon", expected a number'], lines


def test_filtered_call_fails_only_its_subcollector(service: nspawn.Booted) -> None:
    """A call the filter refuses (here the clock reads, taken away by a drop-in) is EPERM
    for the collector that made it, never SIGSYS for the process."""
    drop_in(service, "test-deny-clock.conf",
            f"[Service]\nSystemCallFilter=~{' '.join(CLOCK_READS)}\n")
    since = cursor(service)
    restart(service)
    wait_serving(service)
    main_pid = show(service, "MainPID")["MainPID"]
    for _ in range(3):
        metrics = scrape(service)
        assert metrics.get("node_scrape_collector_success", collector="timex") == 0
        assert metrics.get("node_scrape_collector_success", collector="meminfo") == 1
        assert metrics.get("stackmon_scrape_collector_success", collector="host") == 1
        assert not metrics.has("node_timex_sync_status")
    assert show(service, "MainPID", "NRestarts") == {"MainPID": main_pid, "NRestarts": "0"}
    timex = [line for line in journal(service, since, own=True) if "timex" in line]
    assert len(timex) == 1, timex
    record = logfmt.check_record(timex[0])
    assert record["level"] == "warning" and "seccomp" in record["err"], record


# --- passwords as credentials ----------------------------------------------------------

@pytest.fixture(scope="module")
def servers(box: nspawn.Booted) -> dict[str, str]:
    """PostgreSQL and Redis inside the container, with passwords; the URLs stackmon uses."""
    pg_password, redis_password = secrets.token_hex(12), secrets.token_hex(12)
    version = box.run("ls", "/usr/lib/postgresql").stdout.split()[-1]  # 15 on bookworm
    box.run("pg_createcluster", "-p", str(PG_PORT), version, "main", "--start", "--",
            "--no-sync", timeout=120)
    box.run("runuser", "-u", "postgres", "--", "psql", "-p", str(PG_PORT), "-X", "-q",
            "-v", "ON_ERROR_STOP=1", input=monitoring_role_sql(pg_password))
    admin = secrets.token_hex(12)
    box.write("/etc/redis/stackmon-test.conf",
              f"port {REDIS_PORT}\nbind 127.0.0.1\nsave \"\"\nappendonly no\n"
              f"user default off\nuser admin on >{admin} ~* &* +@all\n", 0o640)
    box.run("chgrp", "redis", "/etc/redis/stackmon-test.conf")
    box.run("systemd-run", "--unit=stackmon-test-redis", "--property=User=redis",
            "redis-server", "/etc/redis/stackmon-test.conf")
    cli = ("redis-cli", "-p", str(REDIS_PORT), "--no-auth-warning", "--user", "admin",
           "--pass", admin)
    wait_for(lambda: box.run(*cli, "ping", check=False).stdout.strip() == "PONG",
             what="the container's Redis")
    # the least-privileged user the docs give, not one that may do everything
    assert box.run(*cli, *redis_acl(redis_password)).stdout.strip() == "OK"
    return {"pg_password": pg_password, "redis_password": redis_password,
            "STACKMON_POSTGRES_DSN": f"postgresql://stackmon@127.0.0.1:{PG_PORT}/postgres",
            "STACKMON_REDIS_URL": f"redis://stackmon@127.0.0.1:{REDIS_PORT}"}


def with_credentials(box: nspawn.Booted, servers: dict[str, str]) -> Credentials:
    """docs/deployment.md's credential setup, verbatim, with the test servers' addresses
    and passwords; restarted and serving."""
    setup = credential_setup()
    for line in setup.files:
        box.sh(line)
    for name, password in (("postgres_password", servers["pg_password"]),
                           ("redis_password", servers["redis_password"])):
        # "then write the password into it": into the file those lines made, mode kept
        box.sh(f"cat > {setup.sources[name]}", input=password + "\n")
        assert box.run("stat", "-c", "%a %U", setup.sources[name]).stdout.split() == [
            "600", "root"]
    box.write(setup.drop_in_path, setup.drop_in)
    settings(box, STACKMON_POSTGRES_DSN=servers["STACKMON_POSTGRES_DSN"],
             STACKMON_REDIS_URL=servers["STACKMON_REDIS_URL"], **setup.env)
    restart(box)
    wait_serving(box)
    return setup


def backends_up(box: nspawn.Booted) -> tuple[float, float]:
    metrics = scrape(box)
    return metrics.get("pg_up"), metrics.get("redis_up")


def test_passwords_as_credentials(service: nspawn.Booted, servers: dict[str, str]) -> None:
    since = cursor(service)
    with_credentials(service, servers)
    up = wait_for(lambda: backends_up(service) == (1, 1) and scrape(service), timeout=20,
                  what="pg_up 1 and redis_up 1")
    for collector in ("host", "postgres", "redis"):
        assert up.get("stackmon_scrape_collector_success", collector=collector) == 1, collector
    log = "\n".join(journal(service, since))
    assert servers["pg_password"] not in log and servers["redis_password"] not in log
    assert not BAD_LINE.search(log), log


def test_rotated_password_needs_a_restart(service: nspawn.Booted,
                                          servers: dict[str, str]) -> None:
    """What docs/deployment.md says: a credential is a copy made at start."""
    setup = with_credentials(service, servers)
    wait_for(lambda: backends_up(service)[0] == 1, timeout=20, what="pg_up 1")
    since = cursor(service)
    new = secrets.token_hex(12)
    service.run("runuser", "-u", "postgres", "--", "psql", "-p", str(PG_PORT), "-X", "-q",
                "-v", "ON_ERROR_STOP=1",
                input=f"ALTER ROLE stackmon PASSWORD '{new}';\n"
                      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE usename = 'stackmon';\n")
    service.sh(f"cat > {setup.sources['postgres_password']}", input=new + "\n")
    servers["pg_password"] = new

    def refused() -> bool:  # stackmon connects on scrape: every reconnect uses the copy
        return backends_up(service)[0] == 0 and any(
            "collector=postgres" in line and "password authentication failed" in line
            for line in journal(service, since))

    try:
        wait_for(refused, timeout=20, interval=0.5, what="a refused reconnect")
    except AssertionError as err:
        raise AssertionError(f"{err}\n" + "\n".join(journal(service, since)) + "\n"
                             + "\n".join(journal(service)[-10:])) from None
    copy = service.run("cat", setup.env["STACKMON_POSTGRES_PASSWORD_FILE"]).stdout
    assert copy.strip() != new
    service.run("systemctl", "restart", "stackmon")
    wait_serving(service)
    wait_for(lambda: backends_up(service)[0] == 1, timeout=20, what="pg_up 1 after restart")


def test_missing_load_credential_is_named(service: nspawn.Booted,
                                          servers: dict[str, str]) -> None:
    """The settings without the drop-in: one line naming the LoadCredential= line."""
    setup = credential_setup()
    since = cursor(service)
    settings(service, STACKMON_POSTGRES_DSN=servers["STACKMON_POSTGRES_DSN"],
             STACKMON_POSTGRES_PASSWORD_FILE=setup.env["STACKMON_POSTGRES_PASSWORD_FILE"])
    service.run("systemctl", "restart", "stackmon")
    wait_for(lambda: show(service, "ActiveState")["ActiveState"] == "failed", timeout=15,
             interval=0.2, what=f"the unit to end failed ({status(service)})")
    lines = wait_for(lambda: [line for line in journal(service, since)
                              if line.startswith("stackmon: error:")],
                     timeout=10, what="the error line in the journal")
    assert len(lines) == 1, lines
    assert "LoadCredential=postgres_password:" in lines[0], lines


def test_every_log_line_is_logfmt(box: nspawn.Booted) -> None:
    """Everything stackmon wrote to the journal in this module's runs (starts, stops,
    refused calls, failed logins, config errors) is one strict logfmt record a line."""
    lines = journal(box, own=True)
    assert len(lines) > 20, lines
    assert logfmt.bad_lines("\n".join(lines)) == []
