"""Findings: what stackmon cannot see, why, and the exact fix.

The shared core of ``stackmon check`` (exporter/check_command.py) and of the findings the
running exporter shows on ``/`` and exports as ``stackmon_check_ok``.  Each collector's
diagnostics live beside it (``exporter/collectors/<name>/checks.py``): a catalogue of
``Check`` rows (data: name, the families and dashboard panels that stay empty, the fix
text) and a ``diagnose(collector, deadline)`` that returns one ``Finding`` per check.

Sample output of ``render_table``::

    COLLECTOR  CHECK       STATUS   DETAIL            AFFECTED            FIX
    postgres   pg_monitor  missing  role mon is ...   families: pg_...    GRANT pg_monitor TO mon;
    redis      slowlog     ok       SLOWLOG LEN ...

and of ``Findings.metrics``::

    stackmon_check_ok{check="pg_monitor",collector="postgres",target=""} 0.0
    stackmon_check_last_run_timestamp_seconds 1.7634e+09
"""

from __future__ import annotations

import enum
import html
import importlib
import json
import logging
import textwrap
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter import logs
from exporter.collectors.base import (
    CallState,
    Collector,
    CollectorSet,
    CollectorSpec,
    ParallelRunner,
)
from exporter.metrics import GaugeMetricFamily, Metric

log = logging.getLogger("stackmon.checks")

# The running exporter diagnoses again at most this often.  What the checks look at is
# configuration (grants, postgresql.conf, ACLs, mounts, the workers' settings) that
# changes with a deploy, not between scrapes; a run costs a few catalog queries, one
# Celery inspect broadcast and a few stat calls, so every 5 minutes is cheap and an
# alert with ``for: 15m`` sees three runs.
REFRESH_SECONDS = 300.0
# Longest one collector's diagnostics may take (Celery watches its event stream for a
# few seconds; the others need a round trip or two).
DIAGNOSE_SECONDS = 20.0


class Status(enum.Enum):
    """The verdict of one check."""

    OK = "ok"  # the prerequisite is met
    MISSING = "missing"  # it is not: the affected series stay empty; the fix says what to do
    BROKEN = "broken"  # the backend could not be asked (down, refused, error)
    UNKNOWN = "unknown"  # not enough evidence yet (e.g. no Celery task ran while watching)


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per row
class Check:
    """One row of a collector's catalogue: what is checked, what stays empty without it,
    and the fix (``fixes[cause]``, a template filled with the facts found, e.g.
    ``{role}``).  ``panels`` are "<dashboard> / <panel title>" of grafana/dashboards,
    kept equal to the panels that query ``families`` by tests/unit/test_checks.py."""

    collector: str
    name: str
    title: str
    families: tuple[str, ...] = ()
    panels: tuple[str, ...] = ()
    fixes: Mapping[str, str] = field(default_factory=dict)

    def finding(self, status: Status, detail: str, cause: str = "", target: str = "",
                **facts: Any) -> Finding:
        """A finding of this check; the fix of ``cause`` (or the only one) when not ok."""
        fix = ""
        if status in (Status.MISSING, Status.BROKEN) and self.fixes:
            template = self.fixes.get(cause) or next(iter(self.fixes.values()))
            fix = template.format(**facts)
        return Finding(self, status, detail, fix, target)


@dataclass(frozen=True)
class Finding:
    """The verdict of one check on one target ("" for what /metrics serves)."""

    check: Check
    status: Status
    detail: str
    fix: str = ""
    target: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"collector": self.check.collector, "target": self.target,
                "check": self.check.name, "title": self.check.title,
                "status": self.status.value, "detail": self.detail,
                "affected": {"families": list(self.check.families),
                             "panels": list(self.check.panels)},
                "fix": self.fix}


def collect_check(collector: str) -> Check:
    """The check every collector has: it ran, so the others could be asked."""
    return Check(collector, "collect", f"the {collector} collector ran",
                 fixes={"": "see the log line collector={collector} msg=\"collect failed\" "
                             "and the Troubleshooting section of docs/{collector}.md"})


def catalogue() -> list[Check]:
    """Every check of every collector, in the collector table's order (imports each
    collector's ``checks`` module: for docs and tests, not the exporter's hot path)."""
    from exporter.collectors import COLLECTORS

    out: list[Check] = []
    for spec in COLLECTORS:
        out.append(collect_check(spec.name))
        if spec.checks is not None:  # its module holds CHECKS beside diagnose()
            out += importlib.import_module(spec.checks.__module__).CHECKS
    return out


# -- running the diagnostics ------------------------------------------------------------


def diagnose(specs: Sequence[CollectorSpec], sets: Sequence[tuple[str, CollectorSet]],
             deadline: float, errors: Mapping[tuple[str, str], str] | None = None
             ) -> list[Finding]:
    """Findings for every collector of ``sets`` (``(target, CollectorSet)``, target "" for
    /metrics) whose last run is known: a ``collect`` finding each, and the collector's own
    checks when it ran.  The collectors' checks run in parallel, each before ``deadline``.
    ``errors`` gives the message of a failed run by (target, collector name)."""
    by_name = {spec.name: spec for spec in specs}
    calls: dict[str, Callable[[float], list[Finding]]] = {}
    order: list[tuple[str, str, Collector]] = []
    out: dict[str, list[Finding]] = {}
    for target, cs in sets:
        for collector in cs.collectors:
            key = f"{target}/{collector.name}"
            state = cs.state[collector.name]
            if state.last_success is None:
                continue  # never ran (a /probe target not scraped yet)
            order.append((key, target, collector))
            check = collect_check(collector.name)
            if not state.last_success:
                message = (errors or {}).get((target, collector.name)) or (
                    f"the last run failed ({state.last_error or 'error'})")
                out[key] = [check.finding(Status.BROKEN, message, target=target,
                                          collector=collector.name)]
                continue
            out[key] = [check.finding(Status.OK, "ran", target=target)]
            spec = by_name.get(collector.name)
            if spec is not None and spec.checks is not None:
                calls[key] = _bound(spec.checks, collector, target)
    runner: ParallelRunner[list[Finding]] = ParallelRunner("check")
    for key, outcome in runner.run(calls, deadline).items():
        target, _, name = key.partition("/")
        if outcome.state is CallState.OK and outcome.value is not None:
            out[key] += outcome.value
            continue
        why = ("did not finish in time" if outcome.state in (CallState.TIMEOUT, CallState.BUSY)
               else f"failed: {logs.redact(str(outcome.error))}")
        log.warning('collector=%s target="%s" msg="diagnostics %s"', name, target, why)
        out[key].append(Check(name, "diagnostics", f"the {name} diagnostics ran").finding(
            Status.BROKEN, f"the diagnostics {why}", target=target))
    return [f for key, _, _ in order for f in out[key]]


def _bound(checks: Callable[[Any, float], list[Any]], collector: Collector, target: str
           ) -> Callable[[float], list[Finding]]:
    def call(deadline: float) -> list[Finding]:
        found: list[Finding] = checks(collector, deadline)
        return [Finding(f.check, f.status, f.detail, f.fix, target) for f in found]
    return call


def exit_code(findings: Sequence[Finding]) -> int:
    """0 when nothing is missing or broken (``unknown`` counts as not proven missing),
    else 1; a configuration error exits 2 before any check runs."""
    return 1 if any(f.status in (Status.MISSING, Status.BROKEN) for f in findings) else 0


# -- rendering --------------------------------------------------------------------------

DETAIL_WIDTH = 44
AFFECTED_WIDTH = 44


def affected_lines(check: Check, width: int = AFFECTED_WIDTH) -> list[str]:
    """``families: a, b`` and ``panels: Cache / Slow log``, wrapped to ``width`` between
    items (a family or a panel is never split)."""
    lines: list[str] = []
    if check.families:
        lines += _wrap_items("families: ", list(check.families), ", ", width)
    if check.panels:
        lines += _wrap_items("panels: ", list(check.panels), "; ", width)
    return lines


def _wrap_items(first: str, items: list[str], sep: str, width: int) -> list[str]:
    lines: list[str] = []
    line = first
    for i, item in enumerate(items):
        text = item + (sep.rstrip() if i < len(items) - 1 else "")
        if line.strip() and len(line) + len(text) > width:
            lines.append(line.rstrip())
            line = "  "
        line += text + " "
    lines.append(line.rstrip())
    return lines


def render_table(findings: Sequence[Finding]) -> str:
    """One table: collector (and /probe target), check, status, detail, affected, fix.

    Detail and affected wrap; the fix never does (its lines are meant to be copied).
    Affected and fix are shown for the checks that are not ok.
    """
    header = ["COLLECTOR", "CHECK", "STATUS", "DETAIL", "AFFECTED", "FIX"]
    rows: list[list[list[str]]] = []
    for f in findings:
        name = f.check.collector + (f" ({f.target})" if f.target else "")
        bad = f.status is not Status.OK
        rows.append([[name], [f.check.name], [f.status.value],
                     textwrap.wrap(f.detail, DETAIL_WIDTH, break_on_hyphens=False,
                                   break_long_words=False) or [""],
                     affected_lines(f.check) if bad else [""],
                     f.fix.splitlines() if bad and f.fix else [""]])
    widths = [max([len(header[i]), *(len(line) for row in rows for line in row[i])])
              for i in range(len(header) - 1)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)) + "  FIX"]
    for row in rows:
        for n in range(max(len(cell) for cell in row)):
            cells = [cell[n] if n < len(cell) else "" for cell in row]
            line = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False))
            out.append((line + "  " + cells[-1]).rstrip())
    counts = {s: sum(f.status is s for f in findings) for s in Status}
    out.append("")
    out.append(", ".join(f"{n} {s.value}" for s, n in counts.items() if n) or "no checks ran")
    return "\n".join(out) + "\n"


def render_json(findings: Sequence[Finding]) -> str:
    """The same data for tooling::

        {"findings": [{"collector": "postgres", "check": "pg_monitor", "status": "missing",
          "affected": {"families": [...], "panels": [...]}, "fix": "GRANT ...", ...}],
         "exit_code": 1}
    """
    return json.dumps({"findings": [f.as_dict() for f in findings],
                       "exit_code": exit_code(findings)}, indent=2) + "\n"


# -- the running exporter -----------------------------------------------------------------


class Findings:
    """The findings of the running exporter: diagnosed again in the background at most
    every ``interval`` seconds, started by a scrape of /metrics (never on a timer, so an
    idle exporter does nothing), never on the scrape's own time.

    ``collect`` is an extra of the /metrics CollectorSet: it serves the last findings'
    gauges and starts a refresh when they are older than ``interval``.
    """

    def __init__(self, specs: Sequence[CollectorSpec],
                 sets: Sequence[tuple[str, CollectorSet]],
                 interval: float = REFRESH_SECONDS) -> None:
        self.specs = list(specs)
        self.sets = list(sets)
        self.interval = interval
        self.findings: list[Finding] = []
        self.last_run = 0.0  # unix time the last refresh finished (0 = never)
        self._started = 0.0  # time.monotonic() the last refresh started
        self._running = False
        self._lock = threading.Lock()
        self._logged: dict[tuple[str, str, str], Status] = {}  # last status logged per check

    def collect(self) -> list[Metric]:
        self.maybe_refresh()
        return self.metrics()

    def maybe_refresh(self) -> bool:
        """Start a refresh in a daemon thread unless one runs or the last is recent."""
        now = time.monotonic()
        with self._lock:
            if self._running or (self._started and now - self._started < self.interval):
                return False
            self._running, self._started = True, now
        threading.Thread(target=self.refresh, name="checks", daemon=True).start()
        return True

    def refresh(self) -> None:
        try:
            found = diagnose(self.specs, self.sets, time.monotonic() + DIAGNOSE_SECONDS)
            self.findings, self.last_run = found, time.time()
            self._log_changes(found)
        except Exception:  # a bug here must never reach a scrape
            log.exception('msg="diagnostics failed"')
        finally:
            with self._lock:
                self._running = False

    def _log_changes(self, found: list[Finding]) -> None:
        """One line when a check's status changes (a known gap is not logged every run)."""
        for f in found:
            key = (f.check.collector, f.check.name, f.target)
            before = self._logged.get(key)
            self._logged[key] = f.status
            if f.status is before or (before is None and f.status is Status.OK):
                continue
            level = (logging.WARNING if f.status in (Status.MISSING, Status.BROKEN)
                     else logging.INFO)
            log.log(level, 'collector=%s target="%s" check=%s status=%s msg="%s"',
                    f.check.collector, f.target, f.check.name, f.status.value, f.detail)

    def metrics(self) -> list[Metric]:
        ok = GaugeMetricFamily(
            "stackmon_check_ok", "1 if the prerequisite of the check is met, 0 if it is "
            "missing or the backend could not be asked (absent: not decided yet); see "
            "`stackmon check` and the landing page.", labels=["collector", "check", "target"])
        for f in self.findings:
            if f.status is not Status.UNKNOWN:
                ok.add_metric([f.check.collector, f.check.name, f.target],
                              1.0 if f.status is Status.OK else 0.0)
        last = GaugeMetricFamily("stackmon_check_last_run_timestamp_seconds",
                                 "Unix time the findings were last diagnosed (0 = not yet).",
                                 value=self.last_run)
        return [ok, last]

    def html(self) -> str:
        """The findings as an HTML section of the landing page."""
        if not self.last_run:
            return ("<h2>Checks</h2><p>Not run yet: the first scrape of the metrics starts "
                    f"them; then at most every {self.interval:.0f} s.</p>")
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.last_run))
        rows = []
        for f in self.findings:
            name = f.check.collector + (f" (target {f.target})" if f.target else "")
            bad = f.status in (Status.MISSING, Status.BROKEN)
            affected = "<br>".join(html.escape(line) for line in affected_lines(f.check, 80)) \
                if f.status is not Status.OK else ""
            fix = f"<pre>{html.escape(f.fix)}</pre>" if bad and f.fix else ""
            rows.append(f"<tr><td>{html.escape(name)}</td><td>{html.escape(f.check.name)}</td>"
                        f"<td>{html.escape(f.status.value)}</td>"
                        f"<td>{html.escape(f.detail)}</td><td>{affected}</td><td>{fix}</td>"
                        "</tr>")
        return (f"<h2>Checks</h2><p>Diagnosed at {html.escape(when)}; again at most every "
                f"{self.interval:.0f} s (<code>stackmon check</code> runs them now).</p>"
                "<table><tr><th>collector</th><th>check</th><th>status</th><th>detail</th>"
                f"<th>affected</th><th>fix</th></tr>{''.join(rows)}</table>")
