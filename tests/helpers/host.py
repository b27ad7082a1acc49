"""The host collector on the captured fixture tree (tests/fixtures/host), system calls
included: unit tests never depend on what this machine's kernel lets them do (adjtimex is
refused in containers and under the hardened systemd unit)."""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path
from typing import Any

from exporter.collectors.host.collector import HostCollector
from exporter.collectors.host.common import Paths
from exporter.collectors.host.settings import HostSettings
from exporter.collectors.host.timex import AdjtimexFn, _Timex

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "host"
CLOCK = FIXTURE / "adjtimex.json"


def captured_adjtimex(path: Path = CLOCK) -> AdjtimexFn:
    """An adjtimex that fills the struct from a captured clock state and returns its state."""
    fields: dict[str, int] = json.loads(path.read_text())

    def adjtimex(ref: Any) -> int:
        tx = ctypes.cast(ref, ctypes.POINTER(_Timex)).contents
        for name, value in fields.items():
            if name != "state":
                setattr(tx, name, value)
        return fields["state"]

    return adjtimex


def refused_adjtimex(errno: int) -> AdjtimexFn:
    """adjtimex as a seccomp filter with SystemCallErrorNumber= leaves it: -1 and errno."""

    def adjtimex(ref: Any) -> int:
        ctypes.set_errno(errno)
        return -1

    return adjtimex


def fixture_collector(settings: HostSettings | None = None, paths: Paths | None = None,
                      **calls: Any) -> HostCollector:
    """A HostCollector on ``paths`` (default: the fixture tree) with the captured clock."""
    paths = paths or Paths(str(FIXTURE / "proc"), str(FIXTURE / "sys"), str(FIXTURE / "rootfs"))
    calls.setdefault("adjtimex", captured_adjtimex())
    calls.setdefault("statfs", os.statvfs)
    return HostCollector(settings or HostSettings(), paths, **calls)
