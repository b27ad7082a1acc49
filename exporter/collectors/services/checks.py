"""The checks themselves: one HTTP(S) GET, one TCP connect or one nginx stub_status
read, each bounded by its deadline, returning a CheckResult (never raising), e.g.
``check_tcp(check, deadline)`` -> ``CheckResult(up=True, duration=0.0004, ...)``.

The services collector (collector.py) runs them in parallel and turns results into
families.
"""

from __future__ import annotations

import base64
import calendar
import http.client
import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from exporter import __version__
from exporter.collectors.services.settings import ServiceCheck, parse_host_port

log = logging.getLogger("stackmon.collectors.services")

USER_AGENT = f"stackmon/{__version__}"
# Bodies are read up to this size (for body_regex and stub_status); the rest is dropped.
MAX_BODY_BYTES = 1 << 20
READ_CHUNK = 64 * 1024
VERSION_MAX_LEN = 64
NGINX_VERSION_HEADER = "Server"
# nginx's ngx_http_stub_status_module output.
STUB_STATUS = re.compile(
    r"Active connections:\s*(?P<active>\d+)\s+"
    r"server accepts handled requests\s+(?P<accepted>\d+)\s+(?P<handled>\d+)\s+"
    r"(?P<requests>\d+)\s+"
    r"Reading:\s*(?P<reading>\d+)\s+Writing:\s*(?P<writing>\d+)\s+Waiting:\s*(?P<waiting>\d+)")
# Bounded failure reasons, used in log lines only (never as label values).
REASONS = ("timeout", "refused", "dns", "tls_verify", "tls", "network", "protocol",
           "status", "body", "stub_status", "busy", "deadline", "error")


@dataclass
class StubStatus:
    active: int
    accepted: int
    handled: int
    requests: int
    reading: int
    writing: int
    waiting: int


@dataclass
class CheckResult:
    """What one check found in one scrape."""

    up: bool
    duration: float | None = None
    reason: str = ""
    status_code: int = 0  # 0: no HTTP response (as blackbox_exporter's probe_http_status_code)
    cert_expiry: float | None = None
    version: str | None = None
    stub: StubStatus | None = None


class CheckFailed(Exception):
    """A check's target did not answer as expected; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------------------
# Helpers


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise CheckFailed("timeout")
    return left


def classify(err: BaseException) -> str:
    """Map an exception to a bounded reason."""
    if isinstance(err, CheckFailed):
        return err.reason
    if isinstance(err, TimeoutError):
        return "timeout"
    if isinstance(err, ConnectionRefusedError):
        return "refused"
    if isinstance(err, socket.gaierror):
        return "dns"
    if isinstance(err, ssl.SSLCertVerificationError):
        return "tls_verify"
    if isinstance(err, ssl.SSLError):
        return "tls"
    if isinstance(err, http.client.HTTPException):
        return "protocol"
    if isinstance(err, OSError):
        return "network"
    return "error"


def _der_item(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER item at ``pos``."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def cert_not_after(der: bytes) -> float:
    """The notAfter time (Unix seconds) of a DER X.509 certificate.

    Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
    serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... } }
    """
    _, cert, _ = _der_item(der, 0)
    _, pos, _ = _der_item(der, cert)
    tag, _, end = _der_item(der, pos)
    if tag == 0xA0:  # explicit version
        pos = end
    for _skip in range(3):  # serialNumber, signature, issuer
        _, _, pos = _der_item(der, pos)
    _, validity, _ = _der_item(der, pos)
    _, _, after = _der_item(der, validity)  # skip notBefore
    tag, start, end = _der_item(der, after)
    text = der[start:end].decode("ascii").rstrip("Z")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSS
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSS
        raise ValueError("unexpected time type in certificate")
    parsed = time.strptime(text[:14], "%Y%m%d%H%M%S")
    return float(calendar.timegm(parsed))


def parse_stub_status(body: str) -> StubStatus:
    match = STUB_STATUS.search(body)
    if match is None:
        raise CheckFailed("stub_status", "response is not nginx stub_status output")
    return StubStatus(**{k: int(v) for k, v in match.groupdict().items()})


def clean_version(value: str | None, nginx_server: bool) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if nginx_server:
        # "nginx/1.22.1" -> "1.22.1"; plain "nginx" (server_tokens off) -> no version.
        _, sep, value = value.partition("/")
        if not sep:
            return None
        value = value.split()[0] if value.split() else ""
    return value[:VERSION_MAX_LEN] or None


def log_target(check: ServiceCheck) -> str:
    """The check's address for log lines, without a query string (it may hold a token)."""
    if check.url:
        parts = urlsplit(check.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"
    return check.address or ""


def ssl_context_for(check: ServiceCheck) -> ssl.SSLContext | None:
    if not check.url or urlsplit(check.url).scheme != "https":
        return None
    context = ssl.create_default_context()
    if not check.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def auth_header(check: ServiceCheck) -> str | None:
    if check.bearer_token:
        return f"Bearer {check.bearer_token}"
    if check.basic_auth_user is not None:
        raw = f"{check.basic_auth_user}:{check.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")
    return None


# ---------------------------------------------------------------------------
# The checks


def check_tcp(check: ServiceCheck, deadline: float) -> CheckResult:
    """Connect to host:port and close again."""
    assert check.address is not None
    host, port = parse_host_port(check.address)
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=_remaining(deadline)):
        pass
    return CheckResult(up=True, duration=time.monotonic() - start)


def check_http(check: ServiceCheck, deadline: float,
               context: ssl.SSLContext | None) -> CheckResult:
    """GET the URL; up when the status (and body regex) are as expected.

    Never raises: a failure sets ``reason`` (one of REASONS) and keeps whatever was
    learnt before it (``status_code``, ``cert_expiry``, ``version``), so a 500 still
    reports its status code and a wrong body its certificate expiry.
    """
    assert check.url is not None
    parts = urlsplit(check.url)
    host = parts.hostname or ""
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    start = time.monotonic()
    conn: http.client.HTTPConnection
    if context is not None:
        conn = http.client.HTTPSConnection(host, parts.port, timeout=_remaining(deadline),
                                           context=context)
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=_remaining(deadline))
    result = CheckResult(up=False)
    try:
        conn.connect()
        sock = conn.sock
        if isinstance(sock, ssl.SSLSocket):
            der = sock.getpeercert(binary_form=True)
            if der:
                try:
                    result.cert_expiry = cert_not_after(der)
                except (ValueError, IndexError, UnicodeDecodeError):
                    log.debug('collector=services service=%s msg="cannot read certificate '
                              'expiry"', check.name)
        headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"}
        auth = auth_header(check)
        if auth is not None:
            headers["Authorization"] = auth
        sock.settimeout(_remaining(deadline))
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        result.status_code = response.status
        is_nginx = check.type == "nginx"
        header = check.version_header or (NGINX_VERSION_HEADER if is_nginx else None)
        if header is not None:
            result.version = clean_version(response.getheader(header),
                                            is_nginx and check.version_header is None)
        body = bytearray()
        while len(body) < MAX_BODY_BYTES and not response.isclosed():
            sock.settimeout(_remaining(deadline))
            chunk = response.read(min(READ_CHUNK, MAX_BODY_BYTES - len(body)))
            if not chunk:
                break
            body.extend(chunk)
        result.duration = time.monotonic() - start
        text = body.decode("utf-8", errors="replace")
        if is_nginx:
            if response.status != 200:
                result.reason = "status"
                return result
            try:
                result.stub = parse_stub_status(text)
            except CheckFailed as err:
                result.reason = err.reason
                return result
        else:
            expected = check.expected_status_codes
            ok = response.status in expected if expected else 200 <= response.status < 300
            if not ok:
                result.reason = "status"
                return result
            if check.body_regex is not None and not re.search(check.body_regex, text):
                result.reason = "body"
                return result
        result.up = True
        return result
    except Exception as err:
        result.reason = classify(err)
        result.duration = time.monotonic() - start
        if result.reason == "error":
            log.debug('collector=services service=%s msg="unexpected error"', check.name,
                      exc_info=True)
        return result
    finally:
        conn.close()


# ---------------------------------------------------------------------------
# The collector
