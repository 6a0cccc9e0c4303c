"""The shipped deployment files (deploy/) agree with the gateway: routes, CLI, ports, timeouts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from galileo_otel.cli import build_parser
from galileo_otel.gateway.config import GatewaySettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _gateway_container() -> dict[str, Any]:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "gateway.yaml").read_text()))
    (statefulset,) = [d for d in docs if d["kind"] == "StatefulSet"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    return {"container": container, "pod": statefulset["spec"]["template"]["spec"]}


def test_collector_routes_each_trace_to_one_gateway_over_grpc() -> None:
    config = yaml.safe_load((DEPLOY / "collector" / "otel-collector.yaml").read_text())
    lb = config["exporters"]["loadbalancing"]
    assert lb["routing_key"] == "traceID"
    assert lb["protocol"]["otlp"]["retry_on_failure"]["enabled"] is True
    assert "galileo-api-key" in lb["protocol"]["otlp"]["headers"]
    assert all(h.endswith(":4317") for h in lb["resolver"]["static"]["hostnames"])
    assert config["service"]["pipelines"]["traces"]["exporters"] == ["loadbalancing"]


def test_kubernetes_gateway_args_probes_and_grace_period_match_the_gateway() -> None:
    found = _gateway_container()
    container, pod = found["container"], found["pod"]
    args = build_parser().parse_args(container["args"][1:])
    assert (args.command, args.host, args.port, args.grpc_port) == (
        "gateway",
        "0.0.0.0",
        4318,
        4317,
    )
    names = {e["name"] for e in container["env"]}
    assert {"GALILEO_GATEWAY_KEY", "GALILEO_API_KEY", "GALILEO_GATEWAY_DIR"} <= names
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # SIGTERM: 2 s of graceful connection close, then the shutdown timeout, within the grace.
    assert pod["terminationGracePeriodSeconds"] > 2 + GatewaySettings().shutdown_timeout
    mount = container["volumeMounts"][0]["mountPath"]
    assert {e["value"] for e in container["env"] if e["name"] == "GALILEO_GATEWAY_DIR"} == {
        f"{mount}/gateway"
    }
