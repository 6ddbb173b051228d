"""The Kubernetes side of `facestream cluster status`: a release's Deployments and their replicas.

Pure functions over the kubernetes client's own model objects (so they are tested without an API
server), and one small function that lists them from a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facestream.errors import ConfigError, FacestreamError

COMPONENT = "app.kubernetes.io/component"
INSTANCE = "app.kubernetes.io/instance"
PART_OF = "app.kubernetes.io/part-of"


@dataclass(frozen=True, slots=True)
class Workload:
    component: str
    name: str
    desired: int
    ready: int
    available: int
    updated: int
    env: tuple[tuple[str, str], ...]
    """The first container's literal environment values (e.g. its FACESTREAM_GROUP_ID)."""

    def setting(self, name: str) -> str | None:
        return dict(self.env).get(name)


def workloads(deployments: Sequence[Any]) -> dict[str, Workload]:
    """component → Workload, from V1Deployment objects of one release."""
    out: dict[str, Workload] = {}
    for d in deployments:
        labels = d.metadata.labels or {}
        component = labels.get(COMPONENT)
        if component is None:
            continue
        status = d.status
        containers = d.spec.template.spec.containers or []
        env = tuple(
            (e.name, e.value) for e in (containers[0].env or []) if containers and e.value is not None
        )
        out[component] = Workload(
            component=component,
            name=d.metadata.name,
            desired=int(d.spec.replicas if d.spec.replicas is not None else 1),
            ready=int(status.ready_replicas or 0) if status else 0,
            available=int(status.available_replicas or 0) if status else 0,
            updated=int(status.updated_replicas or 0) if status else 0,
            env=env,
        )
    return out


def release_selector(release: str) -> str:
    return f"{PART_OF}=facestream,{INSTANCE}={release}"


def list_deployments(
    namespace: str, release: str, *, kubeconfig: Path | None = None, context: str | None = None
) -> list[Any]:
    """The release's Deployments, from the kubeconfig (or the in-cluster service account)."""
    import urllib3
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException

    try:
        if kubeconfig is None and context is None:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
            except ConfigException:
                config.load_kube_config()  # type: ignore[no-untyped-call]
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(kubeconfig) if kubeconfig else None, context=context
            )
    except (ConfigException, OSError) as exc:
        raise ConfigError(f"no Kubernetes access ({exc}); give --kubeconfig, or --no-kubernetes") from None
    try:
        found = client.AppsV1Api().list_namespaced_deployment(
            namespace, label_selector=release_selector(release), _request_timeout=15
        )
    except ApiException as exc:
        raise FacestreamError(f"Kubernetes API: {exc.status} {exc.reason}") from None
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        raise FacestreamError(f"Kubernetes API unreachable: {exc}") from None
    return list(found.items)
