"""The review web app's single sign-on as chart values (review.web.sso, issue 14).

The app takes the signed-in person from a header set by the SSO proxy in front of it
(ReviewSettings.review_sso_*). The values reach the review pod under the names the code reads, and
what the app would refuse at start-up (SSO without a trusted proxy or a reviewers' group) the chart
refuses at `helm install`; so does it, behind its own Ingress, SSO headers a client could send
itself (not set by the ingress's external authentication).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import annotated_types
import pytest
import yaml
from pydantic import ValidationError

from facestream.config_file import NO_ENV
from facestream.env_names import env_name
from facestream.review.settings import ReviewSettings, proxy_networks, sso_groups
from tests.fixtures.helm import CHART, CI_VALUES, K8sTools, Obj, Rendered, RenderResult, helm_template

Render = Callable[..., RenderResult]
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
SSO_SCHEMA = SCHEMA["properties"]["review"]["properties"]["web"]["properties"]["sso"]

FIELDS = {
    "userHeader": "review_sso_user_header",
    "groupsHeader": "review_sso_groups_header",
    "reviewerGroups": "review_sso_reviewer_groups",
    "logoutUrl": "review_sso_logout_url",
}
"""review.web.sso.<key> -> ReviewSettings.<field>."""

SSO: dict[str, Any] = {
    "userHeader": "X-Auth-Request-Email",
    "groupsHeader": "X-Auth-Request-Groups",
    "reviewerGroups": ["facestream-reviewers", "Facestream Supervisors"],
    "logoutUrl": "https://auth.city.example/oauth2/sign_out",
}
PROXIES = ["10.244.0.0/16"]
INGRESS: dict[str, Any] = {
    "enabled": True,
    "host": "review.city.example",
    "tlsSecretName": "review-tls",
    "sso": {
        "authUrl": "http://oauth2-proxy.auth.svc/oauth2/auth",
        "signinUrl": "https://auth.city.example/oauth2/start",
        "responseHeaders": ["X-Auth-Request-Email", "X-Auth-Request-Groups"],
    },
}


def render_with(tools: K8sTools, tmp_path: Path, web: dict[str, Any]) -> RenderResult:
    """The minimal variant plus review.web from a file (lists, which --set mangles)."""
    extra = tmp_path / "extra-values.yaml"
    extra.write_text(yaml.safe_dump({"review": {"web": web}}))
    return helm_template(tools, [CI_VALUES[0], extra])


def review_env(objects: list[Obj]) -> dict[str, str]:
    [deployment] = [
        o
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "review"
    ]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def settings_from_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ReviewSettings:
    """ReviewSettings as the review pod builds them from its environment."""
    for name, value in env.items():
        if name.startswith("FACESTREAM_REVIEW_"):
            monkeypatch.setenv(name, value)
    return ReviewSettings()


def code_settings(sso: dict[str, Any], proxies: list[str]) -> ReviewSettings:
    """ReviewSettings given these values as the chart passes them (nothing from env or file)."""
    given: dict[str, Any] = {
        f: ",".join(sso[k]) if k == "reviewerGroups" else sso[k] for k, f in FIELDS.items()
    }
    given["review_trusted_proxies"] = ",".join(proxies)
    return ReviewSettings(_env_prefix=NO_ENV, **given)


def test_the_env_names_are_the_codes() -> None:
    assert {k: env_name(ReviewSettings, f) for k, f in FIELDS.items()} == {
        "userHeader": "FACESTREAM_REVIEW_SSO_USER_HEADER",
        "groupsHeader": "FACESTREAM_REVIEW_SSO_GROUPS_HEADER",
        "reviewerGroups": "FACESTREAM_REVIEW_SSO_REVIEWER_GROUPS",
        "logoutUrl": "FACESTREAM_REVIEW_SSO_LOGOUT_URL",
    }


def test_sso_defaults_equal_the_code() -> None:
    sso = VALUES["review"]["web"]["sso"]
    assert set(sso) == set(FIELDS)
    defaults = {k: ReviewSettings.model_fields[f].default for k, f in FIELDS.items()}
    assert defaults["userHeader"] == sso["userHeader"] == "", "SSO is off unless asked for"
    assert sso["groupsHeader"] == defaults["groupsHeader"]
    assert sso["logoutUrl"] == defaults["logoutUrl"]
    assert ",".join(sso["reviewerGroups"]) == defaults["reviewerGroups"]


def test_the_schema_takes_what_the_code_takes() -> None:
    """Header names, the sign-out URL and the groups' length: the code's own patterns and bounds."""
    props = SSO_SCHEMA["properties"]
    for key in ("userHeader", "groupsHeader", "logoutUrl"):
        meta = ReviewSettings.model_fields[FIELDS[key]].metadata
        assert props[key]["pattern"] == next(m.pattern for m in meta if getattr(m, "pattern", None)), key
        assert props[key]["maxLength"] == next(
            m.max_length for m in meta if isinstance(m, annotated_types.MaxLen)
        )
    groups = props["reviewerGroups"]
    limit = next(
        m.max_length
        for m in ReviewSettings.model_fields[FIELDS["reviewerGroups"]].metadata
        if isinstance(m, annotated_types.MaxLen)
    )
    longest = groups["maxItems"] * groups["items"]["maxLength"] + groups["maxItems"] - 1
    assert longest <= limit, "the joined groups could exceed what the app takes"


def test_sso_values_reach_the_pod_and_the_code_reads_them(
    k8s_tools: K8sTools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = render_with(k8s_tools, tmp_path, {"trustedProxies": PROXIES, "sso": SSO, "ingress": INGRESS})
    assert result.returncode == 0, result.stderr
    env = review_env(result.objects)
    assert env[env_name(ReviewSettings, "review_sso_user_header")] == "X-Auth-Request-Email"
    assert (
        env[env_name(ReviewSettings, "review_sso_reviewer_groups")]
        == "facestream-reviewers,Facestream Supervisors"
    )
    settings = settings_from_env(env, monkeypatch)
    assert settings.review_sso_user_header == SSO["userHeader"]
    assert settings.review_sso_groups_header == SSO["groupsHeader"]
    assert sso_groups(settings.review_sso_reviewer_groups) == set(SSO["reviewerGroups"])
    assert settings.review_sso_logout_url == SSO["logoutUrl"]
    assert [str(n) for n in proxy_networks(settings.review_trusted_proxies)] == PROXIES
    # only the review pod gets them
    for d in result.objects:
        if d["kind"] == "Deployment" and d["metadata"]["labels"]["app.kubernetes.io/component"] != "review":
            names = {e["name"] for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert not {n for n in names if n.startswith("FACESTREAM_REVIEW_SSO_")}


def test_every_variant_passes_its_sso_values(
    rendered: dict[str, Rendered], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SSO off (the defaults) reaches the code as off: password sign-in, as before."""
    for variant in rendered.values():
        chosen = (
            yaml.safe_load(variant.values_file.read_text()).get("review", {}).get("web", {}).get("sso", {})
        )
        sso = {**VALUES["review"]["web"]["sso"], **chosen}
        settings = settings_from_env(review_env(variant.objects), monkeypatch)
        assert settings.review_sso_user_header == sso["userHeader"], variant.name
        assert sso_groups(settings.review_sso_reviewer_groups) == set(sso["reviewerGroups"]), variant.name
        assert settings.review_sso_logout_url == sso["logoutUrl"], variant.name


def test_header_names_match_the_ingress_whatever_their_case(k8s_tools: K8sTools, tmp_path: Path) -> None:
    """HTTP header names are case-insensitive: ingress-nginx sets x-auth-request-email as well."""
    ingress = {
        **INGRESS,
        "sso": {**INGRESS["sso"], "responseHeaders": ["x-auth-request-email", "X-AUTH-REQUEST-GROUPS"]},
    }
    result = render_with(k8s_tools, tmp_path, {"trustedProxies": PROXIES, "sso": SSO, "ingress": ingress})
    assert result.returncode == 0, result.stderr


def test_a_proxy_of_your_own_needs_no_chart_ingress(k8s_tools: K8sTools, tmp_path: Path) -> None:
    """Without the chart's Ingress (oauth2-proxy as the reverse proxy, X-Forwarded-Email) the chart
    cannot see the proxy: only what the app itself needs is checked."""
    sso = {**SSO, "userHeader": "X-Forwarded-Email"}
    result = render_with(k8s_tools, tmp_path, {"trustedProxies": PROXIES, "sso": sso})
    assert result.returncode == 0, result.stderr


# -- what the app would refuse at start-up, refused at install ----------------------------------------


@pytest.mark.parametrize(
    ("sso", "proxies", "said"),
    [
        ({**SSO}, [], "review.web.sso.userHeader needs review.web.trustedProxies"),
        (
            {**SSO, "reviewerGroups": []},
            PROXIES,
            "review.web.sso.userHeader needs review.web.sso.reviewerGroups",
        ),
        ({**SSO, "groupsHeader": ""}, PROXIES, "review.web.sso.userHeader needs review.web.sso.groupsHeader"),
    ],
    ids=["no-trusted-proxy", "no-reviewers-group", "no-groups-header"],
)
def test_what_the_app_refuses_the_chart_refuses(
    k8s_tools: K8sTools, tmp_path: Path, sso: dict[str, Any], proxies: list[str], said: str
) -> None:
    with pytest.raises(ValidationError):
        code_settings(sso, proxies)  # the app would not start: the pod would crash-loop
    result = render_with(k8s_tools, tmp_path, {"trustedProxies": proxies, "sso": sso})
    assert result.returncode != 0 and result.objects == []
    assert said in result.stderr, result.stderr


def test_what_the_chart_takes_the_app_takes() -> None:
    assert code_settings(SSO, PROXIES).review_sso_user_header == SSO["userHeader"]
    off = {**SSO, "userHeader": "", "reviewerGroups": []}
    assert code_settings(off, []).review_sso_user_header == ""  # off needs neither


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (
            {"sso": {"authUrl": "", "signinUrl": "", "responseHeaders": []}},
            "needs review.web.ingress.sso.authUrl",
        ),
        (
            {"sso": {**INGRESS["sso"], "responseHeaders": ["X-Auth-Request-Groups"]}},
            "responseHeaders must list X-Auth-Request-Email",
        ),
        (
            {"sso": {**INGRESS["sso"], "responseHeaders": ["X-Auth-Request-Email"]}},
            "responseHeaders must list X-Auth-Request-Groups",
        ),
    ],
    ids=[
        "no-sso-at-the-ingress",
        "user-header-not-set-by-the-ingress",
        "groups-header-not-set-by-the-ingress",
    ],
)
def test_behind_the_charts_ingress_a_client_cannot_send_the_headers(
    k8s_tools: K8sTools, tmp_path: Path, change: dict[str, Any], said: str
) -> None:
    """ingress-nginx replaces only the headers listed in auth-response-headers: any other passes
    from the client to the app, which believes it (the ingress is a trusted proxy)."""
    result = render_with(
        k8s_tools, tmp_path, {"trustedProxies": PROXIES, "sso": SSO, "ingress": {**INGRESS, **change}}
    )
    assert result.returncode != 0 and result.objects == []
    assert said in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("sets", "said"),
    [
        (
            ["review.env.FACESTREAM_REVIEW_SSO_USER_HEADER=X-Auth-Request-Email"],
            "the chart sets it from review.web.sso.userHeader",
        ),
        (
            ["review.env.FACESTREAM_REVIEW_SSO_REVIEWER_GROUPS=a"],
            "the chart sets it from review.web.sso.reviewerGroups",
        ),
        (
            ["review.env.FACESTREAM_REVIEW_SSO_GROUPS_HEADER=X-G"],
            "the chart sets it from review.web.sso.groupsHeader",
        ),
        (
            ["review.env.FACESTREAM_REVIEW_SSO_LOGOUT_URL=/out"],
            "the chart sets it from review.web.sso.logoutUrl",
        ),
        (["review.web.sso.userHeader=X Auth"], "userHeader"),
        (["review.web.sso.logoutUrl=http://auth.city.example/oauth2/sign_out"], "logoutUrl"),
        (["review.web.sso.reviewerGroups={a\\,b}"], "reviewerGroups"),
        (["review.web.sso.other=1"], "additional properties 'other' not allowed"),
    ],
)
def test_bad_sso_values_are_refused(k8s_tools: K8sTools, sets: list[str], said: str) -> None:
    """The SSO env vars are the chart's now (a duplicate in review.env would silently win or lose);
    values the code would refuse fail the schema."""
    result = helm_template(k8s_tools, [CI_VALUES[0]], sets)
    assert result.returncode != 0, f"{sets} rendered"
    assert said in result.stderr, result.stderr
