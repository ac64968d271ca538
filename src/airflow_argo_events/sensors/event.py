"""EventSensor: a task that waits (deferred, in the triggerer) for a condition over bus events."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import BaseSensorOperator

from airflow_argo_events.triggers._common import short_hash
from airflow_argo_events.triggers.sensor import SensorTrigger, build_sensor


class EventSensor(BaseSensorOperator):
    """Waits for Argo-style dependencies and conditions; returns the firing to XCom.

    Which events count: those published after the task started waiting, kept across task
    retries by a durable consumer named from the task instance; or, with
    ``since``, everything in the stream's history from that time (a datetime, an ISO string
    or ``"data_interval_start"``).

    :param dependencies: Argo-shaped dependencies (name, eventSourceName, eventName, filters, transform).
    :param conditions: condition over them, e.g. ``"(a || b) && c"`` (default: all).
    :param sensor: or a whole Sensor manifest (path or dict) and ``trigger`` to wait for.
    :param nats_conn_id: the ``nats`` connection of the bus.
    :param deferrable: wait in the triggerer (default) instead of holding a worker slot.

    The XCom value: ``{"firing_id", "sensor", "trigger", "events": {dep: CloudEvent}, "resolved"}``.

    .. code-block:: python

        EventSensor(task_id="wait", timeout=600, conditions="order",
                    dependencies=[{"name": "order", "eventSourceName": "shop", "eventName": "order",
                                   "filters": {"data": [{"path": "id", "type": "number", "value": ["1"]}]}}])
    """

    template_fields: Sequence[str] = ("conditions", "since")
    ui_color = "#f7c6a3"

    def __init__(
        self,
        *,
        dependencies: list[dict[str, Any]] | None = None,
        conditions: str | None = None,
        sensor: str | dict[str, Any] | None = None,
        trigger: str | None = None,
        nats_conn_id: str = "nats_default",
        since: str | datetime | None = None,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # Validate at parse time: a bad dependency fails the DAG import with the field path.
        self.sensor_doc = build_sensor(sensor, trigger, dependencies, conditions, name=f"task-{self.task_id}")
        self.dependencies = dependencies
        self.conditions = conditions
        self.sensor = sensor
        self.trigger_name = trigger
        self.nats_conn_id = nats_conn_id
        self.since = since
        self.deferrable = deferrable

    def _trigger(self, context: Any) -> SensorTrigger:
        ti = context["ti"]
        ident = short_hash(ti.dag_id, ti.task_id, ti.run_id, str(getattr(ti, "map_index", -1)))
        # "new" means new since this task started waiting, not since the triggerer got to it:
        # the durable consumer starts at the task's start time (a retry resumes the same one).
        started = getattr(ti, "start_date", None) or datetime.now(timezone.utc)
        deliver = started.isoformat()
        if self.since == "data_interval_start":
            start = context.get("data_interval_start") or context.get("logical_date")
            deliver = start.isoformat() if start else "all"
        elif isinstance(self.since, datetime):
            deliver = self.since.isoformat()
        elif self.since:
            deliver = str(self.since)
        return SensorTrigger(sensor=self.sensor_doc, trigger=self.trigger_name, nats_conn_id=self.nats_conn_id,
                             deliver=deliver, name=self.sensor_doc["metadata"]["name"], state_prefix=f"ti-{ident}",
                             max_firings=1)

    def execute(self, context: Any) -> Any:
        trigger = self._trigger(context)
        if self.deferrable:
            self.defer(trigger=trigger, method_name="execute_complete",
                       timeout=timedelta(seconds=self.timeout) if self.timeout else None)
        return asyncio.run(self._wait_here(trigger))

    async def _wait_here(self, trigger: SensorTrigger) -> Any:
        async def first() -> Any:
            async for event in trigger.run():
                return event.payload
            return None

        try:
            payload = await asyncio.wait_for(first(), timeout=self.timeout or None)
        except asyncio.TimeoutError:
            from airflow.sdk.exceptions import AirflowSensorTimeout

            raise AirflowSensorTimeout(f"no firing within {self.timeout}s") from None
        await _forget(trigger)
        return payload

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        self.log.info("firing %s of %s: events %s", (event or {}).get("firing_id"), (event or {}).get("trigger"),
                      {d: e.get("id") for d, e in ((event or {}).get("events") or {}).items()})
        try:
            asyncio.run(_forget(self._trigger(context)))
        except Exception as err:  # cleanup only: never fail a task that got its firing
            self.log.warning("could not remove the sensor's consumers and state: %s", err)
        return event


async def _forget(trigger: SensorTrigger) -> None:
    """Remove the durable consumers and KV state of a finished task's sensor."""
    from airflow_argo_events.core.bus.consumer import durable_name
    from airflow_argo_events.core.spec.loader import parse_manifest
    from airflow_argo_events.hooks.nats import NatsHook

    sensor = parse_manifest(trigger.sensor, None, "Sensor")
    async with NatsHook(trigger.nats_conn_id).get_async_conn() as bus:
        bucket = trigger.state_for(bus.stream.name)
        from airflow_argo_events.core.sensor.engine import Engine

        for source, event in Engine(sensor).listens_to():
            try:
                await bus.js.delete_consumer(bus.stream.name, durable_name(bucket, source, event))
            except Exception:
                pass
        try:
            await bus.js.delete_key_value(bucket)
        except Exception:
            pass
