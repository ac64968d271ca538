"""The live sensor with a parameter that cannot be resolved: not a poison message. The engine
fires (state cleared, as Argo does), the firing carries the error, the executor records it
failed and runs the dlqTrigger; the message is acked, nothing is dead-lettered on the bus."""

from __future__ import annotations

import asyncio

import pytest

from airflow_argo_events.core.actions.executor import ActionRunner
from airflow_argo_events.core.bus import EventBus
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name

pytestmark = pytest.mark.timeout(120)


async def until(cond, timeout=20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def test_a_missing_data_key_fails_the_firing_and_runs_the_dlq(bus: EventBus):
    name = unique_name("s")
    sensor = Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "shop", "eventName": "order"},
                         {"name": "b", "eventSourceName": "shop", "eventName": "pay"}],
        "triggers": [{"template": {"name": "t", "conditions": "a && b", "log": {}}, "atLeastOnce": True,
                      "parameters": [{"src": {"dependencyName": "a", "dataKey": "order.id"},
                                      "dest": "log.intervalSeconds"}],
                      "dlqTrigger": {"atLeastOnce": True, "template": {"name": "lost", "log": {}}}}]}})
    outcomes = []
    runners: list[ActionRunner] = []

    async def execute(firing):  # what `argo-events sensor run` passes: ActionRunner.run
        outcomes.append(await runners[0].run(firing))

    rt = SensorRuntime(sensor, bus, execute)
    runner = ActionRunner(rt.engine)
    runners.append(runner)
    await rt.start()
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    try:
        await bus.publish(new_event(source="shop", subject="order", type="webhook", data={"other": 1}, id="o1"))
        await bus.publish(new_event(source="shop", subject="pay", type="webhook", data={}, id="p1"))
        await until(lambda: outcomes and not rt.pending())
    finally:
        stop.set()
        await task
        await rt.close()
        await runner.close()
    (out,) = outcomes
    assert not out.ok and out.attempts == 0
    assert out.detail.startswith("trigger 't': parameter parameters[0] (dest 'log.intervalSeconds'): key 'order.id' "
                                 "is not in the event of dependency 'a'")
    assert out.dlq is not None and out.dlq.ok
    assert rt.stats["poison"] == 0 and rt.stats["dead_lettered"] == 0 and rt.stats["firings"] == 1
    assert rt.engine.saved("t") == {}  # cleared, as in Argo
