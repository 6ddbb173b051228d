"""What every rendered workload must be: restricted security, probes on the health port, resources,
a PodDisruptionBudget, topology spread, one autoscaler capped by its input topic's partitions, and
NetworkPolicies that deny by default and allow only what each service needs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.fixtures.helm import Obj, Rendered

POD_OWNERS = ("Deployment", "StatefulSet", "Job")
INPUT_TOPIC = {
    "frame-sampler": "cameras",
    "detector": "frames",
    "embedder": "faces",
    "matcher": "embeddings",
    "review": "matches",
}


def pod_specs(variant: Rendered) -> Iterator[tuple[Obj, dict[str, Any]]]:
    for kind in POD_OWNERS:
        for obj in variant.of_kind(kind):
            yield obj, obj["spec"]["template"]["spec"]


def component(obj: Obj) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def partitions(variant: Rendered, topic: str) -> int:
    """From the rendered KafkaTopic if Strimzi manages topics, else from the values the Job uses."""
    topics = [t for t in variant.of_kind("KafkaTopic") if t["spec"]["topicName"].endswith(topic)]
    if topics:
        return int(topics[0]["spec"]["partitions"])
    job = variant.of_kind("Job")[0]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    pairs = dict(p.split("=") for p in args[args.index("--partitions") + 1].split(","))
    return int(pairs[topic])


def test_pods_run_restricted(rendered: dict[str, Rendered]) -> None:
    for variant in rendered.values():
        for obj, spec in pod_specs(variant):
            where = f"{variant.name} {obj['kind']} {obj['metadata']['name']}"
            pod = spec["securityContext"]
            assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, where
            assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
            assert spec["automountServiceAccountToken"] is False, where
            for c in spec.get("initContainers", []) + spec["containers"]:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False, f"{where}/{c['name']}"
                assert sc["readOnlyRootFilesystem"] is True, f"{where}/{c['name']}"
                assert sc["capabilities"]["drop"] == ["ALL"], f"{where}/{c['name']}"
                assert not sc["capabilities"].get("add"), f"{where}/{c['name']}"
                assert sc.get("privileged", False) is False, f"{where}/{c['name']}"
                mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
                assert "/tmp" in mounts, f"{where}/{c['name']}: a read-only root needs a writable /tmp"


def test_every_container_has_requests_and_limits(rendered: dict[str, Rendered]) -> None:
    for variant in rendered.values():
        for obj, spec in pod_specs(variant):
            for c in spec.get("initContainers", []) + spec["containers"]:
                for section in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(c["resources"][section]), (
                        f"{variant.name} {obj['metadata']['name']}/{c['name']} lacks {section}"
                    )


def test_service_accounts_have_no_token(rendered: dict[str, Rendered]) -> None:
    for variant in rendered.values():
        accounts = {a["metadata"]["name"]: a for a in variant.of_kind("ServiceAccount")}
        for obj, spec in pod_specs(variant):
            if obj["kind"] == "Job":
                continue  # a pre-install hook runs before the release's accounts exist
            account = accounts[spec["serviceAccountName"]]
            assert account["automountServiceAccountToken"] is False, account["metadata"]["name"]


def test_probes_hit_the_health_endpoints_on_the_metrics_port(rendered: dict[str, Rendered]) -> None:
    for variant in rendered.values():
        for deployment in variant.of_kind("Deployment"):
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            env = {e["name"]: e.get("value") for e in container["env"]}
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert int(env["FACESTREAM_METRICS_PORT"]) == ports["metrics"]
            live, ready, startup = (container[k] for k in ("livenessProbe", "readinessProbe", "startupProbe"))
            assert live["httpGet"] == {"path": "/healthz", "port": "metrics"}, deployment["metadata"]["name"]
            assert ready["httpGet"] == {"path": "/readyz", "port": "metrics"}, deployment["metadata"]["name"]
            assert startup["httpGet"]["path"] == "/healthz"
            assert live["failureThreshold"] * live["periodSeconds"] <= 120, "a hung loop must be restarted"
            grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            assert grace > 25, "SIGTERM needs time to finish, flush and commit the batch in hand"


def test_the_gallery_pods_probes_survive_its_index_rebuild(rendered: dict[str, Rendered]) -> None:
    """The gallery pod's probes ask its health port, which answers from the start (alive while the
    index check rebuilds, for as long as the gallery is big), never the gRPC port, which opens only
    after it: probing that restarted a pod mid-rebuild, and the new pod rebuilt from the start."""
    seen = 0
    for variant in rendered.values():
        for gallery in variant.of_kind("StatefulSet"):
            (container,) = gallery["spec"]["template"]["spec"]["containers"]
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            command = container["command"]
            assert int(command[command.index("--health-port") + 1]) == ports["health"]
            assert int(command[command.index("--port") + 1]) == ports["grpc"]
            live, ready, startup = (container[k] for k in ("livenessProbe", "readinessProbe", "startupProbe"))
            assert startup["httpGet"] == {"path": "/healthz", "port": "health"}
            assert live["httpGet"] == {"path": "/healthz", "port": "health"}
            assert ready["httpGet"] == {"path": "/readyz", "port": "health"}
            seen += 1
    assert seen, "no variant renders the gallery pod"


def test_every_deployment_has_a_pdb_and_spreads(rendered: dict[str, Rendered]) -> None:
    for variant in rendered.values():
        pdbs = variant.of_kind("PodDisruptionBudget")
        for deployment in variant.of_kind("Deployment"):
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            matching = [p for p in pdbs if selects(p["spec"]["selector"]["matchLabels"], labels)]
            assert len(matching) == 1, (
                f"{variant.name} {deployment['metadata']['name']}: {len(matching)} PDBs"
            )
            assert "maxUnavailable" in matching[0]["spec"] or "minAvailable" in matching[0]["spec"]
            spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
            assert {s["topologyKey"] for s in spread} >= {"kubernetes.io/hostname"}
            for s in spread:
                assert selects(s["labelSelector"]["matchLabels"], labels)


def test_one_autoscaler_per_deployment_capped_by_partitions(rendered: dict[str, Rendered]) -> None:
    checked = 0
    for variant in rendered.values():
        scalers: dict[str, tuple[int, int]] = {}
        for so in variant.of_kind("ScaledObject"):
            name = so["spec"]["scaleTargetRef"]["name"]
            assert name not in scalers
            scalers[name] = (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"])
        for hpa in variant.of_kind("HorizontalPodAutoscaler"):
            name = hpa["spec"]["scaleTargetRef"]["name"]
            assert name not in scalers, f"{name} has both a ScaledObject and an HPA"
            scalers[name] = (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"])
        for deployment in variant.of_kind("Deployment"):
            name = deployment["metadata"]["name"]
            limit = partitions(variant, INPUT_TOPIC[component(deployment)])
            if name in scalers:
                low, high = scalers[name]
                assert "replicas" not in deployment["spec"], f"{name}: replicas would fight the autoscaler"
                assert 1 <= low <= high <= limit, (
                    f"{variant.name} {name}: {low}..{high} vs {limit} partitions"
                )
            else:
                assert deployment["spec"]["replicas"] <= limit
            checked += 1
    assert checked == 5 * len(rendered)


def test_keda_scales_each_stage_on_its_own_group_and_topic(rendered: dict[str, Rendered]) -> None:
    variant = rendered["02-keda"]
    prefix = "city1."
    for so in variant.of_kind("ScaledObject"):
        comp = so["metadata"]["labels"]["app.kubernetes.io/component"]
        # The first trigger is the stage's own input; the matcher has its episode step's too
        # (tests/helm/test_keda.py).
        trigger = so["spec"]["triggers"][0]
        assert len(so["spec"]["triggers"]) == (2 if comp == "matcher" else 1), comp
        if comp == "frame-sampler":
            assert trigger["type"] == "cpu", "the sampler never commits `cameras`: lag is meaningless"
            continue
        deployment = variant.get("Deployment", so["spec"]["scaleTargetRef"]["name"])
        env = {
            e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert trigger["type"] == "kafka"
        assert (
            trigger["metadata"]["consumerGroup"] == env["FACESTREAM_GROUP_ID"] == f"{prefix}facestream-{comp}"
        )
        assert trigger["metadata"]["topic"] == prefix + INPUT_TOPIC[comp]
        assert trigger["metadata"]["sasl"] == "scram_sha512" and trigger["metadata"]["tls"] == "enable"
        auth = variant.get("TriggerAuthentication", trigger["authenticationRef"]["name"])
        params = {e["parameter"] for e in auth["spec"]["env"]} | {
            s["parameter"] for s in auth["spec"]["secretTargetRef"]
        }
        assert params == {"username", "password", "ca"}


def test_secrets_only_by_reference(rendered: dict[str, Rendered]) -> None:
    for variant in rendered.values():
        assert not variant.of_kind("Secret"), "the chart never holds credentials itself"
        for _, spec in pod_specs(variant):
            for c in spec.get("initContainers", []) + spec["containers"]:
                for e in c.get("env", []):
                    if (
                        any(word in e["name"] for word in ("PASSWORD", "TOKEN", "KEY"))
                        and "LOCATION" not in e["name"]
                    ):
                        assert "valueFrom" in e and "value" not in e, f"{variant.name}: {e['name']} inline"


def test_the_audit_signing_key_reaches_only_the_services_that_audit(rendered: dict[str, Rendered]) -> None:
    """The matcher (purges) and the review service (decisions) sign audit records; nothing else
    may hold the key, and without `accountability.auditKeySecret` none does (a development key)."""
    for variant in rendered.values():
        given = {
            component(obj): e["valueFrom"]["secretKeyRef"]
            for obj, spec in pod_specs(variant)
            for c in spec["containers"]
            for e in c.get("env", [])
            if e["name"] == "FACESTREAM_AUDIT_KEY"
        }
        secret = (yaml.safe_load(variant.values_file.read_text()).get("accountability") or {}).get(
            "auditKeySecret"
        )
        if secret:
            assert given == {name: {"name": secret, "key": "audit-key"} for name in ("matcher", "review")}, (
                variant.name
            )
        else:
            assert given == {}, variant.name
    assert any("auditKeySecret" in v.values_file.read_text() for v in rendered.values())


# -- NetworkPolicies ------------------------------------------------------------------------


def policies_for(variant: Rendered, labels: dict[str, str]) -> list[Obj]:
    return [
        p
        for p in variant.of_kind("NetworkPolicy")
        if selects(p["spec"]["podSelector"]["matchLabels"], labels)
    ]


def egress_ports(policies: list[Obj]) -> set[int]:
    return {p["port"] for pol in policies for rule in pol["spec"].get("egress", []) for p in rule["ports"]}


def test_default_deny_covers_every_pod(rendered: dict[str, Rendered]) -> None:
    for variant in rendered.values():
        deny = [p for p in variant.of_kind("NetworkPolicy") if p["metadata"]["name"].endswith("default-deny")]
        assert len(deny) == 1
        assert deny[0]["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert "ingress" not in deny[0]["spec"] and "egress" not in deny[0]["spec"]
        for obj, _ in pod_specs(variant):
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert selects(deny[0]["spec"]["podSelector"]["matchLabels"], labels), obj["metadata"]["name"]
            assert len(policies_for(variant, labels)) >= 2, f"{obj['metadata']['name']} has no allow policy"


def test_every_egress_rule_names_its_ports(rendered: dict[str, Rendered]) -> None:
    for variant in rendered.values():
        for pol in variant.of_kind("NetworkPolicy"):
            for rule in pol["spec"].get("egress", []):
                assert rule.get("ports"), f"{variant.name} {pol['metadata']['name']}: egress to any port"


@pytest.mark.parametrize(
    ("variant", "comp", "expected", "forbidden"),
    [
        ("01-minimal", "frame-sampler", {53, 9092, 554, 80, 443}, {19530}),
        ("01-minimal", "detector", {53, 9092, 443}, {554, 19530}),  # 443: models fetched at start
        ("03-strimzi", "detector", {53, 9093}, {443, 554, 19530}),  # models from a volume: no egress
        ("01-minimal", "matcher", {53, 9092, 19530}, {443, 554}),
        ("01-minimal", "review", {53, 9092}, {443, 554, 19530}),
        ("01-minimal", "gallery", {53}, {9092, 443, 554}),
    ],
)
def test_egress_is_only_what_the_service_needs(
    rendered: dict[str, Rendered], variant: str, comp: str, expected: set[int], forbidden: set[int]
) -> None:
    r = rendered[variant]
    owner = next(
        o
        for kind in POD_OWNERS
        for o in r.of_kind(kind)
        if o["metadata"]["labels"]["app.kubernetes.io/component"] == comp
    )
    ports = egress_ports(policies_for(r, owner["spec"]["template"]["metadata"]["labels"]))
    assert expected <= ports, f"{comp} misses {expected - ports}"
    assert not forbidden & ports, f"{comp} may reach {forbidden & ports}"


def test_gallery_accepts_only_matchers(rendered: dict[str, Rendered]) -> None:
    r = rendered["01-minimal"]
    gallery = next(p for p in r.of_kind("NetworkPolicy") if p["metadata"]["name"].endswith("-gallery"))
    (rule,) = gallery["spec"]["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "matcher"
    review = next(p for p in r.of_kind("NetworkPolicy") if p["metadata"]["name"].endswith("-review"))
    web = [i for i in review["spec"]["ingress"] if {p["port"] for p in i["ports"]} == {8080}]
    assert web and all("from" in i for i in web), "the review web app must not be open to everyone"
