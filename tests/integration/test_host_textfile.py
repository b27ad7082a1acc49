"""The textfile collector (``--collector.textfile.directory``) against Debian's
node_exporter reading the same directory: the files' families, node_textfile_mtime_seconds
and node_textfile_scrape_error agree; broken files are skipped whole, a missing directory
and a family stackmon exports itself are errors."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.exporter import Samples, free_port, http_get, start_exporter, wait_for

NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
GOOD = """# HELP backup_last_success_timestamp_seconds Last successful backup.
# TYPE backup_last_success_timestamp_seconds gauge
backup_last_success_timestamp_seconds{job="db"} 1.7e+09
backup_last_success_timestamp_seconds{job="files"} 1.6e+09
# TYPE backup_runs_total counter
backup_runs_total 42
apt_upgrades_pending{origin="security"} 3
# HELP cron_duration_seconds Cron job duration.
# TYPE cron_duration_seconds histogram
cron_duration_seconds_bucket{le="1"} 2
cron_duration_seconds_bucket{le="+Inf"} 3
cron_duration_seconds_sum 4.5
cron_duration_seconds_count 3
"""
TIMESTAMPED = "late_metric 1 1700000000000\n"
GARBAGE = "this is { not metrics\n"


def scrape_node_exporter(directory: Path) -> Samples:
    assert NODE_EXPORTER, "prometheus-node-exporter is not installed (scripts/test-services.sh)"
    port = free_port()
    proc = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
                             f"--collector.textfile.directory={directory}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        body = wait_for(lambda: (lambda r: r[2] if r[0] == 200 else None)(http_get(url)),
                        what="node_exporter")
        return Samples.parse(body.decode())
    finally:
        proc.terminate()
        proc.wait(10)


def scrape_stackmon(directories: str) -> tuple[Samples, str]:
    exp = start_exporter([f"--collector.textfile.directory={directories}"])
    try:
        return exp.scrape(), exp.logs()
    finally:
        exp.stop()


def families(s: Samples) -> dict[str, list[tuple[tuple[tuple[str, str], ...], float]]]:
    """The files' own series (and the textfile collector's), comparable across exporters."""
    keep = ("backup_", "apt_", "cron_", "late_", "node_textfile_")
    return {name: sorted((tuple(sorted(lbl.items())), v) for lbl, v in rows)
            for name, rows in s.samples.items() if name.startswith(keep)}


@pytest.fixture()
def textdir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "textfile"
    directory.mkdir()
    (directory / "backup.prom").write_text(GOOD)
    (directory / "ignored.txt").write_text("not_read 1\n")
    yield directory


def test_same_series_as_node_exporter(textdir: Path) -> None:
    theirs = families(scrape_node_exporter(textdir))
    ours_samples, _ = scrape_stackmon(str(textdir))
    ours = families(ours_samples)
    assert theirs["node_textfile_scrape_error"] == [((), 0.0)]
    assert ours == theirs
    assert ours_samples.types["cron_duration_seconds"] == "histogram"
    assert ours_samples.types["apt_upgrades_pending"] == "unknown"


def test_bad_files_are_skipped_whole_as_node_exporter_does(textdir: Path) -> None:
    (textdir / "late.prom").write_text(TIMESTAMPED)
    (textdir / "garbage.prom").write_text(GARBAGE)
    theirs = families(scrape_node_exporter(textdir))
    ours_samples, logs = scrape_stackmon(str(textdir))
    ours = families(ours_samples)
    assert theirs["node_textfile_scrape_error"] == [((), 1.0)]
    assert ours == theirs
    assert "late_metric" not in ours
    assert 'path="' + str(textdir / "garbage.prom") + '"' in logs


def test_missing_directory_and_reserved_names(textdir: Path, tmp_path: Path) -> None:
    (textdir / "twin.prom").write_text("# TYPE node_load1 gauge\nnode_load1 99\n"
                                       "# TYPE pg_up gauge\npg_up 1\n")
    missing = tmp_path / "absent"
    ours_samples, logs = scrape_stackmon(f"{textdir},{missing}")
    assert ours_samples.get("node_textfile_scrape_error") == 1
    assert ours_samples.get("backup_runs_total") == 42  # the good file still counts
    assert "pg_up" not in ours_samples.samples and ours_samples.get("node_load1") != 99
    assert f'path="{missing}"' in logs and "exported by stackmon itself" in logs
    mtimes = {lbl["file"] for lbl, _ in ours_samples.samples["node_textfile_mtime_seconds"]}
    assert mtimes == {str(textdir / "backup.prom")}
    assert int(os.path.getmtime(textdir / "backup.prom")) == ours_samples.get(
        "node_textfile_mtime_seconds", file=str(textdir / "backup.prom"))
