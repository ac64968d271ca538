"""SensorTrigger.run() driven as the triggerer drives it (a task iterating the generator), on real NATS."""

from __future__ import annotations

import asyncio

import pytest

from airflow_argo_events.core.events import new_event
from airflow_argo_events.triggers import SensorTrigger

pytestmark = pytest.mark.timeout(90)


async def _consume(trigger, queue):
    async for event in trigger.run():
        queue.put_nowait(event)


@pytest.fixture
def nats_conn(monkeypatch, nats_url, stream):
    monkeypatch.setenv("AIRFLOW_CONN_NATS_DEFAULT", f"{nats_url}?stream={stream.name}")


async def _started(bus, stream_name, task):
    for _ in range(100):
        if (await bus.js.stream_info(stream_name)).state.consumer_count:
            return
        assert not task.done(), task.exception()
        await asyncio.sleep(0.1)
    raise AssertionError("the trigger never created its consumer")


async def test_yields_one_event_per_firing(bus, stream, nats_conn):
    trigger = SensorTrigger(name="solo", dependencies=[{"name": "d", "eventSourceName": "s", "eventName": "e"}])
    queue: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(_consume(trigger, queue))
    try:
        await _started(bus, stream.name, task)
        sent = [new_event(source="s", subject="e", type="webhook", data={"i": i}) for i in range(5)]
        for ev in sent:
            await bus.publish(ev)
        got = [await asyncio.wait_for(queue.get(), 10) for _ in sent]
        assert [g.payload["events"]["d"]["id"] for g in got] == [e.id for e in sent]
        assert len({g.payload["firing_id"] for g in got}) == 5
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=10)


async def test_cancel_finishes_promptly(bus, stream, nats_conn):
    trigger = SensorTrigger(name="solo", dependencies=[{"name": "d", "eventSourceName": "s", "eventName": "e"}])
    queue: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(_consume(trigger, queue))
    await _started(bus, stream.name, task)
    await bus.publish(new_event(source="s", subject="e", type="webhook", data={}))
    await asyncio.wait_for(queue.get(), 10)
    task.cancel()
    # Regression: the runtime's journal flusher once swallowed its cancellation, so a cancelled
    # trigger (the triggerer cancels them on reassignment and after a deferred task's event)
    # hung until cancelled again.
    for _ in range(3):
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, "cancellation did not finish within 5 s"
        task = asyncio.create_task(_consume(trigger, queue))
        await bus.publish(new_event(source="s", subject="e", type="webhook", data={}))
        await asyncio.wait_for(queue.get(), 10)
        task.cancel()
    assert (await asyncio.wait({task}, timeout=5))[0]
