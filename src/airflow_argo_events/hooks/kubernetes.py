"""The ``K8sApi`` the k8s/argoWorkflow actions use, over the cncf-kubernetes provider's KubernetesHook.

Any object kind works: the REST path comes from ``apiVersion`` and ``kind`` (plural =
lower-case kind + "s", as KubernetesCreateResourceOperator derives it), and calls go
through the hook's ``api_client`` on a worker thread (the client is synchronous).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

from airflow_argo_events.core.actions.k8s import ApiClientK8sApi, collection_path, plural

__all__ = ["HookK8sApi", "collection_path", "k8s_api_factory", "plural"]


class HookK8sApi(ApiClientK8sApi):
    """K8sApi over a KubernetesHook.

    :param hook: a configured ``KubernetesHook`` (connection, kubeconfig or in-cluster).
    """

    def __init__(self, hook: KubernetesHook) -> None:
        super().__init__(lambda: hook.api_client)
        self.hook = hook


def k8s_api_factory(conn_id: str | None = None, config_file: str | None = None) -> Callable[[Any], HookK8sApi]:
    """A factory for ActionContext: one hook per trigger, from a connection or kubeconfig
    (``$KUBECONFIG``, else in-cluster when running in a pod)."""

    def make(_template: Any) -> HookK8sApi:
        cfg = config_file or os.environ.get("KUBECONFIG")
        if conn_id:
            return HookK8sApi(KubernetesHook(conn_id=conn_id))
        return HookK8sApi(KubernetesHook(conn_id=None, config_file=cfg, in_cluster=None if cfg else True))

    return make
