"""Run a Sensor the Prefect way: a long-running flow (``run_sensor``), served or deployed, or ``serve_sensor()``."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from airflow_argo_events.core.actions.base import ActionContext
from airflow_argo_events.core.actions.executor import ActionRunner
from airflow_argo_events.core.bus import EventBus, StreamSettings
from airflow_argo_events.core.runtime.identity import check_state_name, state_name
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.spec.loader import load_one, parse_manifest
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.prefect.settings import NatsCredentials, prefect_api_settings, resolve_nats

log = logging.getLogger("airflow_argo_events.prefect")


def _load(sensor: str | Path | dict[str, Any] | Sensor) -> Sensor:
    if isinstance(sensor, Sensor):
        return sensor
    if isinstance(sensor, dict):
        return parse_manifest(sensor, None, "Sensor")  # type: ignore[no-any-return]
    return load_one(sensor, "Sensor")  # type: ignore[no-any-return]


async def run_sensor_until(sensor: str | Path | dict[str, Any] | Sensor, stop: asyncio.Event, *,
                           nats: str | NatsCredentials | None = None, stream: str | None = None,
                           deliver: str = "new", state: str | None = None, ready: asyncio.Event | None = None) -> None:
    """Run a Sensor and its actions against the bus until ``stop`` is set.

    The same runtime as ``argo-events sensor run``: state in the bus's KV, a journal of
    firings, events acked only after the state that includes them is stored; so a process
    killed at any point loses no firing, and the actions' idempotency keys (a Prefect flow
    run's ``idempotency_key`` is the firing id) keep a re-run firing from acting twice.
    """
    model = _load(sensor)
    settings, stream_name = await resolve_nats(nats, stream)
    bucket = check_state_name(state) if state else state_name(model, stream_name, "sensor")
    ctx = ActionContext(prefect_api=prefect_api_settings())
    async with EventBus(settings, StreamSettings(name=stream_name)) as bus:
        runner: ActionRunner | None = None

        async def execute(firing: Any) -> Any:
            assert runner is not None
            return await runner.run(firing)

        # The same bucket as `argo-events sensor run` for the same definition: one can replace the other.
        runtime = SensorRuntime(model, bus, execute, deliver=deliver, bucket=bucket, consumer_prefix=bucket)
        runner = ActionRunner(runtime.engine, ctx)
        await runtime.start()
        log.info("sensor %s: listening on %s (%s); state %s", model.metadata.name,
                 ", ".join(s.subject for s in runtime._subs), settings.describe(), bucket)
        if ready is not None:
            ready.set()
        try:
            await runtime.run(stop)
        finally:
            await runtime.close()
            await runner.close()
        log.info("sensor %s: stopped; %s", model.metadata.name, runtime.stats)


@flow(name="argo-events-sensor", log_prints=True)
async def run_sensor(sensor: str, nats: str | None = None, stream: str | None = None, deliver: str = "new",
                     state: str | None = None) -> dict[str, int]:
    """A long-running flow that runs one Sensor manifest (a path) until the flow run is cancelled.

    Serve it (``run_sensor.serve(name="orders", parameters={"sensor": "orders.yaml"})``) or
    deploy it to a work pool; each flow run is one sensor process, like Argo's sensor pod.
    """
    logger = get_run_logger()
    stop = asyncio.Event()
    logger.info("running sensor %s", sensor)
    try:
        await run_sensor_until(sensor, stop, nats=nats, stream=stream, deliver=deliver, state=state)
    except asyncio.CancelledError:
        stop.set()
        raise
    return {}


def serve_sensor(sensor: str | Path, *, nats: str | None = None, stream: str | None = None, deliver: str = "new",
                 state: str | None = None) -> None:
    """Run a Sensor manifest in this process as one long-running Prefect flow run (blocks; Ctrl-C stops it).

    Example:
        ```python
        from airflow_argo_events.prefect import serve_sensor

        serve_sensor("orders-sensor.yaml", nats="nats://127.0.0.1:4222")
        ```
    """
    asyncio.run(run_sensor(str(sensor), nats=nats, stream=stream, deliver=deliver, state=state))
