"""``stackmon healthcheck``: ask the running exporter's ``/-/healthy``, where it listens.

The image's HEALTHCHECK and compose run it. A health check process gets the container's
environment but not its command, so a listen address given as a flag
(``docker run stackmon --web.listen-address=127.0.0.1:9100``) is invisible to it. So it
reads the settings of the exporter it checks: the first ``stackmon`` process in the same
mount namespace (the same container; PID 1 unless ``--pid=host`` or an init runs first),
its arguments and its environment, loaded the way the exporter loads them (flags >
``STACKMON_*`` > ``--config.file``). Flags given to ``healthcheck`` itself replace that
search (``stackmon healthcheck --web.listen-address=10.0.0.5:9860``).

    $ stackmon healthcheck
    healthy: http://127.0.0.1:9100/-/healthy answered 200
    $ stackmon healthcheck; echo $?
    stackmon healthcheck: unhealthy: https://127.0.0.1:9860/-/healthy: connection refused
    1

A wildcard listen address (``:9860``, ``0.0.0.0``, ``[::]``) is asked on loopback. With
``tls_server_config`` in ``--web.config.file`` it asks over HTTPS without verifying the
certificate (it checks that its own process serves, on loopback, not who it is), and
presents the server's own certificate when the server requires client certificates.
``/-/healthy`` never needs basic auth. Exit codes are Docker's: 0 healthy, 1 unhealthy
(a settings error included: Docker reserves 2).
"""

from __future__ import annotations

import argparse
import http.client
import os
import ssl
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from exporter import settings

DEFAULT_TIMEOUT = 4.0  # the image's HEALTHCHECK gives 5 s
# Client certificate types that make the server ask for one (webconfig.CLIENT_AUTH).
REQUIRES_CLIENT_CERT = ("RequireAnyClientCert", "RequireAndVerifyClientCert")


@dataclass(frozen=True)
class Invocation:
    """How an exporter was started: its arguments (after the program) and environment."""

    args: list[str]
    env: dict[str, str]
    pid: int | None = None  # None: this process's own flags and environment


@dataclass(frozen=True)
class Target:
    """Where to ask: ``https://127.0.0.1:9860/-/healthy`` and the TLS client to use."""

    url: str
    host: str
    port: int
    tls: ssl.SSLContext | None


def exporter_args(cmdline: Sequence[str]) -> list[str] | None:
    """The exporter's own arguments in a process's argv, or None if it is no exporter.

    >>> exporter_args(["/usr/local/bin/python3", "/usr/local/bin/stackmon", "--no-collector.host"])
    ['--no-collector.host']
    >>> exporter_args(["python", "-m", "exporter", "--web.listen-address=:9100"])
    ['--web.listen-address=:9100']
    >>> exporter_args(["python", "/usr/local/bin/stackmon", "healthcheck"]) is None
    True
    """
    head = os.path.basename(cmdline[0]) if cmdline else ""
    if head == "stackmon":
        rest = list(cmdline[1:])
    elif head.startswith("python"):
        i = 1  # past the interpreter's own options (-u, -E, ...)
        while i < len(cmdline) and cmdline[i].startswith("-") and cmdline[i] != "-m":
            i += 1
        if i < len(cmdline) and os.path.basename(cmdline[i]) == "stackmon":
            rest = list(cmdline[i + 1:])
        elif cmdline[i:i + 2] == ["-m", "exporter"]:
            rest = list(cmdline[i + 2:])
        else:
            return None
    else:
        return None
    # A subcommand (healthcheck, check) is not the serving exporter.
    if rest and not rest[0].startswith("-"):
        return None
    return rest


def _read_nul_list(path: Path) -> list[str]:
    return [part.decode("utf-8", "surrogateescape")
            for part in path.read_bytes().split(b"\0") if part]


def find_exporter(proc: Path = Path("/proc")) -> Invocation | None:
    """The exporter serving in this mount namespace (container): PID 1 if it is one, else
    the only one. Processes we may not inspect (other users') are skipped; several
    candidates (a host running more than one) are a ConfigError: give the flags then."""
    try:
        own_ns = os.readlink(proc / "self" / "ns" / "mnt")
    except OSError:
        return None
    found: list[Invocation] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.readlink(entry / "ns" / "mnt") != own_ns:
                continue
            args = exporter_args(_read_nul_list(entry / "cmdline"))
            if args is None:
                continue
            env = dict(item.partition("=")[::2] for item in _read_nul_list(entry / "environ"))
        except OSError:  # gone, or not ours to read
            continue
        found.append(Invocation(args, env, int(entry.name)))
    found.sort(key=lambda inv: inv.pid or 0)
    if len(found) > 1 and found[0].pid != 1:
        pids = ", ".join(str(inv.pid) for inv in found)
        raise settings.ConfigError(
            f"several stackmon processes here (pids {pids}): give the one to check its "
            "flags, e.g. stackmon healthcheck --web.listen-address=127.0.0.1:9860")
    return found[0] if found else None


def target(listen_address: str, web_config_file: str | None) -> Target:
    """The URL of ``/-/healthy`` for these settings; raises ConfigError on a bad web config.

    >>> target(":9860", None).url
    'http://127.0.0.1:9860/-/healthy'
    >>> target("[::]:9100", None).url
    'http://[::1]:9100/-/healthy'
    >>> target("10.1.2.3:9860", None).url
    'http://10.1.2.3:9860/-/healthy'
    """
    host, port = settings.parse_listen_address(listen_address)
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    tls = _client_context(web_config_file) if web_config_file else None
    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if tls else "http"
    return Target(f"{scheme}://{shown}:{port}/-/healthy", host, port, tls)


def _client_context(path: str) -> ssl.SSLContext | None:
    raw = settings.read_yaml(path).get("tls_server_config")
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise settings.ConfigError(f"{path}: tls_server_config: expected a mapping")
    context = ssl.create_default_context()
    # It checks that its own exporter answers on loopback, not who that is: the server's
    # certificate names the host's public name, never 127.0.0.1.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if raw.get("client_auth_type") in REQUIRES_CLIENT_CERT:
        base = Path(path).resolve().parent
        cert, key = (base / str(raw.get(k, "")) for k in ("cert_file", "key_file"))
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError):
            raise settings.ConfigError(
                f"{path}: tls_server_config.cert_file: cannot be loaded as the health "
                "check's client certificate") from None
    return context


def ask(where: Target, timeout: float) -> tuple[bool, str]:
    """GET /-/healthy once: (healthy, one line saying what happened)."""
    conn: http.client.HTTPConnection
    if where.tls is not None:
        conn = http.client.HTTPSConnection(where.host, where.port, timeout=timeout,
                                           context=where.tls)
    else:
        conn = http.client.HTTPConnection(where.host, where.port, timeout=timeout)
    try:
        conn.request("GET", "/-/healthy", headers={"User-Agent": "stackmon-healthcheck"})
        status = conn.getresponse().status
    except ConnectionRefusedError:
        return False, f"{where.url}: connection refused"
    except TimeoutError:
        return False, f"{where.url}: no answer within {timeout:g} s"
    except ssl.SSLError as err:
        return False, f"{where.url}: TLS failed ({err.reason or err})"
    except (OSError, http.client.HTTPException) as err:
        return False, f"{where.url}: {type(err).__name__}: {err}"
    finally:
        conn.close()
    if status != 200:
        return False, f"{where.url} answered {status}"
    return True, f"{where.url} answered 200"


def main(argv: Sequence[str], env: Mapping[str, str], proc: Path = Path("/proc")) -> int:
    """``stackmon healthcheck [--timeout=SECONDS] [exporter flags]``: 0 healthy, else 1.
    Without exporter flags it checks the exporter it finds in ``proc``."""
    from exporter import cli  # the settings schema; imported here so cli can import us

    parser = argparse.ArgumentParser(
        prog="stackmon healthcheck", add_help=False,
        usage="stackmon healthcheck [--timeout=SECONDS] [exporter flags]",
        description="Ask /-/healthy of the exporter running here (its own flags, STACKMON_* "
                    "and config file), or where the given exporter flags say it listens; "
                    "exit 0 if it answers 200, else 1.")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds to wait for the answer (default: {DEFAULT_TIMEOUT:g})")
    if {"-h", "--help"} & set(argv):
        parser.print_help()
        return 0
    own, rest = parser.parse_known_args(list(argv))
    invocation = Invocation(rest, dict(env))
    try:
        if not rest:
            invocation = find_exporter(proc) or invocation
        cfg = cli.parse(invocation.args, invocation.env)
        where = target(cfg.web.listen_address, cfg.web.config_file)
    except settings.ConfigError as err:
        print(f"stackmon healthcheck: unhealthy: {settings.one_line(str(err))}", file=sys.stderr)
        return 1
    except SystemExit:  # cli.parse's argparse error: already printed as one line
        return 1
    healthy, line = ask(where, own.timeout)
    if healthy:
        print(f"healthy: {line}")
        return 0
    print(f"stackmon healthcheck: unhealthy: {line}", file=sys.stderr)
    return 1
