"""KEDA and HPA scaling beyond the lag trigger (issue 13): the HorizontalPodAutoscaler's scale-down
behaviour and KEDA's fallback come from values, and the matcher scales on both of its inputs."""

from __future__ import annotations

from collections.abc import Callable

from tests.fixtures.helm import CI_VALUES, Obj, Rendered, RenderResult

Render = Callable[..., RenderResult]
KEDA = next(p for p in CI_VALUES if "keda" in p.name)


def by_component(objects: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["labels"]["app.kubernetes.io/component"]: o for o in objects if o["kind"] == kind}


def env(deployment: Obj) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def ok(result: RenderResult) -> list[Obj]:
    assert result.returncode == 0, result.stderr
    return result.objects


def test_scale_down_removes_one_pod_a_minute_by_default(rendered: dict[str, Rendered]) -> None:
    scaled = by_component(rendered["02-keda"].objects, "ScaledObject")
    assert set(scaled) == {"frame-sampler", "detector", "embedder", "matcher"}
    for comp, so in scaled.items():
        behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"] == {
            "stabilizationWindowSeconds": 300,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        }, comp


def test_behavior_is_a_value_for_keda_and_for_the_cpu_hpa(render: Render) -> None:
    sets = [
        "autoscalingBehavior.scaleDown.stabilizationWindowSeconds=900",
        "autoscalingBehavior.scaleUp.selectPolicy=Max",
    ]
    keda = by_component(ok(render(KEDA, sets)), "ScaledObject")
    for so in keda.values():
        behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 900
        assert behavior["scaleUp"] == {"selectPolicy": "Max"}
    hpas = by_component(ok(render(KEDA, [*sets, "keda.enabled=false"])), "HorizontalPodAutoscaler")
    assert set(hpas) == {"frame-sampler", "detector", "embedder", "matcher"}
    for hpa in hpas.values():
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 900
    # {} leaves Kubernetes' defaults: no behaviour rendered at all.
    bare = by_component(ok(render(KEDA, ["autoscalingBehavior=null"])), "ScaledObject")
    assert all("advanced" not in so["spec"] for so in bare.values())


def test_behavior_values_are_checked(render: Render) -> None:
    for bad in (
        "autoscalingBehavior.scaleDown.stabilizationWindowSeconds=7200",
        "autoscalingBehavior.scaleDown.policies[0].type=Replicas",
        "autoscalingBehavior.scaleSideways.stabilizationWindowSeconds=1",
    ):
        result = render(KEDA, [bad])
        assert result.returncode != 0 and "autoscalingBehavior" in result.stderr, (bad, result.stderr)


def test_fallback_only_on_lag_triggers(rendered: dict[str, Rendered], render: Render) -> None:
    scaled = by_component(rendered["02-keda"].objects, "ScaledObject")
    assert "fallback" not in scaled["frame-sampler"]["spec"], "KEDA has no fallback for a cpu trigger"
    for comp in ("detector", "embedder", "matcher"):
        spec = scaled[comp]["spec"]
        assert spec["fallback"] == {
            "failureThreshold": 3,
            "replicas": spec["minReplicaCount"],
            "behavior": "currentReplicasIfHigher",
        }, comp
    assert scaled["detector"]["spec"]["fallback"]["replicas"] == 2  # ci/02 sets detector minReplicas 2
    off = by_component(ok(render(KEDA, ["keda.fallback.enabled=false"])), "ScaledObject")
    assert not any("fallback" in so["spec"] for so in off.values())
    static = by_component(
        ok(render(KEDA, ["keda.fallback.behavior=static", "keda.fallback.failureThreshold=5"])),
        "ScaledObject",
    )
    assert static["embedder"]["spec"]["fallback"]["behavior"] == "static"
    assert static["embedder"]["spec"]["fallback"]["failureThreshold"] == 5
    bad = render(KEDA, ["keda.fallback.behavior=maxReplicas"])
    assert bad.returncode != 0 and "fallback" in bad.stderr


def test_matcher_scales_on_both_of_its_inputs(rendered: dict[str, Rendered], render: Render) -> None:
    variant = rendered["02-keda"]
    matcher = by_component(variant.objects, "ScaledObject")["matcher"]
    deployment = by_component(variant.objects, "Deployment")["matcher"]
    groups = {t["metadata"]["topic"]: t["metadata"]["consumerGroup"] for t in matcher["spec"]["triggers"]}
    assert groups == {
        "city1.embeddings": env(deployment)["FACESTREAM_GROUP_ID"],
        "city1.hits": env(deployment)["FACESTREAM_MATCHER_EPISODES_APP_ID"],
    }
    assert groups["city1.hits"] == "city1.facestream-episodes"
    lag = {t["metadata"]["topic"]: t["metadata"]["lagThreshold"] for t in matcher["spec"]["triggers"]}
    assert lag == {"city1.embeddings": "200", "city1.hits": "200"}
    # Both triggers sign in as the matcher.
    assert {t["authenticationRef"]["name"] for t in matcher["spec"]["triggers"]} == {
        matcher["metadata"]["name"] + "-kafka"
    }

    objects = ok(
        render(KEDA, ["matcher.episodesGroup=ep-custom", "matcher.autoscaling.episodesLagThreshold=50"])
    )
    triggers = by_component(objects, "ScaledObject")["matcher"]["spec"]["triggers"]
    hits = next(t for t in triggers if t["metadata"]["topic"] == "city1.hits")
    assert hits["metadata"]["consumerGroup"] == "ep-custom"
    assert hits["metadata"]["lagThreshold"] == "50"
    assert (
        env(by_component(objects, "Deployment")["matcher"])["FACESTREAM_MATCHER_EPISODES_APP_ID"]
        == "ep-custom"
    )


def test_matchers_strimzi_user_may_read_what_its_scaler_reads(rendered: dict[str, Rendered]) -> None:
    """KEDA's Kafka scaler reads the group's offsets with the matcher's own KafkaUser."""
    variant = rendered["03-strimzi"]
    triggers = by_component(variant.objects, "ScaledObject")["matcher"]["spec"]["triggers"]
    user = by_component(variant.objects, "KafkaUser")["matcher"]
    acls = {
        (a["resource"]["type"], a["resource"]["name"]): set(a["operations"])
        for a in user["spec"]["authorization"]["acls"]
    }
    assert len(triggers) == 2
    for t in triggers:
        assert "Describe" in acls[("group", t["metadata"]["consumerGroup"])]
        assert "Describe" in acls[("topic", t["metadata"]["topic"])]
