"""Command line: flags generated from the config schema and the collector table.

    stackmon --web.listen-address=127.0.0.1:9860 --no-collector.host --config.file=stackmon.yml

Every bad input ends the process with exit code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import signal
import sys
import threading
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from exporter import __version__, logs, settings
from exporter.checks import Findings
from exporter.collectors import COLLECTORS, all_setting_paths, defaults, enabled
from exporter.collectors.base import Collector, CollectorSet
from exporter.http.server import App, make_server
from exporter.http.webconfig import load_web_config
from exporter.metrics import GaugeMetricFamily, Metric
from exporter.process import ProcessMetrics, limit_malloc_arenas

log = logging.getLogger("stackmon")


# Listed after the flags: without them `--help` never mentions the two subcommands.
COMMANDS = """commands (each has its own --help):
  stackmon check [--format json]  what each enabled backend lacks, and the exact fix
                                  (docs/check.md); exit 0 nothing missing, 1 missing
                                  or broken, 2 a configuration error
  stackmon healthcheck            ask /-/healthy of the exporter started with the same
                                  flags and STACKMON_* settings (the image's HEALTHCHECK)"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(f"command line: {message} (see {self.prog} --help)")


def fail(message: str) -> NoReturn:
    """Print one clear line and exit 2; secrets are scrubbed even here."""
    sys.stderr.write(f"stackmon: error: {settings.one_line(logs.redact(message))}\n")
    raise SystemExit(2)


class _RefuseSecret(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        path: settings.SettingPath = self.const
        fail(f"{option_string}: secrets are not accepted on the command line (other users "
             f"can read it in the process list); set {path.env} or put it in a *_file setting")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="stackmon", description="Prometheus exporter for a web platform.",
                     argument_default=argparse.SUPPRESS, epilog=COMMANDS,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"stackmon {__version__}")
    parser.add_argument("--config.file", dest="config_file", metavar="PATH",
                        help="YAML config file (also STACKMON_CONFIG_FILE)")
    for path in all_setting_paths():
        dest = "set:" + path.key
        if path.secret:
            parser.add_argument(path.flag, dest=dest, action=_RefuseSecret, const=path,
                                help=argparse.SUPPRESS)
            continue
        help_text = path.help
        default = path.field.default
        if default is not None and default is not dataclasses.MISSING:
            help_text += f" (default: {default})"
        parser.add_argument(path.flag, dest=dest, metavar="VALUE",
                            help=f"{help_text}; env {path.env}".replace("%", "%%"))
    for spec in COLLECTORS:
        default = {True: "on", False: "off", None: "on when configured"}[spec.default]
        parser.add_argument(f"--collector.{spec.name}", dest=f"set:collectors.{spec.name}",
                            action="store_const", const="true",
                            help=f"enable the {spec.name} collector: {spec.help} "
                                 f"(default: {default})")
        parser.add_argument(f"--no-collector.{spec.name}", dest=f"set:collectors.{spec.name}",
                            action="store_const", const="false",
                            help=f"disable the {spec.name} collector")
    return parser


def parse(argv: Sequence[str], env: dict[str, str]) -> settings.Config:
    """argv + env (+ the file they name) -> validated Config, or ConfigError."""
    return parse_with(build_parser(), argv, env)[0]


def parse_with(parser: argparse.ArgumentParser, argv: Sequence[str], env: dict[str, str]
               ) -> tuple[settings.Config, dict[str, Any]]:
    """Like ``parse`` with a parser of one's own (a subcommand's): also returns the parsed
    arguments, the subcommand's own options among them."""
    ns = vars(parser.parse_args(list(argv)))
    flags = {tuple(k[4:].split(".")): v for k, v in ns.items() if k.startswith("set:")}
    config_file = ns.get("config_file") or env.get("STACKMON_CONFIG_FILE") or None
    return settings.load(config_file=config_file, env=env, flags=flags,
                         collector_defaults=defaults(),
                         sections=[spec.settings for spec in COLLECTORS]), ns


def build_info() -> Iterable[Metric]:
    info = GaugeMetricFamily("stackmon_build_info", "stackmon version and Python runtime.",
                             labels=["version", "python_version"])
    info.add_metric([__version__, platform.python_version()], 1.0)
    return [info]


def build_collectors(cfg: settings.Config) -> tuple[list[Collector], dict[str, list[Collector]]]:
    """The collectors behind /metrics, and those behind each /probe target name."""
    main: list[Collector] = []
    probes: dict[str, list[Collector]] = {}
    for spec in enabled(cfg):
        section = cfg.sections[spec.name]
        main.extend(spec.build(section, cfg.scrape))
        if spec.probes is not None:
            for name, collectors in spec.probes(section, cfg.scrape).items():
                if name in probes:
                    raise settings.ConfigError(
                        f'{cfg.source}: {spec.name}: target name "{name}" is already used by '
                        "another section, expected names unique across /probe targets")
                probes[name] = collectors
    return main, probes


def healthcheck(argv: Sequence[str]) -> int:
    """``stackmon healthcheck``: exporter/healthcheck.py (the image's HEALTHCHECK)."""
    from exporter import healthcheck as check

    return check.main(argv, dict(os.environ))


def check(argv: Sequence[str]) -> int:
    """``stackmon check``: exporter/check_command.py (what each backend lacks, the fix)."""
    from exporter import check_command

    return check_command.main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    limit_malloc_arenas()  # before any thread starts
    env = dict(os.environ)
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["healthcheck"]:
        return healthcheck(args[1:])
    if args[:1] == ["check"]:
        return check(args[1:])
    try:
        cfg = parse(args, env)
        web = load_web_config(cfg.web.config_file)
    except settings.ConfigError as err:
        fail(str(err))
    logs.setup(cfg.log.level, cfg.secrets())
    try:
        collectors, probe_collectors = build_collectors(cfg)
    except settings.ConfigError as err:
        fail(str(err))
    process = ProcessMetrics()
    # The findings of the collectors' diagnostics (exporter/checks.py): refreshed in the
    # background after a scrape, at most every checks.REFRESH_SECONDS.
    findings = Findings(enabled(cfg), [])
    collector_set = CollectorSet(collectors,
                                 extras=[build_info, process.collect, findings.collect])
    probes = {name: CollectorSet(cs) for name, cs in probe_collectors.items()}
    findings.sets = [("", collector_set), *sorted(probes.items())]
    app = App(collector_set, telemetry_path=cfg.web.telemetry_path,
              timeout=cfg.scrape.timeout_seconds,
              timeout_offset=cfg.scrape.timeout_offset_seconds,
              max_requests=cfg.web.max_requests, web_config=web, probes=probes,
              findings=findings)
    sets = [collector_set, *probes.values()]
    try:
        server = make_server(cfg.web.listen_address, app, web.ssl_context)
    except settings.ConfigError as err:
        for cs in sets:
            cs.close()
        fail(f"{cfg.origin('web', 'listen_address')}: {err}")

    def stop(signum: int, _frame: Any) -> None:
        log.info("msg=\"shutting down\" signal=%s", signal.Signals(signum).name)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheme = "https" if web.ssl_context else "http"
    log.info("msg=\"listening\" address=%s scheme=%s collectors=%s version=%s",
             cfg.web.listen_address, scheme, ",".join(c.name for c in collectors), __version__)
    app.ready.set()
    try:
        server.serve_forever()
    finally:
        server.server_close()
        for cs in sets:
            cs.close()
    log.info("msg=\"stopped\"")
    return 0
