"""process_virtual_memory_max_bytes from /proc/<pid>/limits, as prometheus/procfs reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.process import UNLIMITED, ProcessMetrics, address_space_limit

LIMITS = """\
Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            20000                20000                files
Max address space         {soft:<20} unlimited            bytes
Max file locks            unlimited            unlimited            locks
"""


@pytest.mark.parametrize("soft,value", [("unlimited", 2.0**64), ("4294967296", 4294967296.0),
                                        ("0", 0.0)])
def test_soft_limit(soft: str, value: float) -> None:
    assert address_space_limit(LIMITS.format(soft=soft)) == value


def test_unlimited_is_procfs_max_uint64() -> None:
    # Go's float64(math.MaxUint64), printed 1.8446744073709552e+19 by every Go exporter.
    assert float(18446744073709551615) == UNLIMITED
    assert repr(UNLIMITED) == "1.8446744073709552e+19"


def test_no_row_no_value() -> None:
    assert address_space_limit("Limit  Soft Limit  Hard Limit  Units\n") is None


def test_family_from_a_proc_tree(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "limits").write_text(LIMITS.format(soft="8589934592"))
    families = {f.name: f for f in ProcessMetrics(str(tmp_path)).collect()}
    [sample] = families["process_virtual_memory_max_bytes"].samples
    assert sample.value == 8589934592.0


def test_without_a_limits_file_the_family_is_absent(tmp_path: Path) -> None:
    assert "process_virtual_memory_max_bytes" not in {
        f.name for f in ProcessMetrics(str(tmp_path)).collect()}
