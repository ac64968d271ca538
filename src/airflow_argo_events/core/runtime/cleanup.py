"""Removing a one-shot sensor's state once its wait is over.

An ``EventSensor`` task and Prefect's ``wait_for_events`` each run a sensor of their own
(named from the task run) until its first firing; nothing will resume it afterwards, so
its durable consumers and KV bucket would only pile up on the bus.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_argo_events.core.bus.consumer import durable_name

if TYPE_CHECKING:
    from airflow_argo_events.core.bus import EventBus
    from airflow_argo_events.core.spec.sensor import Sensor


async def forget_sensor_state(bus: EventBus, sensor: Sensor, bucket: str) -> None:
    """Delete the durable consumers and the KV bucket of ``sensor`` stored under ``bucket``.

    Cleanup only: what is already gone (or cannot be deleted now) is skipped, so a caller
    that got its firing never fails here.

    >>> await forget_sensor_state(bus, sensor, runtime.bucket)   # doctest: +SKIP
    """
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
