"""Tasks for Prefect flows: wait for a condition over bus events, publish an event to the bus."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from prefect import get_run_logger, task
from prefect.context import TaskRunContext

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.runtime.cleanup import forget_sensor_state
from airflow_argo_events.core.runtime.identity import state_name
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.sensor.engine import Firing
from airflow_argo_events.core.spec.loader import parse_manifest
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.prefect.settings import NatsCredentials, resolve_nats

Nats = str | NatsSettings | NatsCredentials | None


def firing_result(firing: Firing) -> dict[str, Any]:
    """A firing as plain JSON: ``{"firing_id", "sensor", "trigger", "events": {dep: CloudEvent}, "resolved"}``."""
    return {"firing_id": firing.id, "sensor": firing.sensor, "trigger": firing.trigger,
            "events": {d: e.to_json() for d, e in firing.events.items()},
            "resolved": json.loads(json.dumps(firing.resolved, default=str))}


def waiting_sensor(dependencies: list[dict[str, Any]], conditions: str | None, name: str) -> Sensor:
    """The Sensor a wait runs: Argo-shaped dependencies and a condition over them (default: all)."""
    if not dependencies:
        raise SpecError([("dependencies", "give at least one dependency")])
    template: dict[str, Any] = {"name": "wait", "log": {}}
    if conditions:
        template["conditions"] = conditions
    return parse_manifest({"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": name},
                           "spec": {"dependencies": dependencies, "triggers": [{"template": template}]}}, None, "Sensor")


def _run_identity() -> tuple[str, str, datetime]:
    """(flow run id, task run id, when the task run started): a retry keeps all three."""
    ctx = TaskRunContext.get()
    if ctx is None:
        raise RuntimeError("call this task inside a Prefect flow or as a task (it needs its task run)")
    run = ctx.task_run
    started = run.start_time or datetime.now(timezone.utc)
    return str(run.flow_run_id or ""), str(run.id), started


async def wait_for_firing(sensor: Sensor, settings: NatsSettings, stream: str, *, prefix: str,
                          deliver: Any, timeout: float | None) -> Firing:
    """Run ``sensor`` on the bus until its first firing; its state (KV, consumers) is removed afterwards.

    The state is named from ``prefix`` and the definition, so a retry of the same task run
    resumes the same durable consumers: an event that arrived while it was down still counts.
    """
    got: asyncio.Future[Firing] = asyncio.get_running_loop().create_future()

    async def execute(firing: Firing) -> None:
        if not got.done():
            got.set_result(firing)

    async with EventBus(settings, StreamSettings(name=stream)) as bus:
        bucket = state_name(sensor, stream, prefix)
        runtime = SensorRuntime(sensor, bus, execute, deliver=deliver, bucket=bucket, consumer_prefix=bucket)
        await runtime.start()
        stop = asyncio.Event()
        loop = asyncio.create_task(runtime.run(stop))
        try:
            done, _ = await asyncio.wait({got, loop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if got not in done:
                if loop in done:
                    loop.result()  # the runtime failed: raise its error
                raise TimeoutError(f"no firing of {sensor.spec.triggers[0].template.conditions or 'all dependencies'}"
                                   f" within {timeout}s")
            firing = got.result()
        finally:
            stop.set()
            if not (await asyncio.wait({loop}, timeout=15))[0]:
                loop.cancel()
            await runtime.close(drain_timeout=5)
        await forget_sensor_state(bus, sensor, bucket)
        return firing


@task(name="wait_for_events")
async def wait_for_events(dependencies: list[dict[str, Any]], conditions: str | None = None, *,
                          timeout: float | None = 600, nats: Nats = None, stream: str | None = None,
                          since: datetime | str | None = None) -> dict[str, Any]:
    """Wait until events on the bus satisfy Argo-style ``dependencies`` and ``conditions``; return the firing.

    The Prefect counterpart of Airflow's ``EventSensor``. Events published after the task
    run started count (or, with ``since``, everything in the stream from that time, or
    ``"all"``); a retry of the task run resumes the same durable consumers.

    Args:
        dependencies: Argo dependencies (name, eventSourceName, eventName, filters, transform).
        conditions: a condition over their names, e.g. ``"order && payment"`` (default: all).
        timeout: seconds to wait; the task fails with TimeoutError after it (None: forever).
        nats: a NATS URL, a ``NatsCredentials`` block or its saved name (default: $ARGO_EVENTS_NATS_URL).
        stream: the JetStream stream (default: the block's, else ``default``).
        since: a datetime or ISO time, or ``"all"``, to count events published before the wait.

    Returns:
        ``{"firing_id", "sensor", "trigger", "events": {dependency: CloudEvent as JSON}, "resolved"}``.

    Example:
        ```python
        from prefect import flow
        from airflow_argo_events.prefect import wait_for_events

        @flow
        async def ship():
            firing = await wait_for_events(
                dependencies=[{"name": "order", "eventSourceName": "shop", "eventName": "order"},
                              {"name": "payment", "eventSourceName": "shop", "eventName": "payment"}],
                conditions="order && payment", timeout=600)
            print(firing["events"]["order"]["data"])
        ```
    """
    flow_run_id, task_run_id, started = _run_identity()
    ident = hashlib.sha256(f"{flow_run_id}\x00{task_run_id}".encode()).hexdigest()[:16]
    sensor = waiting_sensor(dependencies, conditions, name=f"prefect-{ident}")
    settings, stream_name = await resolve_nats(nats, stream)
    deliver: Any = started
    if since == "all":
        deliver = "all"
    elif isinstance(since, str):
        deliver = datetime.fromisoformat(since.replace("Z", "+00:00"))
    elif isinstance(since, datetime):
        deliver = since
    logger = get_run_logger()
    logger.info("waiting for %s on %s (stream %s)", conditions or " && ".join(d["name"] for d in dependencies),
                settings.describe(), stream_name)
    firing = await wait_for_firing(sensor, settings, stream_name, prefix=f"prefect-{ident}", deliver=deliver,
                                   timeout=timeout)
    logger.info("firing %s: events %s", firing.id, {d: e.id for d, e in firing.events.items()})
    return firing_result(firing)


@task(name="wait_for_events")
def wait_for_events_sync(dependencies: list[dict[str, Any]], conditions: str | None = None, *,
                         timeout: float | None = 600, nats: Nats = None, stream: str | None = None,
                         since: datetime | str | None = None) -> dict[str, Any]:
    """:func:`wait_for_events` for synchronous flows (same arguments, same result)."""
    from prefect.utilities.asyncutils import run_coro_as_sync

    return run_coro_as_sync(wait_for_events.fn(dependencies, conditions, timeout=timeout, nats=nats, stream=stream,
                                               since=since))


@task(name="publish_event")
async def publish_event(event_source: str, event: str, data: Any = None, *, type: str = "prefect",
                        nats: Nats = None, stream: str | None = None, id: str | None = None) -> str:
    """Publish one CloudEvent to the bus (source = ``event_source``, subject = ``event``); its id.

    The id is derived from the flow run and the task run, so a retry of this task publishes
    the same event again, which the bus drops as a duplicate (``Nats-Msg-Id``, within the
    stream's duplicate window, 2 minutes by default). Pass ``id`` to choose it.

    Example:
        ```python
        from prefect import flow
        from airflow_argo_events.prefect import publish_event

        @flow
        async def checkout(order_id: str):
            await publish_event("shop", "order", {"body": {"id": order_id}})
        ```
    """
    flow_run_id, task_run_id, _ = _run_identity()
    event_id = id or hashlib.sha256(f"prefect\x00{flow_run_id}\x00{task_run_id}".encode()).hexdigest()[:32]
    settings, stream_name = await resolve_nats(nats, stream)
    ev = new_event(source=event_source, subject=event, type=type, data=data, id=event_id,
                   extensions={"prefectflowrunid": flow_run_id} if flow_run_id else None)
    async with EventBus(settings, StreamSettings(name=stream_name)) as bus:
        result = await bus.publish(ev)
    get_run_logger().info("event %s/%s id=%s %s", event_source, event, event_id,
                          "was already on the bus (a retry)" if result.duplicate else "published")
    return event_id
