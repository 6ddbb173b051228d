"""Per-service settings the chart passes reach the pods under the names the code reads.

The review web app behind an ingress: unless it trusts the ingress (`review.web.trustedProxies`)
every reviewer shares the ingress's one sign-in allowance, so these values must reach the pod as
ReviewSettings reads them. The detector's `--max-future-skew-s` is not a chart value (stage tuning
goes through `detector.env`, like the detector's other settings): the pod gets the code's default,
and the env override reaches DetectorSettings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import annotated_types
import pytest
import yaml

from facestream.review.settings import ReviewSettings, proxy_networks
from facestream.settings import DetectorSettings
from tests.fixtures.helm import CHART, CI_VALUES, K8sTools, Obj, Rendered, RenderResult, helm_template

Render = Callable[..., RenderResult]

VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
WEB_SCHEMA = SCHEMA["properties"]["review"]["properties"]["web"]["properties"]

SIGNIN_FIELDS = {
    "windowSeconds": "review_signin_window_s",
    "perAccountClient": "review_signin_per_account_client",
    "perClient": "review_signin_per_client",
    "perAccount": "review_signin_per_account",
}
"""review.web.signin.<key> -> ReviewSettings.<field> (env FACESTREAM_<FIELD>)."""

SKEW_ENV = "FACESTREAM_DETECTOR_MAX_FUTURE_SKEW_S"


def container(objects: list[Obj], component: str) -> dict[str, Any]:
    """The main container of one component's Deployment."""
    [deployment] = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return dict(deployment["spec"]["template"]["spec"]["containers"][0])


def plain_env(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", []) if "value" in e}


def review_settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ReviewSettings:
    """ReviewSettings as the review pod reads them from its environment."""
    for name, value in env.items():
        if name.startswith("FACESTREAM_REVIEW_"):
            monkeypatch.setenv(name, value)
    return ReviewSettings()


def render_with(tools: K8sTools, tmp_path: Path, values: dict[str, Any]) -> RenderResult:
    """Render the minimal variant plus `values` from a file (floats and lists, which --set mangles)."""
    extra = tmp_path / "extra-values.yaml"
    extra.write_text(yaml.safe_dump(values))
    return helm_template(tools, [CI_VALUES[0], extra])


# -- the review web app -------------------------------------------------------------------------------


def test_review_web_defaults_equal_the_code() -> None:
    web = VALUES["review"]["web"]
    code = ReviewSettings()
    assert web["trustedProxies"] == [] and code.review_trusted_proxies == ""
    assert web["hstsMaxAgeSeconds"] == code.review_hsts_max_age_s
    assert web["cookieSecure"] is code.review_cookie_secure is True
    assert {key: getattr(code, field) for key, field in SIGNIN_FIELDS.items()} == web["signin"]
    # the one deliberate difference: the chart's web app sits behind a TLS-terminating ingress
    assert web["behindTls"] is True and code.review_behind_tls is False


def test_signin_bounds_equal_the_code() -> None:
    """What the schema accepts, ReviewSettings accepts, and the other way round."""
    schema = WEB_SCHEMA["signin"]["properties"]
    assert set(schema) == set(SIGNIN_FIELDS)
    for key, field in SIGNIN_FIELDS.items():
        bounds = {type(m): m for m in ReviewSettings.model_fields[field].metadata}
        if annotated_types.Gt in bounds:
            assert schema[key]["exclusiveMinimum"] == bounds[annotated_types.Gt].gt, key
        else:
            assert schema[key]["minimum"] == bounds[annotated_types.Ge].ge, key
        assert schema[key]["maximum"] == bounds[annotated_types.Le].le, key
    hsts = {type(m): m for m in ReviewSettings.model_fields["review_hsts_max_age_s"].metadata}
    assert WEB_SCHEMA["hstsMaxAgeSeconds"]["minimum"] == hsts[annotated_types.Ge].ge
    assert WEB_SCHEMA["hstsMaxAgeSeconds"]["maximum"] == hsts[annotated_types.Le].le


def test_every_variant_passes_its_review_web_values(
    rendered: dict[str, Rendered], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variant in rendered.values():
        chosen = yaml.safe_load(variant.values_file.read_text()).get("review", {}).get("web", {})
        web = {**VALUES["review"]["web"], **chosen}
        env = plain_env(container(variant.objects, "review"))
        assert env["FACESTREAM_REVIEW_TRUSTED_PROXIES"] == ",".join(web["trustedProxies"]), variant.name
        settings = review_settings_from(env, monkeypatch)
        assert settings.review_behind_tls is web["behindTls"], variant.name
        assert settings.review_hsts_max_age_s == web["hstsMaxAgeSeconds"], variant.name
        assert {k: getattr(settings, f) for k, f in SIGNIN_FIELDS.items()} == web["signin"], variant.name
    assert any(
        yaml.safe_load(v.values_file.read_text()).get("review", {}).get("web", {}).get("trustedProxies")
        for v in rendered.values()
    ), "some ci variant shows trusted proxies set"


def test_review_web_values_reach_the_pod_and_the_code_reads_them(
    k8s_tools: K8sTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = {
        "trustedProxies": ["10.244.0.0/16", "192.168.7.3", "fd00:10:244::/56"],
        "behindTls": False,
        "hstsMaxAgeSeconds": 63_072_000,  # large enough that a bare float would print as 6.3072e+07
        "signin": {"windowSeconds": 120.5, "perAccountClient": 3, "perClient": 12, "perAccount": 100_000},
    }
    result = render_with(k8s_tools, tmp_path, {"review": {"web": web}})
    assert result.returncode == 0, result.stderr
    env = plain_env(container(result.objects, "review"))
    assert env["FACESTREAM_REVIEW_TRUSTED_PROXIES"] == "10.244.0.0/16,192.168.7.3,fd00:10:244::/56"
    settings = review_settings_from(env, monkeypatch)
    assert [str(n) for n in proxy_networks(settings.review_trusted_proxies)] == [
        "10.244.0.0/16",
        "192.168.7.3/32",
        "fd00:10:244::/56",
    ]
    assert settings.review_behind_tls is False
    assert settings.review_hsts_max_age_s == 63_072_000
    assert {key: getattr(settings, field) for key, field in SIGNIN_FIELDS.items()} == web["signin"]
    # only the review pod gets them
    for other in ("frame-sampler", "detector", "embedder", "matcher"):
        assert not [
            n for n in plain_env(container(result.objects, other)) if n.startswith("FACESTREAM_REVIEW_")
        ]


@pytest.mark.parametrize(
    "proxy", ["10.0.0.0/8", "172.16.4.9", "0.0.0.0/0", "::1", "2001:db8::/32", "fd00::7/128"]
)
def test_trusted_proxies_the_schema_takes_the_code_takes(
    k8s_tools: K8sTools, tmp_path: Path, proxy: str
) -> None:
    result = render_with(k8s_tools, tmp_path, {"review": {"web": {"trustedProxies": [proxy]}}})
    assert result.returncode == 0, result.stderr
    assert len(proxy_networks(proxy)) == 1


@pytest.mark.parametrize(
    "proxy",
    ["ingress-nginx", "10.0.0.256", "10.0.0.0/33", "010.0.0.1", "10.0.0.0,10.1.0.0", "fd00::/129", ""],
)
def test_trusted_proxies_that_are_no_address_are_refused(
    k8s_tools: K8sTools, tmp_path: Path, proxy: str
) -> None:
    """A typo fails `helm template`, not the review pod at start-up (or, worse, trusts nobody)."""
    result = render_with(k8s_tools, tmp_path, {"review": {"web": {"trustedProxies": [proxy]}}})
    assert result.returncode != 0, f"{proxy!r} rendered"
    assert "trustedProxies" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["review.web.signin.perAccountClient=0"], "perAccountClient"),
        (["review.web.signin.perClient=10001"], "perClient"),
        (["review.web.hstsMaxAgeSeconds=-1"], "hstsMaxAgeSeconds"),
        (["review.web.behindTls=maybe"], "behindTls"),
        (["review.web.signin.lockout=1"], "additional properties 'lockout' not allowed"),
        (
            ["review.env.FACESTREAM_REVIEW_TRUSTED_PROXIES=10.0.0.0/8"],
            "the chart sets it from review.web.trustedProxies",
        ),
    ],
)
def test_bad_review_web_values_are_refused(render: Render, sets: list[str], message: str) -> None:
    result = render(sets=sets)
    assert result.returncode != 0, f"{sets} rendered"
    assert message in result.stderr, result.stderr


# -- the detector's future-skew limit ----------------------------------------------------------------


def test_detector_pods_get_the_code_default_future_skew(
    rendered: dict[str, Rendered], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chart passes nothing, so the detector dead-letters frames more than 300 s ahead."""
    default = DetectorSettings.model_fields["max_future_skew_s"].default
    assert default == 300.0
    for variant in rendered.values():
        env = plain_env(container(variant.objects, "detector"))
        assert SKEW_ENV not in env, variant.name
        monkeypatch.delenv(SKEW_ENV, raising=False)
        for name, value in env.items():
            if name.startswith("FACESTREAM_DETECTOR_"):
                monkeypatch.setenv(name, value)
        assert DetectorSettings().max_future_skew_s == default, variant.name


def test_detector_future_skew_through_env_reaches_the_code(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = render(sets=[f"detector.env.{SKEW_ENV}=900"])
    assert result.returncode == 0, result.stderr
    env = plain_env(container(result.objects, "detector"))
    assert env[SKEW_ENV] == "900"
    monkeypatch.setenv(SKEW_ENV, env[SKEW_ENV])
    assert DetectorSettings().max_future_skew_s == 900.0
