"""EventSensor: a task that waits for a condition over bus events (deferred in the triggerer, or by pokes)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_argo_events.triggers._common import short_hash
from airflow_argo_events.triggers._templating import GoTemplateSafe, has_jinja
from airflow_argo_events.triggers.sensor import SensorTrigger, build_sensor
from airflow_argo_events.version_compat import BaseSensorOperator, PokeReturnValue, conf


class EventSensor(GoTemplateSafe, BaseSensorOperator):
    """Waits for Argo-style dependencies and conditions; returns the firing to XCom.

    Which events count: those published after the task started waiting, kept across pokes,
    reschedules and task retries by a durable consumer named from the task instance; or,
    with ``since``, everything in the stream's history from that time (a datetime, an ISO
    string or ``"data_interval_start"``).

    Deferrable the Airflow way: ``deferrable`` defaults to ``[operators] default_deferrable``
    (False in a stock Airflow). With ``deferrable=False`` the sensor pokes: each poke resumes the
    durable consumer, processes what waits and returns (``mode="reschedule"`` frees the
    worker slot between pokes, ``poke_interval`` spaces them); nothing published in between
    is missed.

    :param dependencies: Argo-shaped dependencies (name, eventSourceName, eventName, filters,
        transform). Templated.
    :param conditions: condition over them, e.g. ``"(a || b) && c"`` (default: all). Templated.
    :param sensor: or a whole Sensor manifest (path or dict) and ``trigger`` to wait for. Templated.
    :param nats_conn_id: the ``nats`` connection of the bus. Templated.
    :param since: where the durable consumer starts (see above). Templated.
    :param deferrable: wait in the triggerer instead of poking from a worker.

    Jinja renders the templated fields before ``execute``; Argo's own Go templates in them
    (``{{ .Input.body }}``) are left as they are. Values without Jinja are validated when
    the DAG is parsed, so a bad dependency is an import error naming the field.

    The XCom value: ``{"firing_id", "sensor", "trigger", "events": {dep: CloudEvent}, "resolved"}``.

    .. code-block:: python

        EventSensor(task_id="wait", timeout=600, conditions="order",
                    dependencies=[{"name": "order", "eventSourceName": "shop", "eventName": "order",
                                   "filters": {"data": [{"path": "id", "type": "number", "value": ["1"]}]}}])
    """

    template_fields: Sequence[str] = ("dependencies", "conditions", "sensor", "trigger_name", "nats_conn_id", "since")
    ui_color = "#f7c6a3"
    poke_check_limit = 60.0
    """Seconds one poke may spend catching up on a backlog; the next poke continues from there."""

    def __init__(
        self,
        *,
        dependencies: list[dict[str, Any]] | None = None,
        conditions: str | None = None,
        sensor: str | dict[str, Any] | None = None,
        trigger: str | None = None,
        nats_conn_id: str = "nats_default",
        since: str | datetime | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=True),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.dependencies = dependencies
        self.conditions = conditions
        self.sensor = sensor
        self.trigger_name = trigger
        self.nats_conn_id = nats_conn_id
        self.since = since
        self.deferrable = deferrable
        # Validate at parse time what Jinja will not change: a bad dependency fails the DAG
        # import with the field path. Templated values are validated after rendering.
        self.sensor_doc: dict[str, Any] | None = None
        if not has_jinja((dependencies, conditions, sensor, trigger)):
            self.sensor_doc = self._build()

    def _build(self) -> dict[str, Any]:
        return build_sensor(self.sensor, self.trigger_name, self.dependencies, self.conditions,
                            name=f"task-{self.task_id}")

    def _trigger(self, context: Any) -> SensorTrigger:
        ti = context["ti"]
        sensor_doc = self._build()  # from the rendered fields
        ident = short_hash(ti.dag_id, ti.task_id, ti.run_id, str(getattr(ti, "map_index", -1)))
        # "new" means new since this task started waiting, not since the triggerer (or the first
        # poke) got to it: the durable consumer starts at the task's start time, and a poke,
        # a reschedule or a retry resumes the same consumer.
        started = getattr(ti, "start_date", None) or datetime.now(timezone.utc)
        deliver = started.isoformat()
        if self.since == "data_interval_start":
            start = context.get("data_interval_start") or context.get("logical_date")
            deliver = start.isoformat() if start else "all"
        elif isinstance(self.since, datetime):
            deliver = self.since.isoformat()
        elif self.since:
            deliver = str(self.since)
        return SensorTrigger(sensor=sensor_doc, trigger=self.trigger_name, nats_conn_id=self.nats_conn_id,
                             deliver=deliver, name=sensor_doc["metadata"]["name"], state_prefix=f"ti-{ident}",
                             max_firings=1, explain=True)

    def execute(self, context: Any) -> Any:
        if self.deferrable:
            self.defer(trigger=self._trigger(context), method_name="execute_complete",
                       timeout=timedelta(seconds=self.timeout) if self.timeout else None)
        return super().execute(context)  # poke / reschedule, with Airflow's timeout and soft_fail

    def poke(self, context: Any) -> bool | PokeReturnValue:
        """One short check of the durable consumer: a firing ends the wait, else the next poke resumes."""
        trigger = self._trigger(context)
        payload = asyncio.run(trigger.check(limit=self.poke_check_limit))
        if payload is None:
            return False
        self._log_firing(payload)
        self._cleanup(trigger)
        return PokeReturnValue(is_done=True, xcom_value=payload)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> Any:
        self._log_firing(event or {})
        self._cleanup(self._trigger(context))
        return event

    def _log_firing(self, event: dict[str, Any]) -> None:
        self.log.info("firing %s of %s: events %s", event.get("firing_id"), event.get("trigger"),
                      {d: e.get("id") for d, e in (event.get("events") or {}).items()})

    def _cleanup(self, trigger: SensorTrigger) -> None:
        try:
            asyncio.run(_forget(trigger))
        except Exception as err:  # cleanup only: never fail a task that got its firing
            self.log.warning("could not remove the sensor's consumers and state: %s", err)


async def _forget(trigger: SensorTrigger) -> None:
    """Remove the durable consumers and KV state of a finished task's sensor."""
    from airflow_argo_events.core.runtime.cleanup import forget_sensor_state
    from airflow_argo_events.core.spec.loader import parse_manifest
    from airflow_argo_events.hooks.nats import NatsHook

    sensor = parse_manifest(trigger.sensor, None, "Sensor")
    async with NatsHook(trigger.nats_conn_id).get_async_conn() as bus:
        await forget_sensor_state(bus, sensor, trigger.state_for(bus.stream.name))
