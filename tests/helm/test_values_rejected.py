"""Bad values fail `helm template` with a message that says what to change; nothing renders."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.fixtures.helm import CI_VALUES, RenderResult

Render = Callable[..., RenderResult]
STRIMZI = next(p for p in CI_VALUES if "strimzi" in p.name)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        # values.schema.json
        (["securityContext.readOnlyRootFilesystem=false"], "readOnlyRootFilesystem"),
        (["securityContext.allowPrivilegeEscalation=true"], "allowPrivilegeEscalation"),
        (["podSecurityContext.runAsNonRoot=false"], "runAsNonRoot"),
        (["detector.replicas=3"], "additional properties 'replicas' not allowed"),
        (["kafka.bootstrapServers=no-port"], "bootstrapServers"),
        (["kafka.securityProtocol=SASL_TLS"], "securityProtocol"),
        (["models.source=hub"], "source"),
        (["embedder.env.OTHER_VAR=1"], "OTHER_VAR"),
        (["topics.catalogue.frames.partitions=0"], "partitions"),
        (["detector.autoscaling.targetCPUUtilizationPercentage=150"], "targetCPUUtilizationPercentage"),
        # templates/validate.yaml
        (
            ["detector.autoscaling.enabled=true", "detector.autoscaling.maxReplicas=13"],
            "exceeds the 12 partitions of frames",
        ),
        (["review.replicaCount=7"], "exceeds the 6 partitions of matches"),
        (["review.replicaCount=2"], "review must run as one replica"),
        (["review.autoscaling.enabled=true"], "review must run as one replica"),
        (
            [
                "detector.autoscaling.enabled=true",
                "detector.autoscaling.minReplicas=5",
                "detector.autoscaling.maxReplicas=4",
            ],
            "minReplicas (5) exceeds maxReplicas (4)",
        ),
        (["milvus.enabled=true"], "milvus chart vendored"),
        (["gallery.mode=external"], "gallery.external.uri"),
        # values.schema.json too (issue 13.7): `helm lint` refuses what `helm install` refuses
        (["kafka.securityProtocol=SASL_SSL"], "/kafka/sasl/existingSecret"),
        (["accountability.stateClaimName="], "/accountability/stateClaimName"),
        (["models.source=volume"], "models.volume.claimName"),
    ],
)
def test_bad_values_are_refused(render: Render, sets: list[str], message: str) -> None:
    result = render(sets=sets)
    assert result.returncode != 0, f"{sets} rendered"
    assert message in result.stderr, result.stderr
    assert result.objects == []


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["kafka.securityProtocol=SSL"], "scram-sha-512 needs kafka.securityProtocol=SASL_SSL"),
        (["strimzi.users.authentication=tls"], "authentication=tls needs kafka.securityProtocol=SSL"),
        (["strimzi.topics.enabled=false"], "strimzi.users needs strimzi.topics.enabled"),
    ],
)
def test_strimzi_users_need_matching_kafka_security(render: Render, sets: list[str], message: str) -> None:
    result = render(STRIMZI, sets)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_a_good_override_still_renders(render: Render) -> None:
    """The refusals above are about the values, not about overriding at all."""
    result = render(sets=["detector.replicaCount=12", "kafka.topicPrefix=city9."])
    assert result.returncode == 0, result.stderr
    detector = next(
        o for o in result.objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("detector")
    )
    assert detector["spec"]["replicas"] == 12
