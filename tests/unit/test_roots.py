"""tests/helpers/roots.py: an overlay left mounted by a killed test run is removed by the
next one, and a live run's overlay is left alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import roots


def mounted(path: Path) -> bool:
    return f" {path} overlay " in Path("/proc/self/mounts").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting an overlay needs root")
def test_stale_overlay_of_a_killed_run_is_removed(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    lower.mkdir()
    (lower / "file").write_text("cached root\n")
    # A run that mounts an overlay and is killed before its clean-up.
    child = subprocess.run(
        [sys.executable, "-c", "import os, sys\n"
         "from pathlib import Path\n"
         "from tests.helpers import roots\n"
         f"overlay = roots.Overlay(Path({str(lower)!r}), Path({str(tmp_path)!r}))\n"
         "print(overlay.__enter__())\n"
         "os._exit(0)  # no __exit__, as under SIGKILL\n"],
        capture_output=True, text=True, timeout=60, check=True,
        cwd=Path(__file__).resolve().parents[2])
    stale = Path(child.stdout.strip())
    with roots.Overlay(lower, tmp_path) as live:
        assert mounted(live) and not mounted(stale)  # the new run cleaned up the old one
        assert roots.remove_stale_overlays() == []  # its own overlay is not stale
        assert (live / "file").read_text() == "cached root\n"
    assert not mounted(live) and not stale.parent.exists()
