"""The live sensor on a real NATS: state in KV, ack after store, journal, restarts."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.runtime.state import count_journal
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name
from tests.support import running_sensor

pytestmark = pytest.mark.timeout(120)


def and_sensor(name: str) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "shop", "eventName": "order"},
                         {"name": "b", "eventSourceName": "shop", "eventName": "pay",
                          "filters": {"data": [{"path": "ok", "type": "bool", "value": ["true"]}]}}],
        "triggers": [{"template": {"name": "both", "conditions": "a && b", "log": {}}},
                     {"template": {"name": "any", "conditions": "a || b", "log": {}}}]}})


class Collector:
    def __init__(self, fail_first: int = 0):
        self.firings = []
        self.fail_first = fail_first

    async def __call__(self, firing):
        if self.fail_first:
            self.fail_first -= 1
            raise asyncio.CancelledError  # simulates the process dying mid-action
        self.firings.append(firing)


async def until(cond, timeout=10.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(sensor, bus, execute, **kw):
    rt = SensorRuntime(sensor, bus, execute, **kw)
    async with running_sensor(rt):
        yield rt


def ev(subject, data=None, id=None):
    return new_event(source="shop", subject=subject, type="webhook", data=data if data is not None else {}, id=id)


async def test_fires_and_persists_state(bus: EventBus):
    sensor = and_sensor(unique_name("s"))
    got = Collector()
    async with running(sensor, bus, got) as rt:
        await bus.publish(ev("order", id="o1"))
        await until(lambda: len(got.firings) == 1)  # 'any' fired on a
        await bus.publish(ev("pay", {"ok": False}, id="p0"))  # filtered out
        await bus.publish(ev("pay", {"ok": True}, id="p1"))
        await until(lambda: len(got.firings) == 3)
        await until(lambda: not rt.pending())
    assert [(f.trigger, sorted(e.id for e in f.events.values())) for f in got.firings] == [
        ("any", ["o1"]), ("both", ["o1", "p1"]), ("any", ["p1"])]
    store = await bus.state(rt.bucket)
    entry, _ = await store.get("s.both._")
    assert entry["deps"] == {} and sorted(entry["applied"]) == ["a", "b"]
    assert [k for k in await store.keys() if k.startswith("j.")] == [] and await count_journal(store) == 0
    assert [k for k in await store.keys() if k.startswith("s.") and "firings" in (await store.get(k))[0]] == []
    meta, _ = await store.get("meta")
    assert meta["sensor"] == sensor.metadata.name and meta["version"] == 2
    await bus.js.delete_key_value(rt.bucket)


async def test_state_survives_restart(bus: EventBus):
    sensor = and_sensor(unique_name("s"))
    got = Collector()
    async with running(sensor, bus, got):
        await bus.publish(ev("order", id="o1"))
        await until(lambda: len(got.firings) == 1)
    # a new process: the saved 'a' event comes back from KV
    async with running(sensor, bus, got) as rt2:
        await bus.publish(ev("pay", {"ok": True}, id="p1"))
        await until(lambda: len(got.firings) == 3)
    both = [f for f in got.firings if f.trigger == "both"]
    assert len(both) == 1 and set(both[0].events) == {"a", "b"}
    await bus.js.delete_key_value(rt2.bucket)


async def test_events_published_while_down_are_consumed_after_restart(bus: EventBus):
    sensor = and_sensor(unique_name("s"))
    got = Collector()
    async with running(sensor, bus, got) as rt:
        assert rt.stats["events"] == 0
    for i in range(5):
        await bus.publish(ev("order", id=f"o{i}"))
    async with running(sensor, bus, got):
        await until(lambda: len(got.firings) == 5)
    assert sorted(f.events["a"].id for f in got.firings) == [f"o{i}" for i in range(5)]
    await bus.js.delete_key_value(rt.bucket)


async def test_interrupted_action_is_rerun_from_journal_with_same_id(bus: EventBus):
    sensor = and_sensor(unique_name("s"))
    dying = Collector(fail_first=1)
    async with running(sensor, bus, dying) as rt:
        await bus.publish(ev("order", id="o1"))
        await until(lambda: dying.fail_first == 0)
        await asyncio.sleep(0.1)
        assert len(rt.pending()) == 1
        lost_id = next(iter(rt.pending()))
    fresh = Collector()
    async with running(sensor, bus, fresh) as rt2:
        # a hang detector (it failed once at 10 s in CI under load, never here): what it saw
        loaded = lost_id in rt2.pending()
        try:
            await until(lambda: len(fresh.firings) == 1, timeout=30)
        except AssertionError as err:
            raise AssertionError(f"{err}: journal loaded {loaded}, pending {list(rt2.pending())}, running "
                                 f"{sorted(rt2._running)}, ready {rt2._ready.qsize()}, stats {rt2.stats}") from None
        await until(lambda: not rt2.pending())
    assert fresh.firings[0].id == lost_id
    await bus.js.delete_key_value(rt.bucket)


async def test_redelivered_message_is_not_processed_twice(bus: EventBus):
    sensor = and_sensor(unique_name("s"))
    got = Collector()
    async with running(sensor, bus, got) as rt:
        e = ev("order", id="same")
        await bus.publish(e)
        await until(lambda: len(got.firings) == 1)
        # the same CloudEvent id arriving again (a retrying publisher after the dedupe window)
        await bus.js.publish(f"{bus.stream.name}.shop.order", b'{"specversion":"1.0","id":"same","source":"shop",'
                             b'"subject":"order","type":"webhook","datacontenttype":"application/json","data":{}}')
        await until(lambda: rt.stats["skipped"] == 1)
    assert len(got.firings) == 1
    await bus.js.delete_key_value(rt.bucket)


async def test_malformed_messages_do_not_stop_the_sensor(bus: EventBus):
    sensor = and_sensor(unique_name("s"))
    got = Collector()
    async with running(sensor, bus, got) as rt:
        await bus.js.publish(f"{bus.stream.name}.shop.order", b"garbage")
        await bus.publish(ev("order", id="good"))
        await until(lambda: len(got.firings) == 1)
        assert rt.stats["malformed"] == 1
    await bus.js.delete_key_value(rt.bucket)


async def test_two_replicas_share_state_without_double_firing(nats_settings: NatsSettings, stream: StreamSettings):
    sensor = and_sensor(unique_name("s"))
    got = Collector()
    from dataclasses import replace

    # Replicas are separate processes in production: give each its own connection.
    other = replace(nats_settings, name="replica-2")
    async with EventBus(nats_settings, stream) as bus, EventBus(other, stream) as bus2:
        async with running(sensor, bus, got) as r1, running(sensor, bus2, got):
            for i in range(30):
                await bus.publish(ev("order", id=f"o{i}"))
                await bus.publish(ev("pay", {"ok": True}, id=f"p{i}"))
            # Replicas share one durable consumer; a message caught in a pull that timed out on one
            # replica comes back after ack_wait (5 s), so allow for that.
            await until(lambda: len([f for f in got.firings if f.trigger == "any"]) == 60, timeout=60)
            await asyncio.sleep(0.3)
        ids = [f.id for f in got.firings]
        assert len(ids) == len(set(ids)), "a firing was executed twice"
        both = [f for f in got.firings if f.trigger == "both"]
        # every pay completes a pair with the latest order saved before it
        assert 1 <= len(both) <= 30
        await bus.js.delete_key_value(r1.bucket)


async def test_forget_sensor_state_removes_the_consumers_and_the_bucket(bus: EventBus):
    """What EventSensor and Prefect's wait_for_events call once their wait is over: the sensor's
    durable consumers and KV bucket go, other consumers stay, and a second call finds nothing to do."""
    from nats.js.errors import NotFoundError

    from airflow_argo_events.core.bus.consumer import durable_name
    from airflow_argo_events.core.runtime.cleanup import forget_sensor_state

    s = and_sensor(unique_name("forget"))
    other = await bus.subscribe(durable_name(unique_name("other"), "shop", "order"), "shop", "order")
    async with running(s, bus, Collector()) as rt:
        await bus.publish(new_event(source="shop", subject="order", type="webhook", data={}))
        await until(lambda: rt.stats["events"] == 1)
    mine = {durable_name(rt.bucket, "shop", e) for e in ("order", "pay")}
    assert mine <= {c.name for c in await bus.js.consumers_info(bus.stream.name)}
    await forget_sensor_state(bus, s, rt.bucket)
    left = {c.name for c in await bus.js.consumers_info(bus.stream.name)}
    assert not mine & left and other.durable in left
    with pytest.raises(NotFoundError):
        await bus.js.stream_info(f"KV_{rt.bucket}")
    await forget_sensor_state(bus, s, rt.bucket)  # nothing left: no error
    await other.delete()
