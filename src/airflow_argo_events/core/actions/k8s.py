"""Argo's k8s and argoWorkflow triggers over a small ``K8sApi`` (the Airflow layer's KubernetesHook).

The object comes from ``source.resource`` (or ``source.inline`` YAML) after parameters.
Idempotency: an object with ``generateName`` is created with ``name = generateName +
firing id``, so a retried firing meets AlreadyExists (counted as success) instead of
creating a second workflow. Argo Workflow operations: ``submit`` creates the Workflow,
``submit-from`` creates one from a WorkflowTemplate/CronWorkflow reference, ``suspend``,
``resume``, ``terminate`` and ``stop`` patch the running Workflow as the Argo CLI does;
``retry`` and ``resubmit`` need the Argo server and are reported as not supported.
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from airflow_argo_events.core.actions.base import Action, ActionContext, ActionResult
from airflow_argo_events.core.actions.policy import RetryPlan
from airflow_argo_events.core.exceptions import ArgoEventsError

if TYPE_CHECKING:
    from airflow_argo_events.core.sensor.engine import Firing


NO_CONFIG = "no Kubernetes configuration found (in-cluster or $KUBECONFIG); skipped"


def kubernetes_configured() -> bool:
    """Whether the k8s client has anything to load: ``$KUBECONFIG``, or a pod's in-cluster settings."""
    return bool(os.environ.get("KUBECONFIG") or os.environ.get("KUBERNETES_SERVICE_HOST"))


def _config_error(err: Exception) -> bool:
    """The kubernetes client's ConfigException (matched by name: core never imports the client)."""
    return any(c.__name__ == "ConfigException" for c in type(err).__mro__)


class K8sApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class K8sApi(Protocol):
    """The calls the k8s actions make; statuses surface as K8sApiError."""

    async def create(self, obj: dict[str, Any], namespace: str) -> dict[str, Any]: ...
    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any]: ...
    async def replace(self, obj: dict[str, Any], namespace: str) -> dict[str, Any]: ...
    async def patch(self, api_version: str, kind: str, name: str, namespace: str, patch: Any,
                    content_type: str) -> dict[str, Any]: ...
    async def delete(self, api_version: str, kind: str, name: str, namespace: str) -> None: ...


class _ConfigGuard:
    """Turns the client's "cannot load a configuration" into one line (no traceback): a user
    error on a machine without a cluster, not an action bug."""

    def __init__(self, api: K8sApi) -> None:
        self._api = api

    def __getattr__(self, name: str) -> Any:
        call = getattr(self._api, name)

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return await call(*args, **kwargs)
            except Exception as err:
                if _config_error(err):
                    raise ArgoEventsError(f"Kubernetes configuration: {str(err).splitlines()[0][:300]}; skipped") \
                        from None
                raise

        return guarded


PLURALS = {"Endpoints": "endpoints", "Ingress": "ingresses", "NetworkPolicy": "networkpolicies",
           "PodSecurityPolicy": "podsecuritypolicies", "StorageClass": "storageclasses"}


def plural(kind: str) -> str:
    """The REST resource name of a kind, as KubernetesCreateResourceOperator derives it (lower-case + "s")."""
    return PLURALS.get(kind) or (kind.lower() + ("es" if kind.endswith("s") else "s"))


def collection_path(api_version: str, kind: str, namespace: str) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural(kind)}"


class ApiClientK8sApi:
    """K8sApi over a ``kubernetes.client.ApiClient`` (any object kind: the REST path comes from
    ``apiVersion`` and ``kind``); calls run on a worker thread (the client is synchronous).

    :param get_client: returns the ApiClient; called on first use, on a worker thread, so
        neither the client's import nor its configuration slows a sensor's start.

    .. code-block:: python

        api = ApiClientK8sApi(lambda: kubernetes.config.new_client_from_config("~/.kube/config"))
        await api.create(workflow, "argo")
    """

    def __init__(self, get_client: Callable[[], Any]) -> None:
        self._get_client = get_client
        self._client: Any = None

    async def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        def call() -> Any:
            from kubernetes.client.exceptions import ApiException

            if self._client is None:
                self._client = self._get_client()
            try:
                return self._client.call_api(
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


def kubeconfig_api_factory(config_file: str | None = None) -> Callable[[Any], ApiClientK8sApi]:
    """A factory for ActionContext over the plain kubernetes client, without Airflow (the
    standalone CLI): ``config_file``, else ``$KUBECONFIG``, else the pod's in-cluster settings."""

    def client() -> Any:
        from kubernetes import client as k8s_client
        from kubernetes import config as k8s_config

        cfg = config_file or os.environ.get("KUBECONFIG")
        if cfg:
            return k8s_config.new_client_from_config(config_file=cfg)
        k8s_config.load_incluster_config()
        return k8s_client.ApiClient()

    return lambda _template: ApiClientK8sApi(client)


def with_firing_name(obj: dict[str, Any], firing_id: str) -> dict[str, Any]:
    """``generateName: hello-`` -> ``name: hello-<firing id>`` (an idempotent name)."""
    obj = copy.deepcopy(obj)
    meta = obj.setdefault("metadata", {})
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = (meta.pop("generateName") + firing_id)[:253]
    return obj


def _labels(obj: dict[str, Any], firing: Firing) -> dict[str, Any]:
    meta = obj.setdefault("metadata", {})
    labels = meta.setdefault("labels", {})
    labels.setdefault("events.argoproj.io/sensor", firing.sensor[:63])
    labels.setdefault("events.argoproj.io/trigger", firing.trigger[:63])
    labels["events.argoproj.io/firing-id"] = firing.id
    return obj


class K8sAction(Action):
    kind = "k8s"

    def __init__(self, name: str, ctx: ActionContext, template: Any) -> None:
        super().__init__(name, ctx)
        if ctx.k8s_factory is None:
            if not kubernetes_configured():
                raise ValueError(NO_CONFIG)
            raise ValueError("no Kubernetes client configured (install the kubernetes package)")
        self.api: K8sApi = _ConfigGuard(ctx.k8s_factory(template))

    def _object(self, firing: Firing) -> dict[str, Any] | None:
        return copy.deepcopy(firing.resolved) if isinstance(firing.resolved, dict) else None

    async def execute(self, firing: Firing) -> ActionResult:
        body = firing.body or {}
        op = body.get("operation") or "create"
        obj = self._object(firing)
        if obj is None:
            return ActionResult(False, "source.resource is required (configmap/url/git/s3 sources are not "
                                       "fetched by this runtime)", retryable=False)
        ns = obj.get("metadata", {}).get("namespace") or "default"
        try:
            if op == "create":
                obj = _labels(with_firing_name(obj, firing.id), firing)
                try:
                    created = await self.api.create(obj, ns)
                except K8sApiError as err:
                    if err.status == 409:
                        return ActionResult(True, f"{obj['kind']} {obj['metadata'].get('name')} already exists")
                    raise
                result = ActionResult(True, f"created {obj['kind']} {created.get('metadata', {}).get('name')}")
            elif op == "update":
                current = await self.api.get(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], ns)
                if not body.get("liveObject"):
                    obj.setdefault("metadata", {})["resourceVersion"] = current["metadata"].get("resourceVersion")
                    await self.api.replace(obj, ns)
                else:
                    await self.api.replace(current, ns)
                result = ActionResult(True, f"updated {obj['kind']} {obj['metadata']['name']}")
            elif op == "patch":
                strategy = body.get("patchStrategy") or "application/merge-patch+json"
                await self.api.patch(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], ns, obj, strategy)
                result = ActionResult(True, f"patched {obj['kind']} {obj['metadata']['name']}")
            elif op == "delete":
                try:
                    await self.api.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], ns)
                except K8sApiError as err:
                    if err.status != 404:
                        raise
                result = ActionResult(True, f"deleted {obj['kind']} {obj['metadata']['name']}")
            else:
                return ActionResult(False, f"unknown operation {op!r}", retryable=False)
        except K8sApiError as err:
            return ActionResult(False, f"{op} {obj.get('kind')}: {err}", status=err.status,
                                retryable=err.status >= 500 or err.status in (409, 429))
        return await self._policy(firing, obj, ns, result) if op == "create" else result

    async def _policy(self, firing: Firing, obj: dict[str, Any], ns: str, result: ActionResult) -> ActionResult:
        """policy.k8s: wait (with backoff) until the object carries the given labels."""
        policy = firing.trigger_spec.policy.k8s if firing.trigger_spec and firing.trigger_spec.policy else None
        if policy is None or not policy.labels:
            return result
        plan = RetryPlan.of(policy.backoff)
        delays = [0.0, *plan.delays()]
        for delay in delays:
            await asyncio.sleep(delay)
            live = await self.api.get(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], ns)
            labels = live.get("metadata", {}).get("labels") or {}
            if all(labels.get(k) == v for k, v in policy.labels.items()):
                return result
        msg = f"policy: labels {policy.labels} not seen on {obj['metadata']['name']}"
        return ActionResult(not policy.error_on_backoff_timeout, msg, retryable=False)


WORKFLOW_PATCHES: dict[str, Any] = {
    "suspend": {"spec": {"suspend": True}},
    "resume": {"spec": {"suspend": None}},
    "terminate": {"spec": {"shutdown": "Terminate"}},
    "stop": {"spec": {"shutdown": "Stop"}},
}


class ArgoWorkflowAction(K8sAction):
    kind = "argoWorkflow"

    async def execute(self, firing: Firing) -> ActionResult:
        body = firing.body or {}
        op = body.get("operation") or "submit"
        obj = self._object(firing)
        if obj is None:
            return ActionResult(False, "source.resource is required", retryable=False)
        ns = obj.get("metadata", {}).get("namespace") or "default"
        if op == "submit":
            return await K8sAction.execute(self, _as_create(firing, obj))
        if op == "submit-from":
            kind = obj.get("kind", "WorkflowTemplate")
            ref_key = "workflowTemplateRef" if kind != "CronWorkflow" else "cronWorkflowRef"
            wf = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                  "metadata": {"generateName": f"{obj['metadata']['name']}-", "namespace": ns},
                  "spec": {ref_key: {"name": obj["metadata"]["name"]}}}
            if kind == "CronWorkflow":
                wf["spec"] = copy.deepcopy(obj.get("spec", {}).get("workflowSpec", {}))
            return await K8sAction.execute(self, _as_create(firing, wf))
        if op in WORKFLOW_PATCHES:
            try:
                await self.api.patch(obj.get("apiVersion", "argoproj.io/v1alpha1"), "Workflow", obj["metadata"]["name"],
                                     ns, WORKFLOW_PATCHES[op], "application/merge-patch+json")
            except K8sApiError as err:
                return ActionResult(False, f"{op} workflow {obj['metadata'].get('name')}: {err}", status=err.status,
                                    retryable=err.status >= 500)
            return ActionResult(True, f"{op} workflow {obj['metadata']['name']}")
        return ActionResult(False, f"argoWorkflow operation {op!r} needs the Argo server; not supported here",
                            retryable=False)


def _as_create(firing: Firing, obj: dict[str, Any]) -> Firing:
    import dataclasses

    return dataclasses.replace(firing, resolved=obj, body={**(firing.body or {}), "operation": "create"})
