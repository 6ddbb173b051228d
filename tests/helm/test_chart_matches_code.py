"""The chart and the code agree: topics (and their record size limit), commands, settings, image user."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource  # type: ignore[attr-defined]
from pydantic_settings import BaseSettings

import facestream.cli
from facestream.commands.gallery import serve_lite
from facestream.commands.kafka_admin import pairs
from facestream.config_file import CONFIG_ENV
from facestream.env_names import env_name
from facestream.settings import KafkaSettings
from facestream.transport.kafka import client_config
from facestream.transport.topics import CATALOGUE, MAX_BATCH_BYTES, PRODUCER_BATCH_BYTES, catalogue
from tests.fixtures.helm import CHART, CI_VALUES, REPO, Rendered, RenderResult

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
STRIMZI = next(p for p in CI_VALUES if "strimzi" in p.name)
EXTRA_ENV = {
    "FACESTREAM_NPM_REGISTRY",  # read by vision/models.py, not a settings field
    CONFIG_ENV,  # the settings file itself (values `config`), read by every command
}


def subcommands() -> set[str]:
    parser = facestream.cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)  # type: ignore[arg-type]


def settings_env_names() -> set[str]:
    facestream.cli.build_parser()  # imports every command, hence every settings model
    names = set()
    stack = list(BaseSettings.__subclasses__())
    while stack:
        model = stack.pop()
        stack.extend(model.__subclasses__())
        if not model.__module__.startswith("facestream"):
            continue
        names |= {env_name(model, field) for field in model.model_fields}  # never a former name
    return names


def test_topic_values_equal_the_code_catalogue() -> None:
    values = VALUES["topics"]["catalogue"]
    code = {
        t.name: {
            "partitions": t.partitions,
            "retentionMs": t.retention_ms,
            "segmentMs": t.segment_ms,
            "cleanupPolicy": t.cleanup_policy,
        }
        for t in CATALOGUE
    }
    assert values == code


def test_kafka_topics_carry_retention_and_segment(rendered: dict[str, Rendered]) -> None:
    variant = rendered["03-strimzi"]
    values = yaml.safe_load(variant.values_file.read_text())["topics"]["catalogue"]
    topics = {t["spec"]["topicName"]: t["spec"] for t in variant.of_kind("KafkaTopic")}
    assert set(topics) == set(values)
    for name, spec in values.items():
        config = topics[name]["config"]
        assert topics[name]["partitions"] == spec["partitions"]
        assert config["retention.ms"] == str(spec["retentionMs"])
        assert config["segment.ms"] == str(spec["segmentMs"])
        assert config["cleanup.policy"] == spec["cleanupPolicy"]
        if spec["retentionMs"] > 0:
            assert spec["segmentMs"] <= spec["retentionMs"], f"{name}: a segment outlives retention"


def test_max_message_bytes_equals_the_code() -> None:
    """One value sizes every topic's records, and it is the code's: large frames are not refused."""
    assert VALUES["topics"]["maxMessageBytes"] == MAX_BATCH_BYTES
    limit = SCHEMA["properties"]["topics"]["properties"]["maxMessageBytes"]
    assert limit["minimum"] == PRODUCER_BATCH_BYTES, "below batch.size whole batches of fitting records fail"


def test_kafka_topics_carry_max_message_bytes(
    rendered: dict[str, Rendered], render: Callable[..., RenderResult]
) -> None:
    """Every KafkaTopic carries topics.maxMessageBytes: the default, and another value when set."""
    topics = rendered["03-strimzi"].of_kind("KafkaTopic")
    assert len(topics) == len(CATALOGUE)
    assert {t["spec"]["config"]["max.message.bytes"] for t in topics} == {str(MAX_BATCH_BYTES)}
    chosen = render(STRIMZI, ["topics.maxMessageBytes=4194304"])
    assert chosen.returncode == 0, chosen.stderr
    topics = [o for o in chosen.objects if o["kind"] == "KafkaTopic"]
    assert len(topics) == len(CATALOGUE)
    assert {t["spec"]["config"]["max.message.bytes"] for t in topics} == {"4194304"}


def test_topic_job_refuses_a_limit_it_cannot_apply(render: Callable[..., RenderResult]) -> None:
    """`facestream topics create` gives the image's own limit (the code's), so the Job path takes no
    other; the refusal names the chart's idea of the image's limit, which must be the code's."""
    same = render(sets=[f"topics.maxMessageBytes={MAX_BATCH_BYTES}"])
    assert same.returncode == 0, same.stderr
    other = render(sets=[f"topics.maxMessageBytes={MAX_BATCH_BYTES - 1}"])
    assert other.returncode != 0 and other.objects == []
    assert f"gives every topic the image's own {MAX_BATCH_BYTES};" in other.stderr, other.stderr
    assert "strimzi.topics.enabled" in other.stderr


def test_kafka_users_grant_only_their_own_topics(rendered: dict[str, Rendered]) -> None:
    users = {
        u["metadata"]["labels"]["app.kubernetes.io/component"]: u
        for u in rendered["03-strimzi"].of_kind("KafkaUser")
    }
    assert set(users) == {"frame-sampler", "detector", "embedder", "matcher", "review"}

    def allowed(comp: str, op: str) -> set[str]:
        return {
            a["resource"]["name"]
            for a in users[comp]["spec"]["authorization"]["acls"]
            if a["resource"]["type"] == "topic"
            and a["resource"]["patternType"] == "literal"
            and op in a["operations"]
        }

    assert allowed("detector", "Read") == {"frames"} and allowed("detector", "Write") == {
        "faces",
        "dlq.detector",
    }
    assert allowed("embedder", "Read") == {"faces"}
    assert "frames" not in allowed("matcher", "Read") | allowed("matcher", "Write")
    for user in users.values():
        for acl in user["spec"]["authorization"]["acls"]:
            assert "All" not in acl["operations"] and acl["resource"]["type"] != "cluster"
            assert acl["resource"]["name"] not in ("*", ""), "no wildcard ACLs"


def test_containers_run_real_commands(rendered: dict[str, Rendered]) -> None:
    known = subcommands()
    for variant in rendered.values():
        for kind in ("Deployment", "Job"):
            for obj in variant.of_kind(kind):
                for c in (
                    obj["spec"]["template"]["spec"].get("initContainers", [])
                    + obj["spec"]["template"]["spec"]["containers"]
                ):
                    assert c["args"][0] in known, f"{obj['metadata']['name']}: {c['args']}"
        for obj in variant.of_kind("StatefulSet"):  # the gallery: a command of its own
            for c in obj["spec"]["template"]["spec"]["containers"]:
                assert c["command"][0] == "facestream"
                args = facestream.cli.build_parser().parse_args(c["command"][1:])  # exits on a bad one
                assert args.handler is serve_lite and args.data_dir == Path("/data/milvus")


def test_every_env_var_is_a_real_setting(rendered: dict[str, Rendered]) -> None:
    known = settings_env_names() | EXTRA_ENV
    assert "FACESTREAM_KAFKA_BOOTSTRAP_SERVERS" in known and "FACESTREAM_STATE_DIR" in known
    for variant in rendered.values():
        for kind in ("Deployment", "Job"):
            for obj in variant.of_kind(kind):
                spec = obj["spec"]["template"]["spec"]
                for c in spec.get("initContainers", []) + spec["containers"]:
                    for e in c.get("env", []):
                        assert e["name"] in known, f"{variant.name} {c['name']}: {e['name']} is no setting"


def test_topic_job_arguments_create_the_topics(
    rendered: dict[str, Rendered], kafka_broker: KafkaSettings
) -> None:
    """The Job's exact arguments, run through the real CLI against the real broker: every topic gets
    every declared setting (partitions, retention.ms, segment.ms, cleanup.policy, max.message.bytes)."""
    job = rendered["01-minimal"].of_kind("Job")[0]
    args = list(job["spec"]["template"]["spec"]["containers"][0]["args"])
    parts = pairs(args[args.index("--partitions") + 1], "--partitions")
    assert set(parts) == {t.name for t in catalogue()}
    prefix = "helmjob."
    # Small partition counts and one replica for the single test broker, in the Job's own format.
    args[args.index("--partitions") + 1] = ",".join(f"{name}={min(n, 2)}" for name, n in parts.items())
    args[args.index("--replication-factor") + 1] = "1"
    done = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "facestream"),
            *args,
            "--bootstrap-servers",
            kafka_broker.bootstrap_servers,
            "--topic-prefix",
            prefix,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    admin = AdminClient(client_config(kafka_broker))
    metadata = admin.list_topics(timeout=10)
    for name, n in parts.items():
        assert len(metadata.topics[prefix + name].partitions) == min(n, 2)
    # every topic carries the chart's settings as its own, not the broker's defaults
    declared = VALUES["topics"]["catalogue"]
    resources = [ConfigResource("topic", prefix + name) for name in parts]
    for resource, future in admin.describe_configs(resources, request_timeout=30).items():
        configs = future.result(timeout=30)
        spec = declared[resource.name.removeprefix(prefix)]
        entry = configs["max.message.bytes"]
        assert entry.value == str(VALUES["topics"]["maxMessageBytes"]), resource
        assert ConfigSource(entry.source) == ConfigSource.DYNAMIC_TOPIC_CONFIG, resource
        assert configs["retention.ms"].value == str(spec["retentionMs"]), resource
        assert configs["segment.ms"].value == str(spec["segmentMs"]), resource
        assert configs["cleanup.policy"].value == spec["cleanupPolicy"], resource


def test_image_user_matches_the_chart() -> None:
    text = (REPO / "services" / "Containerfile").read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\w+)", text, re.MULTILINE)
    assert len(stages) >= 2, "multi-stage build"
    final = text[text.rindex("\nFROM ") :]
    user = re.search(r"^USER\s+(\d+):(\d+)", final, re.MULTILINE)
    assert user is not None, "the runtime stage runs as a numeric, non-root user"
    assert int(user.group(1)) == VALUES["podSecurityContext"]["runAsUser"] != 0
    assert int(user.group(2)) == VALUES["podSecurityContext"]["runAsGroup"]
    assert re.search(r'^ENTRYPOINT \["facestream"\]', final, re.MULTILINE)
    assert VALUES["models"]["imageDir"] in text, "models.source=image must find the baked models"
    assert Path(REPO / "pyproject.toml").read_text().count("onnxruntime-gpu==") == 1
    gpu_pin = re.search(r"onnxruntime-gpu==([\d.]+)", (REPO / "pyproject.toml").read_text())
    assert gpu_pin and f"onnxruntime-gpu[cuda,cudnn]=={gpu_pin.group(1)}" in text
