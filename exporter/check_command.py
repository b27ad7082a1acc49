"""``stackmon check``: why a panel stays empty, and the exact fix.

    stackmon check [--format text|json] [any exporter flag, e.g. --config.file=...]

Same settings and sources as the exporter (file, ``STACKMON_*``, flags).  It loads the
configuration, runs every enabled collector once (the /probe targets too), then each
collector's diagnostics (``exporter/collectors/<name>/checks.py``), and prints one table.
Exit code 0 when nothing is missing or broken, 1 when something is, 2 for a
configuration error.  It never changes the monitored system: it binds no port, and the
Celery collector's ``enable_events_at_start`` is not acted on.

Sample output::

    COLLECTOR  CHECK      STATUS   DETAIL                             AFFECTED   FIX
    redis      collect    ok       ran
    redis      slowlog    missing  the server refused SLOWLOG LEN ... families:  ACL SETUSER ...
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence

from exporter import checks, cli, logs, settings
from exporter.collectors import enabled
from exporter.collectors.base import CallState, CollectorSet, ParallelRunner
from exporter.metrics import Metric


def build_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    parser.prog = "stackmon check"
    parser.description = ("Run every enabled collector once, then one diagnostic per known "
                          "prerequisite, and print what stays empty and the exact fix. "
                          "Exit code 0: all ok, 1: something missing or broken, 2: bad "
                          "configuration.")
    parser.add_argument("--format", dest="format", choices=("text", "json"),
                        help="text (a table, the default) or json")
    return parser


def _quiet(cfg: settings.Config) -> settings.Config:
    """What ``check`` changes in the configuration: nothing that writes to a backend."""
    celery = cfg.sections.get("celery")
    if celery is None or not getattr(celery, "enable_events_at_start", False):
        return cfg
    sections = dict(cfg.sections)
    sections["celery"] = dataclasses.replace(celery, enable_events_at_start=False)
    return dataclasses.replace(cfg, sections=sections)


def main(argv: Sequence[str]) -> int:
    parser = build_parser()
    env = dict(os.environ)
    try:
        cfg, ns = cli.parse_with(parser, argv, env)
    except settings.ConfigError as err:
        cli.fail(str(err))
    # Our table goes to stdout; the collectors' own log lines to stderr, warnings and up
    # (their "connected" lines would only repeat the table).
    level = cfg.log.level if cfg.log.level in ("error", "warning") else "warning"
    logs.setup(level, cfg.secrets())
    specs = enabled(cfg)
    cfg = _quiet(cfg)
    try:
        main_collectors, probe_collectors = cli.build_collectors(cfg)
    except settings.ConfigError as err:
        cli.fail(str(err))
    sets = [("", CollectorSet(main_collectors)),
            *((name, CollectorSet(cs)) for name, cs in sorted(probe_collectors.items()))]
    try:
        errors = run_once(sets, time.monotonic() + cfg.scrape.timeout_seconds)
        findings = checks.diagnose(specs, sets,
                                   time.monotonic() + checks.DIAGNOSE_SECONDS, errors)
    finally:
        for _, cs in sets:
            cs.close()
    render = checks.render_json if ns.get("format") == "json" else checks.render_table
    sys.stdout.write(render(findings))
    sys.stdout.flush()
    logging.shutdown()
    return checks.exit_code(findings)


def run_once(sets: Sequence[tuple[str, CollectorSet]], deadline: float
             ) -> dict[tuple[str, str], str]:
    """Every collector once, in parallel, before ``deadline``; their run is recorded in
    each set's ``state`` (as a scrape would) and the messages of the failures returned."""
    calls: dict[str, Callable[[float], list[Metric]]] = {
        f"{target}/{c.name}": c.collect for target, cs in sets for c in cs.collectors}
    runner: ParallelRunner[list[Metric]] = ParallelRunner("collector")
    outcomes = runner.run(calls, deadline)
    errors: dict[tuple[str, str], str] = {}
    for target, cs in sets:
        for c in cs.collectors:
            outcome = outcomes[f"{target}/{c.name}"]
            state = cs.state[c.name]
            state.last_success = outcome.state is CallState.OK
            state.last_duration = outcome.duration
            if outcome.state is CallState.ERROR:
                state.last_error = type(outcome.error).__name__
                errors[(target, c.name)] = settings.one_line(
                    logs.redact(f"{type(outcome.error).__name__}: {outcome.error}"))
            elif outcome.state is not CallState.OK:
                state.last_error = "deadline exceeded"
                errors[(target, c.name)] = "did not finish before the scrape timeout " \
                                           "(scrape.timeout_seconds)"
    return errors
