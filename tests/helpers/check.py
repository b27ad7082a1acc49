"""Run ``stackmon check --format json`` as a user would (a process of its own, settings from
flags and ``STACKMON_*`` variables) and read its findings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.helpers.exporter import REPO


@dataclass
class CheckRun:
    """One run: its exit code, findings by (collector, check, target), stderr, the table."""

    code: int
    findings: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    stderr: str = ""
    stdout: str = ""

    def finding(self, collector: str, check: str, target: str = "") -> dict[str, Any]:
        key = (collector, check, target)
        assert key in self.findings, f"no finding {key}; have {sorted(self.findings)}\n" \
                                     f"{self.stderr[-2000:]}"
        return self.findings[key]

    def status(self, collector: str, check: str, target: str = "") -> str:
        return str(self.finding(collector, check, target)["status"])

    def explain(self) -> str:
        """Every finding on one line each, for assertion messages."""
        return "\n".join(f"{k}: {f['status']}: {f['detail']}" for k, f in self.findings.items()
                         ) + "\n" + self.stderr[-2000:]


def check_command(args: Sequence[str] = (), prefix: Sequence[str] = ()) -> list[str]:
    """The command line (``prefix``: a wrapper such as ``unshare ...`` to run it under)."""
    return [*prefix, sys.executable, "-m", "exporter", "check", *args]


def run_check(args: Sequence[str] = (), env: Mapping[str, str] | None = None,
              prefix: Sequence[str] = (), timeout: float = 120, text: bool = False) -> CheckRun:
    """``stackmon check`` with ``args``; JSON unless ``text`` (then only the table is kept).
    The machine's own ``STACKMON_*`` variables are left out, as for the exporter."""
    fmt = [] if text else ["--format", "json"]
    return run_command(check_command([*fmt, *args], prefix), env, timeout, parse=not text)


def run_command(command: Sequence[str], env: Mapping[str, str] | None = None,
                timeout: float = 120, parse: bool = True) -> CheckRun:
    """A command line that ends in ``stackmon check --format json ...`` (``parse``)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STACKMON_")}
    full_env.update(env or {})
    proc = subprocess.run(list(command), env=full_env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    run = CheckRun(proc.returncode, stderr=proc.stderr, stdout=proc.stdout)
    if parse:
        assert proc.returncode in (0, 1), f"exit {proc.returncode}: {proc.stderr[-2000:]}"
        data = json.loads(proc.stdout)
        run.findings = {(f["collector"], f["check"], f["target"]): f for f in data["findings"]}
        assert data["exit_code"] == proc.returncode, data
    return run
