"""process_virtual_memory_max_bytes: the value node_exporter's process collector gives
for the same address-space limit, unlimited or not (the processes' own limit is set
with prlimit(2) while they run; both read /proc/self/limits at each scrape)."""

from __future__ import annotations

import resource
import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers.exporter import Exporter, free_port, http_get, start_exporter, wait_for
from tests.integration.test_node_compat import NODE_EXPORTER

NAME = "process_virtual_memory_max_bytes"


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[subprocess.Popen[bytes], str, Exporter]]:
    """(node_exporter's process, its /metrics URL, stackmon), host collectors off."""
    if NODE_EXPORTER is None:
        pytest.fail("prometheus-node-exporter is not installed; run scripts/test-services.sh")
    port = free_port()
    proc = subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}",
                             "--collector.disable-defaults"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/metrics"
    exp = start_exporter(["--no-collector.host"])
    try:
        wait_for(lambda: http_get(url)[0] == 200, what="node_exporter")
        yield proc, url, exp
    finally:
        exp.stop()
        proc.terminate()
        proc.wait(10)


def line(body: bytes) -> str:
    """The sample line as written (the value's text is what is compared)."""
    [found] = [x for x in body.decode().splitlines() if x.startswith(NAME + " ")]
    return found


@pytest.mark.parametrize("limit", [resource.RLIM_INFINITY, 6 * 2**30 + 4096],
                         ids=["unlimited", "6GiB"])
def test_same_value_as_node_exporter(pair: tuple[subprocess.Popen[bytes], str, Exporter],
                                     limit: int) -> None:
    proc, url, exp = pair
    for pid in (proc.pid, exp.proc.pid):
        resource.prlimit(pid, resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
    theirs = line(http_get(url)[2])
    assert line(exp.get("/metrics")[2]) == theirs
    expected = "1.8446744073709552e+19" if limit == resource.RLIM_INFINITY else "6.44245504e+09"
    assert theirs == f"{NAME} {expected}"
