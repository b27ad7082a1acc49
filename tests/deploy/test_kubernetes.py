"""The example Kubernetes manifests (deploy/kubernetes/), checked without a cluster
(issue 13, item 5):

- every core object validates against the Kubernetes OpenAPI schemas (strict: unknown
  fields are errors) shipped by the ``kubernetes-validate`` package, for the oldest and the
  newest Kubernetes release it carries;
- the Prometheus Operator objects (ServiceMonitor, PrometheusRule) are custom resources no
  PyPI package ships schemas for: their metadata is checked with Kubernetes' ObjectMeta
  schema, their spec against the fields of the operator's v1 API they use, and the rules by
  promtool;
- the rule and dashboard objects are what deploy/kubernetes/render.py makes from
  prometheus/rules/*.yml and grafana/dashboards/*.json (no hand-kept copies);
- the pieces fit: selectors, ports, mounts, flags, /probe targets, and the Service named
  ``stackmon`` whose injected variables the exporter ignores.
"""

from __future__ import annotations

import copy
import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from exporter import cli
from exporter.errors import ConfigError
from tests.helpers.exporter import REPO

K8S = REPO / "deploy" / "kubernetes"
# The oldest and newest releases kubernetes-validate ships schemas for (1.25 ... 1.37).
VERSIONS = ("1.25.0", "1.37.0")
Doc = dict[str, Any]


def load_render() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_render", K8S / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documents() -> list[tuple[str, Doc]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


DOCS = documents()
CORE = [(name, doc) for name, doc in DOCS if "monitoring.coreos.com" not in doc["apiVersion"]]
OPERATOR = [(name, doc) for name, doc in DOCS if "monitoring.coreos.com" in doc["apiVersion"]]


def by_kind(kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for _, doc in DOCS if doc["kind"] == kind}


def test_the_manifests_hold_every_object_asked_for() -> None:
    kinds = sorted({doc["kind"] for _, doc in DOCS})
    assert kinds == ["ConfigMap", "DaemonSet", "Deployment", "PrometheusRule", "Service",
                     "ServiceMonitor"]
    assert set(by_kind("DaemonSet")) == {"stackmon-host"}
    assert set(by_kind("Deployment")) == {"stackmon"}


# ---------------------------------------------------------------------------
# Schemas


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("name", "doc"), CORE, ids=[name for name, _ in CORE])
def test_core_objects_match_the_kubernetes_schemas(name: str, doc: Doc, version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(("path", "value"), [
    (("spec", "template", "spec", "hostPid"), True),                      # misspelt field
    (("spec", "template", "spec", "containers", 0, "args"), "--x"),       # wrong type
    (("spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"), "9860"),
])
def test_the_schemas_refuse_a_broken_daemonset(path: tuple[Any, ...], value: Any) -> None:
    doc = copy.deepcopy(by_kind("DaemonSet")["stackmon-host"])
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, VERSIONS[-1], strict=True)


def relabelings() -> Doc:
    return {"type": "array", "items": {
        "type": "object", "additionalProperties": False,
        "properties": {"sourceLabels": {"type": "array", "items": {"type": "string"}},
                       "targetLabel": {"type": "string"}, "replacement": {"type": "string"},
                       "regex": {"type": "string"}, "action": {"type": "string"}}}}


# The fields of monitoring.coreos.com/v1 these manifests use (Prometheus Operator API
# reference); anything else is a typo here.
SERVICE_MONITOR_SPEC: Doc = {
    "type": "object", "additionalProperties": False, "required": ["selector", "endpoints"],
    "properties": {
        "jobLabel": {"type": "string"},
        "selector": {"type": "object", "additionalProperties": False,
                     "properties": {"matchLabels": {"type": "object",
                                                    "additionalProperties": {"type": "string"}}}},
        "endpoints": {"type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "required": ["port"],
            "properties": {
                "port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"},
                "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                "params": {"type": "object", "additionalProperties": {
                    "type": "array", "items": {"type": "string"}}},
                "relabelings": relabelings(),
            }}},
    },
}
PROMETHEUS_RULE_SPEC: Doc = {
    "type": "object", "additionalProperties": False, "required": ["groups"],
    "properties": {"groups": {"type": "array", "minItems": 1, "items": {
        "type": "object", "additionalProperties": False, "required": ["name", "rules"],
        "properties": {"name": {"type": "string"}, "interval": {"type": "string"},
                       "rules": {"type": "array", "items": {
                           "type": "object", "additionalProperties": False,
                           "required": ["expr"],
                           "properties": {"alert": {"type": "string"},
                                          "record": {"type": "string"},
                                          "expr": {"type": "string"}, "for": {"type": "string"},
                                          "keep_firing_for": {"type": "string"},
                                          "labels": {"type": "object"},
                                          "annotations": {"type": "object"}}}}}}}},
}
OPERATOR_SPECS = {"ServiceMonitor": SERVICE_MONITOR_SPEC, "PrometheusRule": PROMETHEUS_RULE_SPEC}


def operator_problems(doc: Doc) -> list[str]:
    problems = []
    if doc["apiVersion"] != "monitoring.coreos.com/v1":
        problems.append(f"apiVersion {doc['apiVersion']}")
    # The metadata is an ordinary ObjectMeta: check it with Kubernetes' own schema.
    try:
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": doc["metadata"]}, VERSIONS[-1], strict=True)
    except kubernetes_validate.ValidationError as err:
        problems.append(f"metadata: {err.message}")
    extra = set(doc) - {"apiVersion", "kind", "metadata", "spec"}
    problems += [f"unknown top-level field {key}" for key in sorted(extra)]
    validator = jsonschema.Draft7Validator(OPERATOR_SPECS[doc["kind"]])
    problems += [f"spec/{'/'.join(map(str, e.absolute_path))}: {e.message}"
                 for e in validator.iter_errors(doc["spec"])]
    return problems


@pytest.mark.parametrize(("name", "doc"), OPERATOR, ids=[name for name, _ in OPERATOR])
def test_operator_objects_match_the_v1_api(name: str, doc: Doc) -> None:
    assert operator_problems(doc) == []


def test_operator_problems_are_found() -> None:
    monitor = by_kind("ServiceMonitor")["stackmon"]
    broken = [copy.deepcopy(monitor) for _ in range(4)]
    broken[0]["spec"]["endpoints"][0]["interval"] = "15 seconds"
    broken[1]["spec"]["endpoints"][0]["targetPort"] = 9860     # not in our subset
    broken[2]["metadata"]["labels"] = {"a": 1}                  # label values are strings
    broken[3]["apiVersion"] = "monitoring.coreos.com/v1beta1"
    for doc in broken:
        assert operator_problems(doc) != [], doc


def test_the_prometheus_rule_passes_promtool(tmp_path: Path) -> None:
    (rule,) = by_kind("PrometheusRule").values()
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    proc = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------
# Rendered from the shared files, no copies


def test_rendered_objects_equal_the_committed_files() -> None:
    for path, text in load_render().rendered().items():
        assert path.read_text() == text, \
            f"{path.name} is stale: run python3 deploy/kubernetes/render.py"


def test_render_check_reports_drift(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    render = load_render()
    for path in render.rendered():
        (tmp_path / path.name).write_text(path.read_text())
    monkeypatch.setattr(render, "OUT", tmp_path)
    assert render.main(["--check"]) == 0
    (tmp_path / "dashboards.yaml").write_text("# edited by hand\n")
    assert render.main(["--check"]) == 1


def test_rules_and_dashboards_are_the_shared_files() -> None:
    (rule,) = by_kind("PrometheusRule").values()
    groups = [g for path in sorted((REPO / "prometheus" / "rules").glob("*.yml"))
              for g in yaml.safe_load(path.read_text())["groups"]]
    assert rule["spec"]["groups"] == groups
    maps = {name: doc for name, doc in by_kind("ConfigMap").items()
            if doc["metadata"]["labels"].get("grafana_dashboard") == "1"}
    files = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
    assert len(maps) == len(files) >= 4
    for path in files:
        assert maps[f"stackmon-dashboard-{path.stem}"]["data"] == {path.name: path.read_text()}


# ---------------------------------------------------------------------------
# The pieces fit together


def pod_spec(doc: Doc) -> Doc:
    spec: Doc = doc["spec"]["template"]["spec"]
    return spec


def container_args(doc: Doc) -> dict[str, str]:
    (container,) = pod_spec(doc)["containers"]
    return dict(a.split("=", 1) if "=" in a else (a, "") for a in container["args"])


def test_host_daemonset_sees_the_node() -> None:
    ds = by_kind("DaemonSet")["stackmon-host"]
    spec = pod_spec(ds)
    assert spec["hostPID"] is True and spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    (container,) = spec["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    host_paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"]}
    args = container_args(ds)
    for flag, host_path in (("--path.procfs", "/proc"), ("--path.sysfs", "/sys"),
                            ("--path.rootfs", "/")):
        (name,) = [n for n, p in host_paths.items() if p == host_path]
        assert mounts[name]["readOnly"] is True
        assert mounts[name]["mountPath"] == args[flag], flag
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_services_and_monitors_select_the_pods() -> None:
    workloads = [*by_kind("DaemonSet").values(), *by_kind("Deployment").values()]
    services = by_kind("Service")
    for service in services.values():
        selector = service["spec"]["selector"]
        (match,) = [w for w in workloads if selector.items()
                    <= w["spec"]["template"]["metadata"]["labels"].items()]
        ports = {p["name"] for c in pod_spec(match)["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    for monitor in by_kind("ServiceMonitor").values():
        labels = monitor["spec"]["selector"]["matchLabels"]
        (service,) = [s for s in services.values()
                      if labels.items() <= s["metadata"]["labels"].items()]
        names = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= names


def backends_config(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The ConfigMap's stackmon.yml as a file, with its password files made locally."""
    text = by_kind("ConfigMap")["stackmon-config"]["data"]["stackmon.yml"]
    secrets_dir = pod_spec(by_kind("Deployment")["stackmon"])["containers"][0]
    mounted = {m["name"]: m["mountPath"] for m in secrets_dir["volumeMounts"]}
    replaced = {}
    for line in text.splitlines():
        if "password_file:" in line:
            remote = line.split(":", 1)[1].strip()
            assert remote.startswith(mounted["secrets"] + "/"), remote
            local = tmp_path / Path(remote).name
            local.write_text("not-a-real-password\n")
            replaced[remote] = str(local)
    for remote, local in replaced.items():
        text = text.replace(remote, local)
    path = tmp_path / "stackmon.yml"
    path.write_text(text)
    return path, replaced


def test_backends_config_loads_and_probe_targets_exist(tmp_path: Path) -> None:
    deployment = by_kind("Deployment")["stackmon"]
    args = container_args(deployment)
    (container,) = pod_spec(deployment)["containers"]
    config_mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["config"]
    assert args["--config.file"] == f"{config_mount}/stackmon.yml"
    assert "--no-collector.host" in args
    path, _ = backends_config(tmp_path)
    cfg = cli.parse([f"--config.file={path}", "--no-collector.host"], {})
    names = {t.name for t in cfg.postgres.targets} | {t.name for t in cfg.redis.targets}
    probes = {p for e in by_kind("ServiceMonitor")["stackmon"]["spec"]["endpoints"]
              if e["path"] == "/probe" for p in e["params"]["target"]}
    assert probes == names and len(names) == 2


def kubelet_env(service: Doc) -> dict[str, str]:
    """The docker-links variables the kubelet sets for ``service`` (ip 10.96.0.10); none
    for a headless Service (the kubelet skips Services without a cluster IP)."""
    if service["spec"].get("clusterIP") == "None":
        return {}
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    ip = "10.96.0.10"
    first = service["spec"]["ports"][0]
    env = {f"{prefix}_SERVICE_HOST": ip, f"{prefix}_SERVICE_PORT": str(first["port"]),
           f"{prefix}_PORT": f"tcp://{ip}:{first['port']}"}
    for port in service["spec"]["ports"]:
        number, proto = port["port"], port.get("protocol", "TCP")
        env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(number)
        base = f"{prefix}_PORT_{number}_{proto}"
        env |= {base: f"{proto.lower()}://{ip}:{number}", f"{base}_PROTO": proto.lower(),
                f"{base}_PORT": str(number), f"{base}_ADDR": ip}
    return env


def test_the_exporter_starts_beside_its_own_service_variables(tmp_path: Path) -> None:
    """The Service stackmon injects STACKMON_* into every pod of the namespace (unless a pod
    sets enableServiceLinks: false, as ours do; a user's copy may not). stackmon-host stays
    headless: with a cluster IP it would inject STACKMON_HOST_PORT etc., which the
    exporter refuses (the host section owns STACKMON_HOST_*)."""
    env: dict[str, str] = {}
    for service in by_kind("Service").values():
        env |= kubelet_env(service)
    assert "STACKMON_PORT_9860_TCP_ADDR" in env
    assert by_kind("Service")["stackmon-host"]["spec"]["clusterIP"] == "None"
    for workload in [*by_kind("DaemonSet").values(), *by_kind("Deployment").values()]:
        assert pod_spec(workload)["enableServiceLinks"] is False
    path, _ = backends_config(tmp_path)
    cli.parse([f"--config.file={path}", "--no-collector.host"], env)
    with pytest.raises(ConfigError, match="STACKMON_PORTS: unknown variable"):
        cli.parse([], {**env, "STACKMON_PORTS": "1"})
