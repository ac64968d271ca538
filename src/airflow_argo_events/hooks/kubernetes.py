"""The ``K8sApi`` the k8s/argoWorkflow actions use, over the cncf-kubernetes provider's KubernetesHook.

Any object kind works: the REST path comes from ``apiVersion`` and ``kind`` (plural =
lower-case kind + "s", as KubernetesCreateResourceOperator derives it), and calls go
through the hook's ``api_client`` on a worker thread (the client is synchronous).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
from kubernetes.client.exceptions import ApiException

from airflow_argo_events.core.actions.k8s import K8sApiError

PLURALS = {"Endpoints": "endpoints", "Ingress": "ingresses", "NetworkPolicy": "networkpolicies",
           "PodSecurityPolicy": "podsecuritypolicies", "StorageClass": "storageclasses"}


def plural(kind: str) -> str:
    return PLURALS.get(kind) or (kind.lower() + ("es" if kind.endswith("s") else "s"))


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural(kind)}"


class HookK8sApi:
    """K8sApi over a KubernetesHook.

    :param hook: a configured ``KubernetesHook`` (connection, kubeconfig or in-cluster).
    """

    def __init__(self, hook: KubernetesHook) -> None:
        self.hook = hook

    async def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        client = self.hook.api_client

        def call() -> Any:
            try:
                return client.call_api(
                    path, method, body=body, response_types_map={200: "object", 201: "object"},
                    auth_settings=["BearerToken"],
                    header_params={"Content-Type": content_type, "Accept": "application/json"},
                    _return_http_data_only=True, _preload_content=True,
                )
            except ApiException as err:
                raise K8sApiError(err.status or 0, (err.body or err.reason or "")[:500]) from None

        return await asyncio.to_thread(call)

    async def create(self, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
        return await self._call("POST", collection_path(obj["apiVersion"], obj["kind"], namespace), obj)

    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any]:
        return await self._call("GET", f"{collection_path(api_version, kind, namespace)}/{name}")

    async def replace(self, obj: dict[str, Any], namespace: str) -> dict[str, Any]:
        path = f"{collection_path(obj['apiVersion'], obj['kind'], namespace)}/{obj['metadata']['name']}"
        return await self._call("PUT", path, obj)

    async def patch(self, api_version: str, kind: str, name: str, namespace: str, patch: Any,
                    content_type: str) -> dict[str, Any]:
        return await self._call("PATCH", f"{collection_path(api_version, kind, namespace)}/{name}", patch, content_type)

    async def delete(self, api_version: str, kind: str, name: str, namespace: str) -> None:
        await self._call("DELETE", f"{collection_path(api_version, kind, namespace)}/{name}")


def k8s_api_factory(conn_id: str | None = None, config_file: str | None = None) -> Callable[[Any], HookK8sApi]:
    """A factory for ActionContext: one hook per trigger, from a connection or kubeconfig
    (``$KUBECONFIG``, else in-cluster when running in a pod)."""

    def make(_template: Any) -> HookK8sApi:
        cfg = config_file or os.environ.get("KUBECONFIG")
        if conn_id:
            return HookK8sApi(KubernetesHook(conn_id=conn_id))
        return HookK8sApi(KubernetesHook(conn_id=None, config_file=cfg, in_cluster=None if cfg else True))

    return make
