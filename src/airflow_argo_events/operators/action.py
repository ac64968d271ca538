"""ActionOperator: run an Argo trigger template (k8s, argoWorkflow, http, nats, slack, log, airflow) as a task."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

from airflow_argo_events.core.actions.base import ActionContext
from airflow_argo_events.core.actions.executor import ActionRunner
from airflow_argo_events.core.events import event_from_json
from airflow_argo_events.core.exceptions import ActionError
from airflow_argo_events.core.sensor.engine import Engine
from airflow_argo_events.core.spec.loader import parse_manifest


class ActionOperator(BaseOperator):
    """Executes one Argo trigger with parameters resolved from a firing (e.g. an EventSensor's XCom or a
    DAG run's conf), with the trigger's retryStrategy, policy and dead-letter trigger.

    :param trigger: an Argo ``Trigger`` (``{"template": {...}, "retryStrategy": ...}``) or a Sensor manifest
        path/dict plus ``trigger_name``.
    :param firing: the firing (templated), ``{"firing_id", "events": {dep: CloudEvent}}``; default: the DAG
        run's ``conf`` (how manifest DAGs receive their firing).
    :param kubernetes_conn_id: connection for k8s / argoWorkflow triggers (KubernetesHook).

    .. code-block:: python

        ActionOperator(task_id="submit", firing="{{ ti.xcom_pull('wait') }}", trigger={"template": {
            "name": "wf", "argoWorkflow": {"operation": "submit", "source": {"resource": WORKFLOW}}}})
    """

    template_fields: Sequence[str] = ("firing",)
    ui_color = "#c6f7a3"

    def __init__(self, *, trigger: dict[str, Any] | str, trigger_name: str | None = None,
                 firing: Any = None, dependencies: list[dict[str, Any]] | None = None,
                 kubernetes_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(trigger, str) or (isinstance(trigger, dict) and trigger.get("kind") == "Sensor"):
            from airflow_argo_events.triggers.sensor import build_sensor

            self.sensor_doc = build_sensor(trigger, trigger_name, None, None, "action")
        else:
            deps = dependencies or [{"name": n, "eventSourceName": "_", "eventName": n}
                                    for n in _dependency_names(trigger)] or [
                {"name": "_", "eventSourceName": "_", "eventName": "_"}]
            self.sensor_doc = parse_manifest({"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor",
                                              "metadata": {"name": "action"},
                                              "spec": {"dependencies": deps, "triggers": [trigger]}},
                                             None, "Sensor").dump()
        self.firing = firing
        self.kubernetes_conn_id = kubernetes_conn_id

    def execute(self, context: Any) -> Any:
        firing_doc = self.firing
        if firing_doc is None:
            firing_doc = (context["dag_run"].conf or {})
        if isinstance(firing_doc, str):
            import json

            firing_doc = json.loads(firing_doc)
        sensor = parse_manifest(self.sensor_doc, None, "Sensor")
        engine = Engine(sensor)
        events = {d: event_from_json(e) for d, e in (firing_doc.get("events") or {}).items()}
        trigger = sensor.spec.triggers[0].template.name
        firing = engine.build_firing(trigger, events)
        ctx = ActionContext()
        if firing.template.kind in ("k8s", "argoWorkflow"):
            from airflow_argo_events.hooks.kubernetes import k8s_api_factory

            ctx.k8s_factory = k8s_api_factory(conn_id=self.kubernetes_conn_id)

        async def act() -> Any:
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
