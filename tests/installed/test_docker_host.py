"""compose.yaml's ``stackmon-host`` under a real Docker engine, compared with the host.

The image is built from the Dockerfile (tests/helpers/docker.py). No registry serves
images here, so its base, ``python:3.11.14-slim-bookworm``, is a local stand-in made from
a Debian bookworm root (``docker.base_image`` has the details). It differs from the
official image in: Debian's Python 3.11.2 in /usr, not 3.11.14 in /usr/local (``python``
from python-is-python3); Debian's pip 23.0.1, setuptools 66.1 and wheel 0.38, installing
into /usr/local/lib/python3.11/dist-packages (scripts still in /usr/local/bin); Debian's
EXTERNALLY-MANAGED marker removed so that ``pip install`` works as there; pip trusting
Debian's CA bundle (the machine's, for its proxy), not certifi's; a minbase root (apt,
perl-base, ...) rather than the slim image's set; no PYTHON_VERSION/GPG_KEY variables.

The container gets exactly the options compose.yaml gives ``stackmon-host`` (read from
compose.yaml and interpolated as Compose does, with no variables set), translated into
``docker run`` flags, plus one flag appended, ``--web.listen-address=127.0.0.1:<free
port>`` (the last flag wins), because on the host network a fixed port may be taken and
there is no bridge gateway (compose's default ``172.17.0.1``) on this machine; and, for
the health check test, ``--health-interval=1s`` instead of the image's 30 s.

The engine runs in its own mount namespace whose ``/`` is ``rshared``: this machine's
``/`` is a private mount, where Docker refuses compose's ``rslave`` bind of ``/``
(test_a_private_root_refuses_compose_rslave_bind shows it and docs/deployment.md says
what users do). Mounts made on the host after the engine started do not reach it then,
so sizes are compared only for mounts the engine can see.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import docker, logfmt
from tests.helpers.exporter import REPO, Samples, free_port, start_exporter, wait_for

pytestmark = pytest.mark.skipif(docker.skip_reason() is not None,
                                reason=f"Docker tests: {docker.skip_reason()}")

SERVICE = "stackmon-host"


@pytest.fixture(scope="module")
def image(engine: docker.Engine) -> docker.Built:
    return docker.build_service(engine, SERVICE)


@pytest.fixture(scope="module")
def host_container(engine: docker.Engine, image: docker.Built) -> Iterator[docker.Container]:
    options = docker.run_options(docker.load_compose({}), SERVICE)
    port = free_port()
    # The image checks health every 30 s; 1 s here so the test need not wait for it.
    container = docker.run(engine, options, SERVICE, port, "--health-interval=1s",
                           extra_command=[f"--web.listen-address=127.0.0.1:{port}"])
    yield container
    container.remove()


def host_mounts() -> dict[str, list[str]]:
    """The host's mount table (PID 1's, as the exporter reads it): mount point -> options."""
    out: dict[str, list[str]] = {}
    for line in Path("/proc/1/mounts").read_text().splitlines():
        _dev, point, _fstype, opts = line.split()[:4]
        out.setdefault(point.replace("\\040", " "), opts.split(","))
    return out


def mount_labels(s: Samples) -> set[tuple[str, str, str]]:
    return {(lbl["mountpoint"], lbl["device"], lbl["fstype"])
            for lbl, _ in s.samples["node_filesystem_readonly"]}


def test_host_view_matches_the_host(host_container: docker.Container,
                                    engine: docker.Engine) -> None:
    """Boot time, MemTotal, network devices, every mount point and its read-only flag as
    the host has them; every host sub-collector succeeds in the container."""
    native = start_exporter([])
    try:
        # Both read PID 1's mount table; another test may mount something in between.
        def same_mounts() -> tuple[Samples, Samples] | None:
            inside, outside = host_container.scrape(), native.scrape()
            return (inside, outside) if mount_labels(inside) == mount_labels(outside) else None
        inside, outside = wait_for(same_mounts, timeout=30, what="the same mount list")
    finally:
        native.stop()
    failed = {lbl["collector"] for lbl, v in inside.samples["node_scrape_collector_success"]
              if v != 1}
    assert failed == set(), f"host sub-collectors failing in the container: {failed}"
    assert inside.get("stackmon_scrape_collector_success", collector="host") == 1

    btime = int(re.search(r"^btime (\d+)$", Path("/proc/stat").read_text(), re.M)[1])  # type: ignore[index]
    assert inside.get("node_boot_time_seconds") == btime
    memtotal = int(re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(),
                             re.M)[1]) * 1024  # type: ignore[index]
    assert inside.get("node_memory_MemTotal_bytes") == memtotal

    devices = {line.split(":")[0].strip()
               for line in Path("/proc/net/dev").read_text().splitlines()[2:]}
    seen = {lbl["device"] for lbl, _ in inside.samples["node_network_receive_bytes_total"]}
    assert seen == devices

    table = host_mounts()
    assert "rw" in table["/"], "this test needs a host whose / is read-write"
    readonly = {lbl["mountpoint"]: v for lbl, v in inside.samples["node_filesystem_readonly"]}
    assert readonly["/"] == 0, "the host's / is read-write; the container says read-only"
    wrong = {point: value for point, value in readonly.items()
             if value != (1.0 if "ro" in table[point] else 0.0)}
    assert wrong == {}, f"read-only flag differs from the host's mount table: {wrong}"

    # statfs through /rootfs reaches the host's filesystems, not the container's own.
    engine_sees = {line.split()[1] for line in
                   Path(f"/proc/{engine.proc.pid}/mounts").read_text().splitlines()}  # type: ignore[union-attr]
    sizes_in = {lbl["mountpoint"]: v for lbl, v in inside.samples["node_filesystem_size_bytes"]}
    sizes_out = {lbl["mountpoint"]: v for lbl, v in outside.samples["node_filesystem_size_bytes"]}
    assert sizes_in["/"] == os.statvfs("/").f_blocks * os.statvfs("/").f_frsize
    differ = {p: (sizes_in.get(p), sizes_out[p]) for p in sizes_out
              if p in engine_sees and sizes_in.get(p) != sizes_out[p]}
    assert differ == {}, f"sizes differ (container, host): {differ}"


def test_compose_healthcheck_is_healthy_at_its_address(host_container: docker.Container
                                                       ) -> None:
    """compose's stackmon-host listens on a non-default address: its health check (the
    image's ``stackmon healthcheck``, reading the exporter's flags) must still pass."""
    status = wait_for(lambda: host_container.health() != "starting" and host_container.health(),
                      timeout=60, interval=0.5, what="the first health check")
    assert status == "healthy", host_container.engine.inspect(SERVICE)["State"]["Health"]


def test_stop_is_quick_and_clean(engine: docker.Engine, image: docker.Built) -> None:
    options = docker.run_options(docker.load_compose({}), SERVICE)
    port = free_port()
    container = docker.run(engine, options, f"{SERVICE}-stop", port,
                           extra_command=[f"--web.listen-address=127.0.0.1:{port}"])
    try:
        container.scrape()
        took, code = container.stop()
        assert code == 0, container.logs()
        assert took < 2, f"docker stop took {took:.1f} s"
        logs = container.logs()
        assert logfmt.bad_lines(logs) == []
        messages = [logfmt.parse(line)["msg"] for line in logs.splitlines()]
        assert messages[-2:] == ["shutting down", "stopped"], logs
    finally:
        container.remove()


def root_propagation() -> str:
    """This machine's / as PID 1 sees it: shared, slave or private (mountinfo fields)."""
    for line in Path("/proc/1/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/":
            tags = fields[6:fields.index("-")]
            if any(t.startswith("shared:") for t in tags):
                return "shared"
            return "slave" if any(t.startswith("master:") for t in tags) else "private"
    raise AssertionError("no / in /proc/1/mountinfo")


def tiny_image(engine: docker.Engine, directory: Path) -> str:
    """An image holding /bin/true and the libraries it loads (no registry here)."""
    libs = re.findall(r"(/\S+) \(0x", subprocess.run(
        ["ldd", "/bin/true"], capture_output=True, text=True, check=True, timeout=30).stdout)
    for path in ["/bin/true", *libs]:
        dest = directory / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(path).resolve(), dest)
    tar = subprocess.run(["tar", "-C", str(directory), "-c", "."],
                                capture_output=True, check=True, timeout=30).stdout
    engine.docker("import", "-", "tiny:1", input=tar)
    return "tiny:1"


def override_from_docs(tmp: Path) -> Path:
    """The compose.override.yaml docs/deployment.md gives for a host with a private /."""
    text = (REPO / "docs" / "deployment.md").read_text()
    block = re.search(r"```yaml\n(# compose\.override\.yaml.*?)```", text, re.S)
    assert block, "docs/deployment.md has no compose.override.yaml block"
    path = tmp / "compose.override.yaml"
    path.write_text(block.group(1))
    return path


def mount_flags(options: docker.RunOptions) -> list[str]:
    return [arg for flag, value in zip(options.flags, options.flags[1:], strict=False)
            if flag == "--mount" for arg in (flag, value)]


def test_a_private_root_refuses_compose_rslave_bind(tmp_path: Path) -> None:
    """On a host whose / is a private mount (no systemd as PID 1: this machine, some VMs
    and container hosts), Docker refuses compose's ``rslave`` bind of /, with the error
    docs/deployment.md names; the override the docs give starts. Shown by a second
    engine in a namespace whose / is made private (the engine the other tests use has /
    rshared in its own namespace instead)."""
    print(f"this machine's / is {root_propagation()}")
    (tmp_path / "run").mkdir()
    (tmp_path / "image").mkdir()
    override = override_from_docs(tmp_path)
    merged = subprocess.run(
        [str(Path(sys.executable).parent / "docker-compose"), "--project-directory", str(REPO),
         "-f", str(REPO / "compose.yaml"), "-f", str(override), "config", "--format", "json"],
        capture_output=True, text=True, timeout=60, check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    engine = docker.Engine(tmp_path / "data", tmp_path / "run", root_propagation="rprivate")
    try:
        engine.start()
        image = tiny_image(engine, tmp_path / "image")
        as_compose = mount_flags(docker.run_options(docker.load_compose({}), SERVICE))
        refused = engine.docker("run", "--rm", "--network", "host", *as_compose, image,
                                "/bin/true", check=False)
        overridden = mount_flags(docker.run_options(json.loads(merged.stdout), SERVICE))
        started = engine.docker("run", "--rm", "--network", "host", *overridden, image,
                                "/bin/true", check=False)
    finally:
        engine.stop()
    message = "path / is mounted on / but it is not a shared or slave mount"
    assert refused.returncode != 0 and message in refused.stderr, refused.stderr
    assert message in (REPO / "docs" / "deployment.md").read_text()
    assert "bind-propagation" not in " ".join(overridden)
    assert started.returncode == 0, started.stderr
