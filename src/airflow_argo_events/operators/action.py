"""ActionOperator: run an Argo trigger template (k8s, argoWorkflow, http, nats, slack, log, airflow) as a task."""

from __future__ import annotations

import ast
import asyncio
import json
from collections.abc import Sequence
from typing import Any

from airflow_argo_events.core.actions.base import ActionContext
from airflow_argo_events.core.actions.executor import ActionRunner
from airflow_argo_events.core.events import event_from_json
from airflow_argo_events.core.exceptions import ActionError
from airflow_argo_events.core.sensor.engine import Engine
from airflow_argo_events.core.spec.loader import parse_manifest
from airflow_argo_events.triggers._templating import GoTemplateSafe, has_jinja
from airflow_argo_events.version_compat import BaseOperator


class ActionOperator(GoTemplateSafe, BaseOperator):
    """Executes one Argo trigger with parameters resolved from a firing (e.g. an EventSensor's XCom or a
    DAG run's conf), with the trigger's retryStrategy, policy and dead-letter trigger.

    :param trigger: an Argo ``Trigger`` (``{"template": {...}, "retryStrategy": ...}``) or a Sensor manifest
        path/dict plus ``trigger_name``. Templated (Argo's Go templates in it are left alone).
    :param firing: the firing, ``{"firing_id", "events": {dep: CloudEvent}}``: a dict, an ``XComArg``
        (``wait.output``), or text (JSON, or the Python repr that ``"{{ ti.xcom_pull('wait') }}"``
        renders to without ``render_template_as_native_obj``). Default: the DAG run's ``conf``
        (how manifest DAGs receive their firing). Templated.
    :param kubernetes_conn_id: connection for k8s / argoWorkflow triggers (KubernetesHook). Templated.

    .. code-block:: python

        ActionOperator(task_id="submit", firing=wait.output, trigger={"template": {
            "name": "wf", "argoWorkflow": {"operation": "submit", "source": {"resource": WORKFLOW}}}})
    """

    template_fields: Sequence[str] = ("firing", "trigger", "trigger_name", "dependencies", "kubernetes_conn_id")
    ui_color = "#c6f7a3"

    def __init__(self, *, trigger: dict[str, Any] | str, trigger_name: str | None = None,
                 firing: Any = None, dependencies: list[dict[str, Any]] | None = None,
                 kubernetes_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trigger = trigger
        self.trigger_name = trigger_name
        self.dependencies = dependencies
        self.firing = firing
        self.kubernetes_conn_id = kubernetes_conn_id
        # Validate at parse time what Jinja will not change (a bad trigger is a DAG import error).
        self.sensor_doc: dict[str, Any] | None = None
        if not has_jinja((trigger, trigger_name, dependencies)):
            self.sensor_doc = self._build()

    def _build(self) -> dict[str, Any]:
        trigger = self.trigger
        if isinstance(trigger, str) or (isinstance(trigger, dict) and trigger.get("kind") == "Sensor"):
            from airflow_argo_events.triggers.sensor import build_sensor

            return build_sensor(trigger, self.trigger_name, None, None, "action")
        deps = self.dependencies or [{"name": n, "eventSourceName": "_", "eventName": n}
                                     for n in _dependency_names(trigger)] or [
            {"name": "_", "eventSourceName": "_", "eventName": "_"}]
        return parse_manifest({"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor",
                               "metadata": {"name": "action"},
                               "spec": {"dependencies": deps, "triggers": [trigger]}}, None, "Sensor").dump()

    def execute(self, context: Any) -> Any:
        firing_doc = firing_document(self.firing if self.firing is not None else (context["dag_run"].conf or {}))
        sensor = parse_manifest(self._build(), None, "Sensor")
        engine = Engine(sensor)
        events = {d: event_from_json(e) for d, e in (firing_doc.get("events") or {}).items()}
        trigger = sensor.spec.triggers[0].template.name
        firing = engine.build_firing(trigger, events)
        ctx = ActionContext()
        if firing.template.kind in ("k8s", "argoWorkflow"):
            from airflow_argo_events.hooks.kubernetes import k8s_api_factory

            ctx.k8s_factory = k8s_api_factory(conn_id=self.kubernetes_conn_id)

        async def act() -> Any:
            from airflow_argo_events.hooks.secrets import airflow_secrets

            ctx.secrets = await airflow_secrets(sensor)  # secretKeyRefs: also Airflow Variables/Connections
            runner = ActionRunner(engine, ctx)
            try:
                return await runner.run(firing)
            finally:
                await runner.close()

        outcome = asyncio.run(act())
        if not outcome.ok:
            raise ActionError(trigger, f"firing {firing.id}: {outcome.detail}")
        self.log.info("trigger %s firing %s: %s", trigger, firing.id, outcome.detail)
        return {"firing_id": firing.id, "detail": outcome.detail, "resolved": firing.resolved}


def firing_document(value: Any) -> dict[str, Any]:
    """A firing from what a DAG hands over: a dict, JSON text, or the Python repr of a dict
    (what ``{{ ti.xcom_pull(...) }}`` renders to when the DAG renders templates as text).

    >>> firing_document("{'firing_id': 'f1', 'events': {}, 'ok': True}")["ok"]
    True
    """
    if isinstance(value, dict):
        return value
    if isinstance(value, (str, bytes)):
        text = value.decode() if isinstance(value, bytes) else value
        try:
            doc = json.loads(text)
        except ValueError:
            try:
                doc = ast.literal_eval(text)  # literals only: never evaluates code
            except (ValueError, SyntaxError):
                raise ValueError(f"firing: neither JSON nor a dict literal: {text[:80]!r}") from None
        if isinstance(doc, dict):
            return doc
    raise ValueError(f"firing: expected a firing dict (an EventSensor's XCom), got {type(value).__name__}")


def _dependency_names(node: Any, names: list[str] | None = None) -> list[str]:
    """Every ``src.dependencyName`` in a trigger, in order of appearance."""
    names = [] if names is None else names
    if isinstance(node, dict):
        name = node.get("dependencyName")
        if isinstance(name, str) and name not in names:
            names.append(name)
        for value in node.values():
            _dependency_names(value, names)
    elif isinstance(node, list):
        for value in node:
            _dependency_names(value, names)
    return names
