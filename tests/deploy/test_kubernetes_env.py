"""A Kubernetes Service named ``stackmon`` injects STACKMON_* variables into every pod of its
namespace; they are not settings and must not stop the exporter (issue 13, item 5).
Anything else unknown under STACKMON_ is still refused.
"""

from __future__ import annotations

import pytest

from exporter import cli
from exporter.errors import ConfigError
from exporter.settings.sources import is_kubernetes_service_variable

# Exactly what the kubelet sets for `kind: Service, metadata.name: stackmon` with the ports
# metrics 9860/TCP and a second, unnamed-style port 9861/UDP (docker-links variables).
SERVICE_ENV = {
    "STACKMON_SERVICE_HOST": "10.96.12.7",
    "STACKMON_SERVICE_PORT": "9860",
    "STACKMON_SERVICE_PORT_METRICS": "9860",
    "STACKMON_SERVICE_PORT_PROBE_UDP": "9861",
    "STACKMON_PORT": "tcp://10.96.12.7:9860",
    "STACKMON_PORT_9860_TCP": "tcp://10.96.12.7:9860",
    "STACKMON_PORT_9860_TCP_PROTO": "tcp",
    "STACKMON_PORT_9860_TCP_PORT": "9860",
    "STACKMON_PORT_9860_TCP_ADDR": "10.96.12.7",
    "STACKMON_PORT_9861_UDP": "udp://10.96.12.7:9861",
    "STACKMON_PORT_9861_UDP_ADDR": "10.96.12.7",
}


def test_service_variables_are_ignored() -> None:
    cfg = cli.parse([], dict(SERVICE_ENV))
    assert cfg.web.listen_address == ":9860", "STACKMON_SERVICE_PORT must not set the port"


def test_settings_still_apply_beside_them() -> None:
    env = {**SERVICE_ENV, "STACKMON_WEB_LISTEN_ADDRESS": ":9999", "STACKMON_LOG_LEVEL": "debug"}
    cfg = cli.parse([], env)
    assert (cfg.web.listen_address, cfg.log.level) == (":9999", "debug")


@pytest.mark.parametrize("name", [
    "STACKMON_PORTS", "STACKMON_SERVICE", "STACKMON_SERVICE_HOSTNAME",
    "STACKMON_PORT_9860", "STACKMON_PORT_9860_TCP_ADDRESS", "STACKMON_PORT_X_TCP",
    "STACKMON_PORT_9860_HTTP", "STACKMON_SERVICES_CHECK", "STACKMON_WEB_PORT",
])
def test_other_unknown_variables_are_still_errors(name: str) -> None:
    assert not is_kubernetes_service_variable(name)
    with pytest.raises(ConfigError, match=f"environment: {name}: unknown variable"):
        cli.parse([], {**SERVICE_ENV, name: "1"})


def test_every_injected_name_is_recognised() -> None:
    assert all(is_kubernetes_service_variable(name) for name in SERVICE_ENV)
