"""The deployment's settings file in the chart (values `config`, issue 14).

A `config` mapping becomes one ConfigMap (key facestream.yaml) that every facestream container
mounts and names in FACESTREAM_CONFIG, and facestream's own loader reads the rendered file as the
values said. The chart refuses what must not be in it (secrets, a section facestream refuses,
the settings the chart passes itself as env vars, which would silently win over the file); what
it cannot know (an unknown key, a bad value) facestream refuses with the file's line number, the
topic Job's own command included, so a bad file fails `helm install` at the hook.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import typing
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from facestream.cliargs import settings_from
from facestream.config_file import CONFIG_ENV, load_config, section_of, settings_models
from facestream.env_names import env_name
from facestream.errors import ConfigError
from facestream.review.settings import ReviewSettings
from facestream.settings import DetectorSettings, KafkaSettings, MatcherSettings, SamplerSettings
from tests.fixtures.helm import CI_VALUES, REPO, K8sTools, Obj, Rendered, RenderResult, helm_template

MINIMAL = CI_VALUES[0]
HOOK = "helm.sh/hook"
KEY = "facestream.yaml"
SERVICES = {"frame-sampler", "detector", "embedder", "matcher", "review"}

CONFIG: dict[str, Any] = {
    "detector": {"det_score_threshold": 0.7, "track_faces": False, "min_face_px": 40},
    "matcher": {"match_threshold": 0.45, "top_k": 5},
    "sampler": {"fps": 1.5},
    "kafka": {"librdkafka_debug": "cgrp,fetch"},
    "review": {"review_window_s": 3600},
}
"""Settings the chart does not pass itself, from several sections and of several types."""

MODELS = settings_models()
SECRETS = [
    (section_of(m), field)
    for m in MODELS
    for field, info in m.model_fields.items()
    if info.annotation is SecretStr or SecretStr in typing.get_args(info.annotation)
]
"""Every secret setting of the code (SecretStr), wherever it is declared."""


def render_with(
    tools: K8sTools, tmp_path: Path, values: dict[str, Any], base: Path = MINIMAL
) -> RenderResult:
    """Render `base` plus `values` from a file (floats and booleans, which --set turns into text)."""
    extra = tmp_path / "extra-values.yaml"
    extra.write_text(yaml.safe_dump(values))
    return helm_template(tools, [base, extra])


def ok(result: RenderResult) -> list[Obj]:
    assert result.returncode == 0, result.stderr
    return result.objects


def refused(result: RenderResult, said: str) -> str:
    assert result.returncode != 0, "rendered"
    assert said in result.stderr, result.stderr
    assert result.objects == []
    return result.stderr


def pod_specs(objects: list[Obj]) -> Iterator[tuple[Obj, dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield o, o["spec"]["template"]["spec"]
        elif o["kind"] == "Pod":
            yield o, o["spec"]


def facestream_containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Containers running the image's entrypoint, `facestream`, with settings (the gallery's has a
    command of its own, `facestream gallery serve-lite`, which reads none)."""
    return [c for c in spec.get("initContainers", []) + spec["containers"] if "command" not in c]


def env_of(container: dict[str, Any]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def config_maps(objects: list[Obj]) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}


def the_file(objects: list[Obj]) -> str:
    """facestream.yaml of the release's own ConfigMap (not the topic Job's hook copy)."""
    (found,) = [
        m["data"][KEY]
        for m in config_maps(objects).values()
        if KEY in m.get("data", {}) and HOOK not in m["metadata"].get("annotations", {})
    ]
    return str(found)


def file_read_by(container: dict[str, Any], spec: dict[str, Any], objects: list[Obj]) -> tuple[Obj, str]:
    """The ConfigMap and the text a container reads at FACESTREAM_CONFIG, through its mounts."""
    path = PurePosixPath(str(env_of(container)[CONFIG_ENV]))
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for m in container.get("volumeMounts", []):
        mount = PurePosixPath(m["mountPath"])
        if mount == path.parent and "subPath" not in m:
            key = path.name
        elif mount == path and "subPath" in m:
            key = m["subPath"]
        else:
            continue
        assert m.get("readOnly") is True, f"{container['name']}: the settings file is mounted writable"
        source = config_maps(objects)[volumes[m["name"]]["configMap"]["name"]]
        return source, str(source["data"][key])
    raise AssertionError(f"{container['name']}: nothing mounted at {path}")


def plain_pod_env(container: dict[str, Any], config: Path) -> dict[str, str]:
    """A container's environment as its pod has it: Secret references given a stand-in value, and
    FACESTREAM_CONFIG pointing at a local copy of the mounted file."""
    env = {e["name"]: str(e.get("value", "stand-in")) for e in container.get("env", [])}
    assert CONFIG_ENV in env, f"{container['name']} does not read the settings file"
    env[CONFIG_ENV] = str(config)
    return env


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("FACESTREAM_"):
            monkeypatch.delenv(name)
    return monkeypatch


def line_of(text: str, key: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.strip().startswith(f"{key}:"))


# -- where the file goes ----------------------------------------------------------------------------


def test_every_facestream_container_reads_the_file(k8s_tools: K8sTools, tmp_path: Path) -> None:
    """Services, their init containers, the topic Job and the `helm test` Pod: FACESTREAM_CONFIG names
    a read-only mount of the ConfigMap, which holds the values given; the milvus-lite gallery gets none."""
    objects = ok(render_with(k8s_tools, tmp_path, {"config": CONFIG}))
    readers = set()
    for obj, spec in pod_specs(objects):
        for c in facestream_containers(spec):
            where = f"{obj['kind']} {obj['metadata']['name']}/{c['name']}"
            assert CONFIG_ENV in env_of(c), f"{where} does not read the settings file"
            source, text = file_read_by(c, spec, objects)
            assert yaml.safe_load(text) == CONFIG, where
            is_hook = HOOK in source["metadata"].get("annotations", {})
            if obj["kind"] == "Job":
                # a pre-install hook runs before the release's objects exist: its copy is a hook too,
                # made before the Job (a lower weight) for both events the Job runs on
                hook = source["metadata"].get("annotations", {})
                assert HOOK in hook, f"{where} reads a ConfigMap that does not exist yet at pre-install"
                assert set(hook[HOOK].split(",")) == set(obj["metadata"]["annotations"][HOOK].split(","))
                job_weight = int(obj["metadata"]["annotations"].get("helm.sh/hook-weight", "0"))
                assert int(hook["helm.sh/hook-weight"]) < job_weight
            else:
                assert not is_hook, f"{where} reads a hook copy, deleted after the hooks"
            readers.add((obj["kind"], c["name"]))
        if obj["kind"] == "StatefulSet":
            for c in spec["containers"]:
                assert CONFIG_ENV not in env_of(c) and c["command"][:3] == [
                    "facestream",
                    "gallery",
                    "serve-lite",
                ]
    assert {("Deployment", s) for s in SERVICES} <= readers
    assert {("Deployment", "models"), ("Job", "topics"), ("Pod", "cluster-status")} <= readers


def test_no_config_renders_no_file(
    k8s_tools: K8sTools, tmp_path: Path, rendered: dict[str, Rendered]
) -> None:
    """Empty (the default): no ConfigMap, no FACESTREAM_CONFIG, no volume, no checksum."""
    variants = {"config: {}": ok(render_with(k8s_tools, tmp_path, {"config": {}}))}
    variants |= {
        v.name: v.objects
        for v in rendered.values()
        if not yaml.safe_load(v.values_file.read_text()).get("config")
    }
    assert len(variants) > 2
    for name, objects in variants.items():
        assert not [m for m in config_maps(objects).values() if KEY in m.get("data", {})], name
        for obj, spec in pod_specs(objects):
            assert "config" not in {v["name"] for v in spec.get("volumes", [])}, name
            for c in spec.get("initContainers", []) + spec["containers"]:
                assert CONFIG_ENV not in env_of(c), f"{name} {c['name']}"
            annotations = (
                obj["spec"]["template"]["metadata"].get("annotations", {})
                if "template" in obj["spec"]
                else {}
            )
            assert "checksum/config" not in annotations, name


def test_a_changed_file_rolls_the_services(k8s_tools: K8sTools, tmp_path: Path) -> None:
    """The pods carry the file's checksum: a ConfigMap change alone would not restart them."""

    def checksums(values: dict[str, Any]) -> dict[str, str]:
        objects = ok(render_with(k8s_tools, tmp_path, values))
        return {
            d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["metadata"]
            .get("annotations", {})
            .get("checksum/config", "")
            for d in objects
            if d["kind"] == "Deployment"
        }

    before = checksums({"config": CONFIG})
    assert set(before) == SERVICES and len(set(before.values())) == 1 and "" not in before.values()
    changed = {**CONFIG, "detector": {**CONFIG["detector"], "det_score_threshold": 0.71}}
    after = checksums({"config": changed})
    assert all(after[s] != before[s] for s in SERVICES), "a changed file leaves the pods as they are"
    assert checksums({"config": CONFIG}) == before, "the same file rolls nothing"
    # the service's own pod annotations stay beside it
    objects = ok(
        render_with(
            k8s_tools, tmp_path, {"config": CONFIG, "detector": {"podAnnotations": {"team": "vision"}}}
        )
    )
    (detector,) = [
        d
        for d in objects
        if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/component"] == "detector"
    ]
    assert detector["spec"]["template"]["metadata"]["annotations"] == {
        "team": "vision",
        "checksum/config": before["detector"],
    }


def test_manifests_with_the_file_validate(
    k8s_tools: K8sTools, tmp_path: Path, rendered: dict[str, Rendered]
) -> None:
    """Strictly, as tests/helm/test_manifests_valid.py checks the ci variants (one of which has a
    `config`, so every loop over them covers it too)."""
    import kubernetes_validate  # installed by scripts/k8s-tools.sh, which k8s_tools runs

    from tests.helm.test_manifests_valid import KUBE_VERSIONS, is_custom

    assert any(yaml.safe_load(v.values_file.read_text()).get("config") for v in rendered.values())
    objects = ok(render_with(k8s_tools, tmp_path, {"config": CONFIG}))
    checked = 0
    for obj in objects:
        if is_custom(obj):
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
        checked += 1
    assert checked > 20


# -- what facestream reads --------------------------------------------------------------------------


def test_the_rendered_file_is_what_facestream_reads(
    k8s_tools: K8sTools, tmp_path: Path, clean_env: pytest.MonkeyPatch
) -> None:
    objects = ok(render_with(k8s_tools, tmp_path, {"config": CONFIG}))
    path = tmp_path / KEY
    path.write_text(the_file(objects))
    config = load_config(path)
    assert config.values_for(DetectorSettings)["det_score_threshold"].value == "0.7"
    assert config.values_for(DetectorSettings)["track_faces"].value == "false"
    assert config.values_for(MatcherSettings)["top_k"].value == "5"
    assert config.values_for(SamplerSettings)["fps"].value == "1.5"
    assert config.values_for(KafkaSettings)["librdkafka_debug"].value == "cgrp,fetch"
    assert config.values_for(ReviewSettings)["review_window_s"].value == "3600"
    assert {s: set(e) for s, e in config.sections.items()} == {s: set(v) for s, v in CONFIG.items()}

    # The detector's pod: the chart's env and the file, merged as every command merges them.
    (detector,) = [
        c
        for d in objects
        if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/component"] == "detector"
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    for name, value in plain_pod_env(detector, path).items():
        clean_env.setenv(name, value)
    settings = settings_from(argparse.Namespace(), DetectorSettings)
    assert (settings.det_score_threshold, settings.track_faces, settings.min_face_px) == (0.7, False, 40)
    kafka = settings_from(argparse.Namespace(), KafkaSettings)
    assert kafka.librdkafka_debug == "cgrp,fetch"  # from the file
    assert kafka.bootstrap_servers == env_of(detector)["FACESTREAM_KAFKA_BOOTSTRAP_SERVERS"]  # from the chart


def test_every_ci_file_with_a_config_renders_one_facestream_loads(
    rendered: dict[str, Rendered], tmp_path: Path
) -> None:
    found = 0
    for variant in rendered.values():
        values = yaml.safe_load(variant.values_file.read_text()).get("config")
        if not values:
            continue
        path = tmp_path / f"{variant.name}.yaml"
        path.write_text(the_file(variant.objects))
        config = load_config(path)
        assert {s: {k: e.value for k, e in f.items()} for s, f in config.sections.items()} == {
            s: {k: str(v) for k, v in f.items()} for s, f in values.items()
        }, variant.name
        found += 1
    assert found


@pytest.mark.parametrize(
    ("section", "given", "said"),
    [
        ("detector", {"no_such": 1}, "detector.no_such: unknown setting"),
        ("detector", {"det_score_threshold": 2}, "detector.det_score_threshold: Input should be less than"),
        (
            "matcher",
            {"det_score_threshold": 0.5},
            "matcher.det_score_threshold: unknown setting; it belongs under",
        ),
    ],
)
def test_what_the_chart_cannot_know_facestream_refuses_by_line(
    k8s_tools: K8sTools, tmp_path: Path, section: str, given: dict[str, Any], said: str
) -> None:
    """The chart does not keep a copy of every setting and its bounds: it renders the file, and
    facestream refuses it naming the file, the line and the key."""
    objects = ok(render_with(k8s_tools, tmp_path, {"config": {"sampler": {"fps": 2}, section: given}}))
    text = the_file(objects)
    path = tmp_path / KEY
    path.write_text(text)
    with pytest.raises(ConfigError) as refusal:
        load_config(path)
    assert str(refusal.value).startswith(f"{path}:{line_of(text, next(iter(given)))}: {said}"), refusal.value


def test_the_topic_job_fails_a_bad_file_at_install(k8s_tools: K8sTools, tmp_path: Path) -> None:
    """The pre-install/pre-upgrade Job runs `facestream topics create` with the file: a bad key stops
    it (exit 2, the line named) before it reaches Kafka, so `helm install` fails at the hook."""
    objects = ok(
        render_with(k8s_tools, tmp_path, {"config": {"detector": {"min_face_px": 32, "no_such": 1}}})
    )
    (job,) = [o for o in objects if o["kind"] == "Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    text = the_file(objects)
    path = tmp_path / KEY
    path.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACESTREAM_")}
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "facestream"), *container["args"]],
        env={**env, **plain_pod_env(container, path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"{path}:{line_of(text, 'no_such')}: detector.no_such: unknown setting" in done.stderr


# -- what the chart refuses -------------------------------------------------------------------------


@pytest.mark.parametrize(("section", "field"), SECRETS, ids=[f"{s}.{f}" for s, f in SECRETS])
def test_secrets_are_refused(k8s_tools: K8sTools, tmp_path: Path, section: str, field: str) -> None:
    """Every SecretStr setting: a ConfigMap is readable by whoever reads the namespace's ConfigMaps
    and stays in the release history; the refusal names the Secret value instead, not the secret."""
    stderr = refused(
        render_with(k8s_tools, tmp_path, {"config": {section: {field: "s3cret-value"}}}),
        f"config.{section}.{field} is a secret",
    )
    assert "Secret: set " in stderr and "s3cret-value" not in stderr


def test_the_secrets_are_the_documented_ones() -> None:
    assert {("kafka", "sasl_password"), ("gallery", "gallery_token"), ("photo", "photo_key")} <= set(SECRETS)


@pytest.mark.parametrize("model", MODELS, ids=section_of)
def test_the_charts_sections_are_the_codes(
    k8s_tools: K8sTools, tmp_path: Path, model: type[BaseSettings]
) -> None:
    """Each section facestream reads renders and loads."""
    section = section_of(model)
    result = render_with(k8s_tools, tmp_path, {"config": {section: {}}})
    path = tmp_path / KEY
    path.write_text(the_file(ok(result)))
    assert load_config(path).sections == {section: {}}


def test_a_section_facestream_does_not_have_is_refused(k8s_tools: K8sTools, tmp_path: Path) -> None:
    stderr = refused(
        render_with(k8s_tools, tmp_path, {"config": {"detectr": {"min_face_px": 32}}}),
        "config.detectr: unknown section (sections: ",
    )
    listed = stderr.split("(sections: ", 1)[1].split(")", 1)[0].split(", ")
    assert set(listed) == {section_of(m) for m in MODELS}


def chart_set_settings(
    k8s_tools: K8sTools, tmp_path: Path, rendered: dict[str, Rendered]
) -> set[tuple[str, str]]:
    """(section, field) of every env var the chart sets itself in any container: every ci variant,
    plus the options they leave off (a mutual-TLS client certificate, the review app's SSO). Env
    vars an operator gives in <service>.env are theirs, not the chart's."""
    variants = [(v.values_file, v.objects) for v in rendered.values()]
    extras = [
        {"kafka": {"securityProtocol": "SSL", "tls": {"caSecret": "ca", "clientCertSecret": "client"}}},
        {
            "review": {
                "web": {
                    "trustedProxies": ["10.0.0.0/8"],
                    "sso": {"userHeader": "X-Auth-Request-Email", "reviewerGroups": ["reviewers"]},
                }
            }
        },
    ]
    for n, extra in enumerate(extras):
        file = tmp_path / f"extra-{n}.yaml"
        file.write_text(yaml.safe_dump(extra))
        variants.append((file, ok(helm_template(k8s_tools, [MINIMAL, file]))))
    setting = {env_name(m, f): (section_of(m), f) for m in MODELS for f in m.model_fields}
    out = set()
    for values_file, objects in variants:
        values = yaml.safe_load(values_file.read_text()) or {}
        own = {n for v in values.values() if isinstance(v, dict) for n in (v.get("env") or {})}
        for _, spec in pod_specs(objects):
            for c in facestream_containers(spec):
                out |= {setting[n] for n in env_of(c) if n in setting and n not in own}
    return out


def test_settings_the_chart_sets_are_refused_in_the_file(
    k8s_tools: K8sTools, tmp_path: Path, rendered: dict[str, Rendered]
) -> None:
    """An env var wins over the file, so a setting the chart passes would be silently ignored there:
    each one is refused, naming what to set instead."""
    owned = chart_set_settings(k8s_tools, tmp_path, rendered)
    assert {
        ("kafka", "bootstrap_servers"),
        ("runtime", "log_level"),
        ("review", "review_sso_user_header"),
    } <= owned
    assert len(owned) > 30
    # not an env var of the chart, but the review app's group id: the ACLs, KEDA and `cluster status`
    # know it as review.consumerGroup
    owned.add(("review", "review_app_id"))
    for section, field in sorted(owned):
        result = render_with(k8s_tools, tmp_path, {"config": {section: {field: "1"}}})
        said = (
            f"config.{section}.{field} is a secret"
            if (section, field) in SECRETS
            else f"config.{section}.{field}: the chart sets this itself"
        )
        refused(result, said)


@pytest.mark.parametrize(
    ("config", "is_refused"),
    [
        ({"matcher": {"episode_gap_s": DetectorSettings().track_refresh_s}}, True),  # the refresh's default
        ({"matcher": {"episode_gap_s": DetectorSettings().track_refresh_s + 0.5}}, False),
        ({"detector": {"track_refresh_s": MatcherSettings().episode_gap_s}}, True),  # the gap's default
        ({"detector": {"track_refresh_s": MatcherSettings().episode_gap_s - 0.5}}, False),
        ({"detector": {"track_refresh_s": 5}, "matcher": {"episode_gap_s": 4}}, True),
        ({"detector": {"track_faces": False}, "matcher": {"episode_gap_s": 1}}, False),  # no tracks
    ],
    ids=["gap-at-default-refresh", "gap-above-it", "refresh-at-default-gap", "refresh-below-it", "both-set",
         "untracked"],
)  # fmt: skip
def test_an_episode_gap_not_above_the_track_refresh_is_refused(
    k8s_tools: K8sTools, tmp_path: Path, config: dict[str, Any], is_refused: bool
) -> None:
    """With tracks a face in view is matched only every track_refresh_s: a gap not above it would
    make each match a new candidate. What the chart assumes for a setting left out is the code's
    default (the first four cases fail if either drifts)."""
    result = render_with(k8s_tools, tmp_path, {"config": config})
    if is_refused:
        refused(result, "config.matcher.episode_gap_s")
        assert "must be above config.detector.track_refresh_s" in result.stderr
    else:
        ok(result)


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"config": {"runtime": {"log_level": "DEBUG"}}}, "set logLevel instead"),
        ({"config": {"gallery": {"search_ef": 64}}}, "set gallery.index.searchEf instead"),
        ({"config": {"review": {"review_app_id": "x"}}}, "set review.consumerGroup instead"),
        ({"config": {"kafka": {"client_id": "x"}}}, "(facestream-<service>, one per service)"),
        (
            {"config": {"audit": {"audit_key_file": "/k"}}},
            "set accountability.auditKeySecret (the chart mounts no",
        ),
        (
            {"config": {"detector": 5}},
            "at '/config/detector': got number",
        ),  # the schema: a section holds settings
        (
            {"config": {"detector": {"min_face_px": [32]}}},
            "at '/config/detector/min_face_px': got array",
        ),  # one value
        ({"detector": {"env": {CONFIG_ENV: "/etc/x.yaml"}}}, "detector.env.FACESTREAM_CONFIG"),
    ],
)
def test_refusals_say_what_to_do(
    k8s_tools: K8sTools, tmp_path: Path, values: dict[str, Any], said: str
) -> None:
    refused(render_with(k8s_tools, tmp_path, values), said)
