"""SensorTrigger: an Argo Sensor running in Airflow's triggerer, one TriggerEvent per firing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from airflow.sdk.bases.hook import BaseHook
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_argo_events.core.actions.airflow_dagrun import AirflowDagRunAction
from airflow_argo_events.core.actions.base import ActionContext
from airflow_argo_events.core.bus import EventBus
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.sensor.engine import Firing
from airflow_argo_events.core.spec.loader import parse_manifest
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.hooks.nats import NatsHook
from airflow_argo_events.triggers._common import firing_payload, manifest_dict, short_hash

log = logging.getLogger(__name__)


def build_sensor(
    sensor: str | dict[str, Any] | Sensor | None,
    trigger: str | None,
    dependencies: list[dict[str, Any]] | None,
    conditions: str | None,
    name: str,
) -> dict[str, Any]:
    """The Sensor manifest a trigger runs, as a dict: a manifest (optionally narrowed to one
    trigger), or one built from Argo-shaped ``dependencies`` and ``conditions``."""
    if sensor is not None:
        doc = manifest_dict(sensor, "Sensor")
        if trigger:
            kept = [t for t in doc["spec"]["triggers"] if t["template"]["name"] == trigger]
            if not kept:
                names = [t["template"]["name"] for t in doc["spec"]["triggers"]]
                from airflow_argo_events.core.exceptions import SpecError

                raise SpecError([("trigger", f"no trigger {trigger!r} in sensor {doc['metadata']['name']}; "
                                             f"it has {', '.join(names)}")])
            doc["spec"]["triggers"] = kept
        return doc
    if not dependencies:
        from airflow_argo_events.core.exceptions import SpecError

        raise SpecError([("dependencies", "give a sensor manifest or at least one dependency")])
    template: dict[str, Any] = {"name": trigger or "fire", "log": {}}
    if conditions:
        template["conditions"] = conditions
    return manifest_dict({"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": name},
                          "spec": {"dependencies": dependencies, "triggers": [{"template": template}]}}, "Sensor")


class SensorTrigger(BaseEventTrigger):
    """Waits on the NATS JetStream bus for an Argo Sensor's conditions; yields one event per firing.

    State lives in the sensor's KV bucket and events are acked only after it is stored, so
    a restarted triggerer resumes without losing or repeating a firing. With ``dag_id``,
    each firing also creates one run of that DAG through the REST API (run id from the
    firing id), which is the way to get exactly one DAG run per firing.

    :param sensor: an Argo Sensor manifest: a path, a dict or a model (loaded at parse time).
    :param trigger: run only this trigger of the manifest.
    :param dependencies: instead of a manifest, Argo-shaped dependencies (name,
        eventSourceName, eventName, filters, transform).
    :param conditions: the condition over ``dependencies`` (default: all of them).
    :param nats_conn_id: the ``nats`` connection of the bus.
    :param dag_id: create one run of this DAG per firing (REST API v2).
    :param airflow_conn_id: the ``http`` connection with the API's URL, login and password.
    :param deliver: where a new consumer starts: ``new`` (Argo) or ``all``, or an ISO time.
    :param name: the sensor's name when built from dependencies; also names its state.

    .. code-block:: python

        Asset("argo-events://orders/both", watchers=[AssetWatcher(
            name="orders", trigger=SensorTrigger(sensor="manifests/orders.yaml", trigger="both"))])
    """

    def __init__(
        self,
        *,
        sensor: str | dict[str, Any] | Sensor | None = None,
        trigger: str | None = None,
        dependencies: list[dict[str, Any]] | None = None,
        conditions: str | None = None,
        nats_conn_id: str = "nats_default",
        dag_id: str | None = None,
        airflow_conn_id: str | None = None,
        deliver: str = "new",
        name: str = "airflow-sensor",
        state_prefix: str = "",
        max_firings: int = 0,
    ) -> None:
        super().__init__()
        self.sensor = build_sensor(sensor, trigger, dependencies, conditions, name)
        self.trigger = trigger
        self.nats_conn_id = nats_conn_id
        self.dag_id = dag_id
        self.airflow_conn_id = airflow_conn_id
        self.deliver = deliver
        self.name = name
        self.state_prefix = state_prefix
        self.max_firings = max_firings
        if dag_id and not airflow_conn_id:
            from airflow_argo_events.core.exceptions import SpecError

            raise SpecError([("airflow_conn_id", "required with dag_id (the REST API's URL and credentials)")])

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "sensor": self.sensor,
                "trigger": self.trigger,
                "nats_conn_id": self.nats_conn_id,
                "dag_id": self.dag_id,
                "airflow_conn_id": self.airflow_conn_id,
                "deliver": self.deliver,
                "name": self.name,
                "state_prefix": self.state_prefix,
                "max_firings": self.max_firings,
            },
        )

    def state_name(self, stream: str) -> str:
        """Names the KV bucket and durable consumers: stable for the same sensor, trigger and stream
        (a sensor on another stream is another sensor, with state of its own)."""
        base = f"{self.state_prefix or 'airflow'}-{self.sensor['metadata']['name']}"
        return f"{base}-{stream}-{short_hash(base, self.trigger or '*', stream)}"

    def _deliver_from(self) -> Any:
        if self.deliver in ("new", "all"):
            return self.deliver
        return datetime.fromisoformat(self.deliver)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        sensor = parse_manifest(self.sensor, None, "Sensor")
        settings, stream = await NatsHook(self.nats_conn_id).aget_settings()
        queue: asyncio.Queue[tuple[Firing, asyncio.Future[bool]]] = asyncio.Queue()
        dag_runs = await self._dag_run_action() if self.dag_id else None

        create_lock = asyncio.Lock()
        waiting: set[asyncio.Future[bool]] = set()

        async def execute(firing: Firing) -> None:
            if dag_runs is not None:
                # One creation at a time (the API's database, SQLite above all, dislikes bursts of
                # concurrent writes); retried with backoff while the API answers 5xx or is away.
                async with create_lock:
                    await self._create_dag_run(dag_runs, firing)
            done = asyncio.get_running_loop().create_future()
            waiting.add(done)
            try:
                await queue.put((firing, done))
                await done  # the journal entry stays until the triggerer has taken the event
            finally:
                waiting.discard(done)

        async with EventBus(settings, stream) as bus:
            bucket = self.state_name(bus.stream.name)
            runtime = SensorRuntime(sensor, bus, execute, deliver=self._deliver_from(), bucket=bucket,
                                    consumer_prefix=bucket)
            await runtime.start()
            stop = asyncio.Event()
            task = asyncio.create_task(runtime.run(stop))
            fired = 0
            getter: asyncio.Future[Any] | None = None
            try:
                while True:
                    getter = asyncio.ensure_future(queue.get())
                    done_set, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done_set:
                        getter.cancel()
                        task.result()  # the runtime died: surface its error
                        return
                    firing, ack = getter.result()
                    yield TriggerEvent(firing_payload(firing))
                    ack.set_result(True)
                    fired += 1
                    if self.max_firings and fired >= self.max_firings:
                        return
            finally:
                if getter is not None:
                    getter.cancel()
                for fut in list(waiting):  # not handed over: they stay in the journal for the next run
                    fut.cancel()
                stop.set()
                if not (await asyncio.wait({task}, timeout=15))[0]:
                    task.cancel()
                await runtime.close(drain_timeout=5)
                if dag_runs is not None:
                    await dag_runs.ctx.close()

    async def _create_dag_run(self, action: AirflowDagRunAction, firing: Firing) -> None:
        pause = 0.5
        for attempt in range(1, 41):
            result = await action.execute(_for_dag(firing, self.dag_id or "", self.airflow_conn_id or ""))
            if result.ok:
                return
            if not result.retryable:
                log.error("firing %s: DAG run for %s not created: %s", firing.id, self.dag_id, result.detail)
                return
            log.warning("firing %s: DAG run for %s not created yet (attempt %d): %s", firing.id, self.dag_id,
                        attempt, result.detail)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 15.0)
        log.error("firing %s: gave up creating a run of %s", firing.id, self.dag_id)

    async def _dag_run_action(self) -> AirflowDagRunAction:
        async def resolve(conn_id: str) -> tuple[str, str | None, str | None]:
            conn = await BaseHook.aget_connection(conn_id)
            scheme = conn.schema if conn.schema in ("http", "https") else "http"
            host = conn.host or "localhost"
            base = host if "://" in host else f"{scheme}://{host}"
            if conn.port:
                base = f"{base}:{conn.port}"
            return base, conn.login, conn.password

        return AirflowDagRunAction("dag-run", ActionContext(airflow_conn=resolve))


def _for_dag(firing: Firing, dag_id: str, conn_id: str) -> Firing:
    import dataclasses

    return dataclasses.replace(
        firing, resolved=firing_payload(firing),
        body={"dagId": dag_id, "connId": conn_id, "runIdPrefix": "argo-events__", "note": f"firing {firing.id}"},
    )
