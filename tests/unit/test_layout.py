"""The layout rules of DESIGN.md §2 that code can check: collector packages hold only
their SPEC in ``__init__.py``, the settings engine never imports a collector, and a
host-only exporter never loads a backend driver."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from exporter.collectors import COLLECTORS, SECTIONS
from tests.helpers.exporter import REPO, free_port

EXPORTER = Path(REPO) / "exporter"
DRIVERS = ("psycopg", "redis", "celery", "kombu")


def _imports(path: Path, top_level: bool = False) -> set[str]:
    """Modules imported by a file (only at module level: imports inside functions run
    when a backend is configured)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in tree.body if top_level else ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_settings_engine_never_imports_a_collector() -> None:
    for path in sorted((EXPORTER / "settings").glob("*.py")):
        bad = {m for m in _imports(path) if m.startswith("exporter.collectors")}
        assert not bad, f"{path.name} imports {bad}"


def test_collector_packages_hold_only_their_spec() -> None:
    for spec in COLLECTORS:
        init = EXPORTER / "collectors" / spec.name / "__init__.py"
        body = [n for n in ast.parse(init.read_text(encoding="utf-8")).body
                if not isinstance(n, ast.Import | ast.ImportFrom)
                and not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        targets = [t.id for n in body if isinstance(n, ast.Assign) for t in n.targets
                   if isinstance(t, ast.Name)]
        assert targets == ["SPEC"] and len(body) == 1, f"{init}: {ast.dump(body[0])[:80]}"
        drivers = {m for m in _imports(init, True) | _imports(init.parent / "settings.py", True)
                   if m.split(".")[0] in DRIVERS}
        assert not drivers, f"{spec.name} imports {drivers} before it is built"


def test_spec_names_match_their_sections() -> None:
    names = [spec.name for spec in COLLECTORS]
    assert len(set(names)) == len(names)
    for spec in COLLECTORS:
        assert spec.settings.section == spec.name  # type: ignore[attr-defined]
    sections = [s.section for s in SECTIONS]  # type: ignore[attr-defined]
    assert len(set(sections)) == len(sections)


def test_host_only_exporter_loads_no_backend_driver() -> None:
    """Building and running the default (host-only) collectors imports none of the
    drivers; enabling postgres does import psycopg, so the check can fail."""
    script = (
        "import contextlib, os, sys, time\n"
        "from exporter import cli\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith('STACKMON_')}\n"
        "cfg = cli.parse(sys.argv[1:], env)\n"
        "main, probes = cli.build_collectors(cfg)\n"
        "for c in main:\n"
        "    with contextlib.suppress(Exception):  # a refused connection: pg_up 0\n"
        "        c.collect(time.monotonic() + 10)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {DRIVERS!r}))\n"
    )
    # Hermetic: without a DSN libpq would try the machine's own server on its default
    # Unix socket; a closed loopback port fails at once (the collector reports pg_up 0).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STACKMON_", "PG"))}
    host_only = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               timeout=60, cwd=REPO, check=True, env=env)
    assert host_only.stdout.strip() == "[]", host_only.stdout
    closed = f"host=127.0.0.1 port={free_port()} connect_timeout=2"
    with_pg = subprocess.run([sys.executable, "-c", script, "--no-collector.host",
                              "--collector.postgres"], capture_output=True, text=True,
                             timeout=60, cwd=REPO, check=True,
                             env={**env, "STACKMON_POSTGRES_DSN": closed})
    assert "psycopg" in with_pg.stdout


def test_docstring_samples_are_true() -> None:
    """The ``>>>`` samples in the settings engine and the secrets module run as written."""
    import doctest
    import importlib

    for name in ("exporter.secrets", "exporter.errors", "exporter.settings.schema",
                 "exporter.settings.docs"):
        result = doctest.testmod(importlib.import_module(name))
        assert result.failed == 0, name
