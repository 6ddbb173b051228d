"""`helm test`: a test-hook Pod runs the real `facestream cluster status` against the release, with the
services' image, Kafka settings, credentials and certificates."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from facestream.cli import build_parser
from facestream.settings import KafkaSettings
from tests.fixtures.helm import CI_VALUES, NAMESPACE, RELEASE, Obj, Rendered, RenderResult

Render = Callable[..., RenderResult]
STRIMZI = next(p for p in CI_VALUES if "strimzi" in p.name)
KEDA = next(p for p in CI_VALUES if "keda" in p.name)
HOOK = "helm.sh/hook"


def the_test_pod(objects: list[Obj]) -> Obj:
    (pod,) = [o for o in objects if o["kind"] == "Pod"]
    return pod


def hooks(objects: list[Obj]) -> dict[str, Obj]:
    return {
        o["kind"]: o
        for o in objects
        if o["metadata"].get("annotations", {}).get(HOOK) == "test" and o["kind"] != "Pod"
    }


def detector(objects: list[Obj]) -> Obj:
    return next(
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "detector"
    )


def kafka_env(container: dict[str, Any]) -> dict[str, Any]:
    return {
        e["name"]: e.get("value", e.get("valueFrom"))
        for e in container["env"]
        if e["name"].startswith("FACESTREAM_KAFKA_") and e["name"] != "FACESTREAM_KAFKA_CLIENT_ID"
    }


def ok(result: RenderResult) -> list[Obj]:
    assert result.returncode == 0, result.stderr
    return result.objects


@pytest.mark.parametrize("variant", ["01-minimal", "02-keda", "04-gpu-embedder"])
def test_a_test_hook_runs_cluster_status_as_the_services_connect(
    rendered: dict[str, Rendered], variant: str
) -> None:
    objects = rendered[variant].objects
    pod = the_test_pod(objects)
    assert pod["metadata"]["annotations"][HOOK] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    service = detector(objects)["spec"]["template"]["spec"]
    assert container["image"] == service["containers"][0]["image"]

    # The args are the real command's: parsed by facestream's own CLI parser.
    args = build_parser().parse_args(container["args"])
    assert (args.command, args.cluster_command) == ("cluster", "status")
    assert (args.namespace, args.release) == (NAMESPACE, RELEASE)
    assert args.no_kubernetes is False

    # Same Kafka settings, credentials and certificates as the services.
    assert kafka_env(container) == kafka_env(service["containers"][0])
    assert kafka_env(container)["FACESTREAM_KAFKA_BOOTSTRAP_SERVERS"]
    kafka_mounts = {m["mountPath"] for m in container["volumeMounts"] if "kafka" in m["name"]}
    assert kafka_mounts == {
        m["mountPath"] for m in service["containers"][0]["volumeMounts"] if "kafka" in m["name"]
    }
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["spec"]["volumes"] if "secret" in v}
    assert secrets == {v["name"]: v["secret"]["secretName"] for v in service["volumes"] if "secret" in v}
    # Every FACESTREAM_KAFKA_* variable names a real Kafka setting the command reads.
    fields = {f"FACESTREAM_KAFKA_{f.upper()}" for f in KafkaSettings.model_fields}
    assert set(kafka_env(container)) <= fields


def test_the_test_pod_runs_restricted(rendered: dict[str, Rendered]) -> None:
    pod = the_test_pod(rendered["02-keda"].objects)
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (c,) = spec["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])
    assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}


def test_kubernetes_access_is_read_only_and_for_the_test_only(rendered: dict[str, Rendered]) -> None:
    objects = rendered["02-keda"].objects
    pod = the_test_pod(objects)
    extra = hooks(objects)
    assert set(extra) == {"ServiceAccount", "Role", "RoleBinding", "NetworkPolicy"}
    for obj in extra.values():
        assert int(obj["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0, "created before the Pod"
    account, role, binding = extra["ServiceAccount"], extra["Role"], extra["RoleBinding"]
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert pod["spec"]["automountServiceAccountToken"] is True
    assert role["rules"] == [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    # The services' own accounts still have no token and no Role binds them.
    assert all(
        a["automountServiceAccountToken"] is False
        for a in objects
        if a["kind"] == "ServiceAccount" and HOOK not in a["metadata"].get("annotations", {})
    )


def test_network_policy_lets_the_test_reach_kafka(rendered: dict[str, Rendered]) -> None:
    objects = rendered["02-keda"].objects
    pod = the_test_pod(objects)
    policy = hooks(objects)["NetworkPolicy"]
    labels = pod["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in policy["spec"]["podSelector"]["matchLabels"].items())
    ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
    assert ports == {53, 9093, 443, 6443}
    kafka_rule = next(r for r in policy["spec"]["egress"] if {"port": 9093, "protocol": "TCP"} in r["ports"])
    assert kafka_rule["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]  # ci/02's kafka.egressTo


def test_kafka_only_without_kubernetes(render: Render) -> None:
    objects = ok(render(KEDA, ["helmTest.kubernetes=false"]))
    pod = the_test_pod(objects)
    assert build_parser().parse_args(pod["spec"]["containers"][0]["args"]).no_kubernetes is True
    assert pod["spec"]["automountServiceAccountToken"] is False and "serviceAccountName" not in pod["spec"]
    assert set(hooks(objects)) == {"NetworkPolicy"}
    ports = {p["port"] for rule in hooks(objects)["NetworkPolicy"]["spec"]["egress"] for p in rule["ports"]}
    assert 443 not in ports and 6443 not in ports


def test_disabled(render: Render) -> None:
    objects = ok(render(KEDA, ["helmTest.enabled=false"]))
    assert not [o for o in objects if o["kind"] == "Pod"] and not hooks(objects)


def test_strimzi_users_need_a_user_that_may_describe_every_group(
    rendered: dict[str, Rendered], render: Render
) -> None:
    assert not [o for o in rendered["03-strimzi"].objects if o["kind"] == "Pod"], (
        "no service's KafkaUser may describe the other services' groups"
    )
    objects = ok(render(STRIMZI, ["helmTest.kafkaSecret=facestream-ops-kafka"]))
    (container,) = the_test_pod(objects)["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("FACESTREAM_KAFKA_SASL_USERNAME", "FACESTREAM_KAFKA_SASL_PASSWORD"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "facestream-ops-kafka"
    service = kafka_env(detector(objects)["spec"]["template"]["spec"]["containers"][0])
    ours = kafka_env(container)
    for name in (
        "BOOTSTRAP_SERVERS",
        "SECURITY_PROTOCOL",
        "SASL_MECHANISM",
        "SSL_CA_LOCATION",
        "TOPIC_PREFIX",
    ):
        assert ours[f"FACESTREAM_KAFKA_{name}"] == service[f"FACESTREAM_KAFKA_{name}"], name


def run_the_hook(pod: Obj, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """The Pod's command, run here as the container would: its args, its literal environment."""
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: str(e["value"]) for e in container["env"] if "value" in e}
    assert not [e for e in container["env"] if "value" not in e], "PLAINTEXT needs no Secret"
    return subprocess.run(
        [str(Path(sys.executable).with_name("facestream")), *container["args"]],
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def test_the_hook_reports_the_release_from_a_real_broker(kafka_topics: KafkaSettings, render: Render) -> None:
    """Kafka only (no API server here): the hook's own args and environment, against a broker that
    has the release's topics, report every stage of the release under its prefix."""
    prefix = kafka_topics.topic_prefix
    objects = ok(
        render(
            sets=[
                f"kafka.bootstrapServers={kafka_topics.bootstrap_servers}",
                f"kafka.topicPrefix={prefix}",
                "helmTest.kubernetes=false",
            ]
        )
    )
    # cluster status waits out a coordinator that is still loading (tests/reliability/test_broker_faults.py)
    done = run_the_hook(the_test_pod(objects), 120)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    stages = {line["stage"]: line for line in lines if line.get("kind") == "stage"}
    assert set(stages) >= {"frame-sampler", "detector", "embedder", "matcher", "review"}, done.stdout
    assert stages["detector"]["group"] == f"{prefix}facestream-detector"
    assert stages["detector"]["topic"] == f"{prefix}frames"
    assert stages["detector"]["partitions"] > 0


def test_the_hook_fails_when_kafka_does_not_answer(render: Render) -> None:
    """`helm test` must fail, not pass with an empty report, when the brokers cannot be reached."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        objects = ok(
            render(
                sets=[
                    f"kafka.bootstrapServers=127.0.0.1:{port}",
                    "helmTest.kubernetes=false",
                    "helmTest.timeoutSeconds=3",
                ]
            )
        )
        done = run_the_hook(the_test_pod(objects), 120)
    assert done.returncode != 0, done.stdout
    assert f"Kafka at 127.0.0.1:{port}" in done.stderr, done.stderr[-2000:]
