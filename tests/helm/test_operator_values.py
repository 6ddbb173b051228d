"""Values an operator sets beyond the ci/ files (issue 13, defects 1-7): each renders what it says,
or is refused with a message that says what to change."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from facestream.commands.kafka_admin import pairs, policies
from facestream.runtime.service import group_id
from facestream.settings import KafkaSettings, RuntimeSettings
from tests.fixtures.helm import CHART, CI_VALUES, K8sTools, Obj, Rendered, RenderResult

Render = Callable[..., RenderResult]
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
MINIMAL, KEDA, STRIMZI, GPU = (
    next(p for p in CI_VALUES if word in p.name) for word in ("minimal", "keda", "strimzi", "gpu")
)
SERVICES = ("frameSampler", "detector", "embedder", "matcher", "review")
CPU_DIGEST = "sha256:" + "a" * 64
GPU_DIGEST = "sha256:" + "b" * 64
REPOSITORY = VALUES["image"]["repository"]


def ok(result: RenderResult) -> list[Obj]:
    assert result.returncode == 0, result.stderr
    return result.objects


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def component(obj: Obj) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])


def deployments(objects: list[Obj]) -> dict[str, Obj]:
    return {component(d): d for d in of_kind(objects, "Deployment")}


def container(obj: Obj) -> dict[str, Any]:
    return dict(obj["spec"]["template"]["spec"]["containers"][0])


def env(obj: Obj) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container(obj).get("env", [])}


def job_args(objects: list[Obj]) -> list[str]:
    (job,) = of_kind(objects, "Job")
    return list(container(job)["args"])


def arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


# -- 1. the GPU embedder's image ---------------------------------------------------------------


def test_gpu_embedder_with_only_a_cpu_digest_is_refused(render: Render) -> None:
    """Before: the CPU image's digest ran with EXECUTION_PROVIDER=cuda (and crash-looped)."""
    result = render(GPU, [f"image.digest={CPU_DIGEST}"])
    assert result.returncode != 0 and result.objects == []
    assert "embedder.gpu.image.digest" in result.stderr, result.stderr


def test_gpu_embedder_runs_its_own_pinned_image(render: Render) -> None:
    objects = ok(render(GPU, [f"image.digest={CPU_DIGEST}", f"embedder.gpu.image.digest={GPU_DIGEST}"]))
    pods = deployments(objects)
    assert container(pods["embedder"])["image"] == f"{REPOSITORY}@{GPU_DIGEST}"
    assert env(pods["embedder"])["FACESTREAM_MODEL_EXECUTION_PROVIDER"] == "cuda"
    for name, deployment in pods.items():
        if name != "embedder":
            assert container(deployment)["image"] == f"{REPOSITORY}@{CPU_DIGEST}", name
    (job,) = of_kind(objects, "Job")
    assert container(job)["image"] == f"{REPOSITORY}@{CPU_DIGEST}"


@pytest.mark.parametrize(
    ("sets", "image"),
    [
        ([], f"{REPOSITORY}:{CHART_META['appVersion']}-gpu"),
        (["image.tag=1.2.3"], f"{REPOSITORY}:1.2.3-gpu"),
        ([f"image.digest={CPU_DIGEST}", "embedder.gpu.image.tag=1.2.3-cuda12"], f"{REPOSITORY}:1.2.3-cuda12"),
        (
            ["embedder.gpu.image.repository=gpu.example.org/fs"],
            f"gpu.example.org/fs:{CHART_META['appVersion']}-gpu",
        ),
    ],
)
def test_gpu_image_reference(render: Render, sets: list[str], image: str) -> None:
    pods = deployments(ok(render(GPU, sets)))
    assert container(pods["embedder"])["image"] == image


def test_cpu_embedder_with_a_digest_runs_the_cpu_image(render: Render) -> None:
    pods = deployments(ok(render(sets=[f"image.digest={CPU_DIGEST}"])))
    assert {container(d)["image"] for d in pods.values()} == {f"{REPOSITORY}@{CPU_DIGEST}"}
    assert env(pods["embedder"])["FACESTREAM_MODEL_EXECUTION_PROVIDER"] == "cpu"


# -- 2. NetworkPolicy egress to the brokers ------------------------------------------------------


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def egress_ports(objects: list[Obj], owner: Obj) -> set[int]:
    labels = owner["spec"]["template"]["metadata"]["labels"]
    return {
        int(port["port"])
        for pol in of_kind(objects, "NetworkPolicy")
        if selects(pol["spec"]["podSelector"]["matchLabels"], labels)
        for rule in pol["spec"].get("egress", [])
        for port in rule["ports"]
    }


def kafka_clients(objects: list[Obj]) -> list[Obj]:
    return of_kind(objects, "Deployment") + of_kind(objects, "Job")


def test_kafka_egress_follows_bootstrap_servers(rendered: dict[str, Rendered]) -> None:
    """ci/04 reaches Kafka on 9094: before, every pod and the topic Job were allowed 9092/9093 only."""
    objects = rendered["04-gpu-embedder"].objects
    clients = kafka_clients(objects)
    assert {o["kind"] for o in clients} == {"Deployment", "Job"}
    for owner in clients:
        ports = egress_ports(objects, owner)
        assert 9094 in ports, f"{owner['metadata']['name']} cannot reach kafka.kafka.svc:9094"
        assert not {9092, 9093} & ports, f"{owner['metadata']['name']} may reach ports no broker uses"


def test_kafka_egress_takes_every_bootstrap_port_and_the_extra_ones(render: Render) -> None:
    objects = ok(
        render(
            sets=[
                "kafka.bootstrapServers=kafka-0.example.org:9095\\,kafka-1.example.org:9096",
                "kafka.ports={19092}",
            ]
        )
    )
    for owner in kafka_clients(objects):
        assert {9095, 9096, 19092} <= egress_ports(objects, owner), owner["metadata"]["name"]


# -- 3. consumer groups and the topic prefix -----------------------------------------------------


def code_group(prefix: str, stage: str) -> str:
    return group_id(KafkaSettings(topic_prefix=prefix), RuntimeSettings(group_id=None), stage)


def test_consumer_groups_are_the_codes_with_the_topic_prefix(rendered: dict[str, Rendered]) -> None:
    """ci/02 has topicPrefix city1.: before, the groups were facestream-<stage>, shared by every
    release on the cluster (and the review app's changelog topics with them)."""
    objects = rendered["02-keda"].objects
    prefix = yaml.safe_load(KEDA.read_text())["kafka"]["topicPrefix"]
    assert prefix
    pods = deployments(objects)
    for comp, deployment in pods.items():
        assert (
            env(deployment)["FACESTREAM_GROUP_ID"] == code_group(prefix, comp) == f"{prefix}facestream-{comp}"
        )
    for scaled in of_kind(objects, "ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            if trigger["type"] == "kafka":
                # the matcher's second trigger is its episode step's group, on `hits`
                stage = "episodes" if trigger["metadata"]["topic"] == f"{prefix}hits" else component(scaled)
                assert trigger["metadata"]["consumerGroup"] == code_group(prefix, stage)


def test_strimzi_acls_name_the_prefixed_groups(render: Render) -> None:
    objects = ok(render(STRIMZI, ["kafka.topicPrefix=city2."]))
    users = {component(u): u for u in of_kind(objects, "KafkaUser")}

    def resources(comp: str, kind: str) -> set[str]:
        return {
            a["resource"]["name"]
            for a in users[comp]["spec"]["authorization"]["acls"]
            if a["resource"]["type"] == kind
        }

    for comp in ("frame-sampler", "detector", "embedder", "matcher", "review"):
        assert code_group("city2.", comp) in resources(comp, "group"), comp
    assert "city2.facestream-detector." in resources("detector", "transactionalId")
    # the review service's faust changelogs are prefixed by its app id, which is its group
    assert "city2.facestream-review-" in resources("review", "topic")


def test_an_explicit_consumer_group_is_used_as_is(render: Render) -> None:
    pods = deployments(
        ok(render(sets=["kafka.topicPrefix=city3.", "detector.consumerGroup=legacy-detector"]))
    )
    assert env(pods["detector"])["FACESTREAM_GROUP_ID"] == "legacy-detector"
    assert env(pods["embedder"])["FACESTREAM_GROUP_ID"] == "city3.facestream-embedder"


# -- 4. KEDA settings that act only at zero ------------------------------------------------------


def comment_above(text: str, line: str) -> str:
    """The `# --` comment block directly above the first line equal to `line`."""
    lines = text.splitlines()
    at = lines.index(line)
    block: list[str] = []
    for previous in reversed(lines[:at]):
        if not previous.strip().startswith("#"):
            break
        block.insert(0, previous.strip().lstrip("#").strip())
    return " ".join(block)


def test_keda_zero_only_settings_are_documented_as_doing_nothing() -> None:
    """KEDA applies cooldownPeriod and activationLagThreshold only when scaling to or from zero; the
    chart never does (minReplicas >= 1), so their docs must not promise a scale-down delay."""
    for svc in SERVICES:
        assert (
            SCHEMA["properties"][svc]["properties"]["autoscaling"]["properties"]["minReplicas"]["minimum"]
            >= 1
        )
    text = (CHART / "values.yaml").read_text()
    cooldown = comment_above(text, "  cooldownPeriod: 300")
    assert "no effect" in cooldown and "zero" in cooldown, cooldown
    assert "before scaling back to minReplicas" not in cooldown
    activation = comment_above(text, "    activationLagThreshold: 10")
    assert "no effect" in activation and "zero" in activation, activation
    assert "no effect" in SCHEMA["properties"]["keda"]["properties"]["cooldownPeriod"]["description"]
    for svc in SERVICES:
        scaling = SCHEMA["properties"][svc]["properties"]["autoscaling"]["properties"]
        if "activationLagThreshold" in scaling:
            assert "no effect" in scaling["activationLagThreshold"]["description"], svc


# -- 5. every serviceDefaults key, per service ---------------------------------------------------


@pytest.mark.parametrize("key", sorted(VALUES["serviceDefaults"]))
def test_every_service_may_set_every_service_default(key: str) -> None:
    default = SCHEMA["properties"]["serviceDefaults"]["properties"][key]
    for svc in SERVICES:
        assert SCHEMA["properties"][svc]["properties"].get(key) == default, f"{svc}.{key}"


def test_a_service_override_reaches_only_its_pods(render: Render) -> None:
    """Before, `--set detector.terminationGracePeriodSeconds=60` failed the schema."""
    pods = deployments(
        ok(
            render(
                sets=[
                    "detector.terminationGracePeriodSeconds=60",
                    "embedder.topologySpread.whenUnsatisfiable=DoNotSchedule",
                    "matcher.topologySpread.enabled=false",
                    "review.topologySpread.topologyKeys={kubernetes.io/hostname}",
                ]
            )
        )
    )
    spec = {comp: d["spec"]["template"]["spec"] for comp, d in pods.items()}
    default_grace = VALUES["serviceDefaults"]["terminationGracePeriodSeconds"]
    assert spec["detector"]["terminationGracePeriodSeconds"] == 60
    assert {s["terminationGracePeriodSeconds"] for c, s in spec.items() if c != "detector"} == {default_grace}
    assert {c["whenUnsatisfiable"] for c in spec["embedder"]["topologySpreadConstraints"]} == {
        "DoNotSchedule"
    }
    # key by key: the embedder keeps the default keys and skew
    assert len(spec["embedder"]["topologySpreadConstraints"]) == 2
    assert {c["whenUnsatisfiable"] for c in spec["detector"]["topologySpreadConstraints"]} == {
        "ScheduleAnyway"
    }
    assert "topologySpreadConstraints" not in spec["matcher"]
    assert [c["topologyKey"] for c in spec["review"]["topologySpreadConstraints"]] == [
        "kubernetes.io/hostname"
    ]


# -- 6. the topic Job passes every declared setting ----------------------------------------------


def declared(values_file: Any) -> dict[str, dict[str, Any]]:
    own = (yaml.safe_load(values_file.read_text()) or {}).get("topics", {}).get("catalogue")
    return dict(own or VALUES["topics"]["catalogue"])


@pytest.mark.parametrize("variant", ["01-minimal", "02-keda", "04-gpu-embedder"])
def test_topic_job_passes_every_declared_setting(rendered: dict[str, Rendered], variant: str) -> None:
    """Before, the Job passed only partitions and retention: segment.ms, cleanup.policy and the
    replication factor were the command's own defaults whatever the values said."""
    r = rendered[variant]
    args = job_args(r.objects)
    assert args[:2] == ["topics", "create"]
    catalogue = declared(r.values_file)
    assert pairs(arg(args, "--partitions"), "") == {t: s["partitions"] for t, s in catalogue.items()}
    assert pairs(arg(args, "--retention-ms"), "") == {t: s["retentionMs"] for t, s in catalogue.items()}
    assert pairs(arg(args, "--segment-ms"), "") == {t: s["segmentMs"] for t, s in catalogue.items()}
    assert policies(arg(args, "--cleanup-policy"), "") == {
        t: s["cleanupPolicy"] for t, s in catalogue.items()
    }
    assert int(arg(args, "--replication-factor")) == VALUES["topics"]["replicationFactor"]


def test_topic_job_passes_changed_settings(render: Render) -> None:
    args = job_args(
        ok(
            render(
                sets=[
                    "topics.replicationFactor=1",
                    "topics.catalogue.frames.segmentMs=30000",
                    "topics.catalogue.hits.cleanupPolicy=compact\\,delete",
                ]
            )
        )
    )
    assert arg(args, "--replication-factor") == "1"
    assert pairs(arg(args, "--segment-ms"), "")["frames"] == 30000
    cleanup = policies(arg(args, "--cleanup-policy"), "")
    assert cleanup["hits"] == "compact,delete" and cleanup["cameras"] == "compact"


def test_strimzi_topics_take_the_replication_factor(render: Render) -> None:
    values = yaml.safe_load(STRIMZI.read_text())
    assert values["strimzi"]["topics"]["replicas"] == 3
    objects = ok(render(STRIMZI, ["strimzi.topics.replicas=null", "topics.replicationFactor=2"]))
    assert {t["spec"]["replicas"] for t in of_kind(objects, "KafkaTopic")} == {2}


# -- 7. the defaults: helm lint refuses what helm install refuses -------------------------------


def helm(tools: K8sTools, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(tools.helm), *args], capture_output=True, text=True, timeout=120, check=False)


def test_lint_and_template_agree_on_the_defaults(k8s_tools: K8sTools) -> None:
    """Before, `helm lint` passed the defaults (a template `fail` is only [INFO] to lint) while
    `helm template`/`install` failed: now the schema holds what the defaults lack, for both."""
    lint = helm(k8s_tools, "lint", str(CHART))
    template = helm(k8s_tools, "template", "fs", str(CHART))
    assert template.returncode != 0 and lint.returncode != 0, lint.stdout + lint.stderr
    for out in (lint.stdout + lint.stderr, template.stderr):
        assert re.search(r"existingSecret", out) and re.search(r"stateClaimName", out), out


def test_defaults_render_once_given_what_they_lack(k8s_tools: K8sTools) -> None:
    sets = ["kafka.sasl.existingSecret=facestream-kafka", "accountability.stateClaimName=facestream-state"]
    args = [arg for item in sets for arg in ("--set", item)]
    assert helm(k8s_tools, "lint", "--strict", str(CHART), *args).returncode == 0
    assert helm(k8s_tools, "template", "fs", str(CHART), *args).returncode == 0


# -- the reviewers' web app behind an Ingress and the city's SSO (issue 13) ------------------------

INGRESS = [
    "review.web.ingress.enabled=true",
    "review.web.ingress.host=review.city.example",
    "review.web.ingress.tlsSecretName=review-tls",
    "review.web.trustedProxies={10.244.0.0/16}",
]


def test_no_ingress_unless_asked(render: Render) -> None:
    assert of_kind(ok(render()), "Ingress") == []


def test_the_review_ingress_serves_the_web_port_over_https_behind_sso(render: Render) -> None:
    objects = ok(
        render(
            sets=[
                *INGRESS,
                "review.web.ingress.className=nginx",
                "review.web.ingress.sso.authUrl=http://oauth2-proxy.auth.svc/oauth2/auth",
                "review.web.ingress.sso.signinUrl=https://auth.city.example/oauth2/start",
                "review.web.ingress.sso.responseHeaders={X-Auth-Request-Email,X-Auth-Request-Groups}",
                "review.web.ingress.annotations.cert-manager\\.io/cluster-issuer=city-ca",
            ]
        )
    )
    (ingress,) = of_kind(objects, "Ingress")
    services = {component(s): s for s in of_kind(objects, "Service")}
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == services["review"]["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in services["review"]["spec"]["ports"]}
    assert backend["port"]["name"] == "http"
    assert ingress["spec"]["tls"] == [{"hosts": ["review.city.example"], "secretName": "review-tls"}]
    assert ingress["spec"]["rules"][0]["host"] == "review.city.example"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/auth-url": "http://oauth2-proxy.auth.svc/oauth2/auth",
        "nginx.ingress.kubernetes.io/auth-signin": "https://auth.city.example/oauth2/start",
        "nginx.ingress.kubernetes.io/auth-response-headers": "X-Auth-Request-Email,X-Auth-Request-Groups",
        "cert-manager.io/cluster-issuer": "city-ca",
    }


def test_without_sso_the_ingress_has_no_auth_annotations(render: Render) -> None:
    (ingress,) = of_kind(ok(render(sets=INGRESS)), "Ingress")
    assert not any("auth" in key for key in ingress["metadata"].get("annotations", {}))


@pytest.mark.parametrize(
    ("dropped", "extra", "said"),
    [
        ("review.web.ingress.host=review.city.example", [], "needs review.web.ingress.host"),
        ("review.web.ingress.tlsSecretName=review-tls", [], "needs review.web.ingress.tlsSecretName"),
        ("review.web.trustedProxies={10.244.0.0/16}", [], "needs review.web.trustedProxies"),
        (
            "",
            ["review.web.ingress.sso.authUrl=http://oauth2-proxy/oauth2/auth"],
            "needs review.web.ingress.sso.signinUrl",
        ),
    ],
)
def test_an_incomplete_review_ingress_is_refused(
    render: Render, dropped: str, extra: list[str], said: str
) -> None:
    result = render(sets=[*(s for s in INGRESS if s != dropped), *extra])
    assert result.returncode != 0
    assert said in result.stderr, result.stderr
