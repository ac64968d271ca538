"""A correlated sensor on the real NATS: one KV entry per pending key, restarts, eviction."""

from __future__ import annotations

import logging

import pytest

from airflow_argo_events.core.bus import EventBus
from airflow_argo_events.core.runtime import state as st
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name

from .test_sensor_runtime import Collector, ev, running, until

pytestmark = pytest.mark.timeout(120)


def orders_sensor(name: str, **correlation: object) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "order", "eventSourceName": "shop", "eventName": "order"},
                         {"name": "payment", "eventSourceName": "shop", "eventName": "pay"}],
        "triggers": [{"template": {"name": "ship", "conditions": "order && payment", "log": {},
                                   "correlation": {"keys": {"order": "id", "payment": "orderId"},
                                                   **correlation}}}]}})


async def state_keys(bus: EventBus, bucket: str) -> set[str]:
    store = await bus.state(bucket)
    return {k for k in await store.keys() if k.startswith("s.")}


async def test_each_key_pairs_its_own_events_with_one_entry_per_key_across_a_restart(bus: EventBus, monkeypatch):
    monkeypatch.setattr(st, "ACKED_GRACE", 0.0)  # drain emptied keys at the next batch
    sensor = orders_sensor(unique_name("corr"), window="1h")
    got = Collector()
    async with running(sensor, bus, got) as rt:
        for i in range(1, 6):
            await bus.publish(ev("order", {"id": i}, id=f"o{i}"))
        await until(lambda: rt.stats["events"] == 5)
        assert await state_keys(bus, rt.bucket) == {f"s.ship.k{i}" for i in range(1, 6)}
        store = await bus.state(rt.bucket)
        doc, _ = await store.get("s.ship.k3")
        assert doc["corr"] == "3" and list(doc["deps"]) == ["order"]
        for i in (3, 1, 2):
            await bus.publish(ev("pay", {"orderId": str(i)}, id=f"p{i}"))
        await until(lambda: len(got.firings) == 3)
        await until(lambda: not rt.pending())
        await bus.publish(ev("pay", {"orderId": "other"}, id="p-other"))  # a batch that drains 1-3
        await until(lambda: rt.stats["events"] == 9)
        await until(lambda: not rt._draining, timeout=20)
    assert [(f.key, f.events["order"].id, f.events["payment"].id) for f in got.firings] == [
        ("3", "o3", "p3"), ("1", "o1", "p1"), ("2", "o2", "p2")]
    assert await state_keys(bus, rt.bucket) == {"s.ship.k4", "s.ship.k5", "s.ship.kother"}
    async with running(sensor, bus, got) as rt2:  # a new process finds its pending keys
        assert set(rt2.engine.matches("ship")) == {"4", "5", "other"}
        await bus.publish(ev("pay", {"orderId": 5}, id="p5"))
        await bus.publish(ev("order", {"id": "other"}, id="o-other"))
        await until(lambda: len(got.firings) == 5)
    # two consumers (order, pay): their firings may come in either order
    assert sorted((f.key, f.events["order"].id, f.events["payment"].id) for f in got.firings[3:]) == [
        ("5", "o5", "p5"), ("other", "o-other", "p-other")]


async def test_events_without_a_key_are_rejected_and_acked(bus: EventBus):
    sensor = orders_sensor(unique_name("corr"))
    got = Collector()
    async with running(sensor, bus, got) as rt:
        await bus.publish(ev("order", {"nothing": 1}, id="o-none"))
        await bus.publish(ev("order", {"id": {"nested": 1}}, id="o-obj"))
        await bus.publish(ev("order", {"id": 1}, id="o1"))
        await bus.publish(ev("pay", {"orderId": 1}, id="p1"))
        await until(lambda: len(got.firings) == 1)
        assert rt.stats["poison"] == 0 and rt.stats["events"] == 4
    assert got.firings[0].key == "1"


async def test_eviction_beyond_max_pending_is_counted_and_logged_once(bus: EventBus, monkeypatch, caplog):
    monkeypatch.setattr(st, "ACKED_GRACE", 0.0)
    sensor = orders_sensor(unique_name("corr"), maxPending=2)
    got = Collector()
    caplog.set_level(logging.WARNING, logger="airflow_argo_events.sensor")
    async with running(sensor, bus, got) as rt:
        for i in range(1, 6):
            await bus.publish(ev("order", {"id": i}, id=f"o{i}"))
            await until(lambda i=i: rt.stats["events"] == i)
        await bus.publish(ev("pay", {"orderId": 1}, id="p1"))  # order 1 was evicted: waits alone
        await until(lambda: rt.stats["events"] == 6)
        await until(lambda: not rt._draining, timeout=20)
        assert rt.stats["evicted"] == 4 and got.firings == []
        assert set(rt.engine.matches("ship")) == {"5", "1"}
    assert await state_keys(bus, rt.bucket) == {"s.ship.k5", "s.ship.k1"}
    warnings = [r.getMessage() for r in caplog.records if "beyond maxPending" in r.getMessage()]
    assert len(warnings) == 1 and "evicted 1 pending correlation key(s) (trigger ship: 1)" in warnings[0]


async def test_a_threshold_counts_across_a_restart(bus: EventBus):
    """3 failures of one job within 5 minutes: the counted ids are stored with the key."""
    sensor = Sensor.model_validate({"metadata": {"name": unique_name("thr")}, "spec": {
        "dependencies": [{"name": "failure", "eventSourceName": "ci", "eventName": "failed"}],
        "triggers": [{"template": {"name": "page", "conditions": "failure", "log": {},
                                   "correlation": {"keys": {"failure": "job"}, "window": "5m",
                                                   "threshold": {"failure": 3}}}}]}})

    def failed(job: str, id: str):
        from airflow_argo_events.core.events import new_event

        return new_event(source="ci", subject="failed", type="webhook", data={"job": job}, id=id)

    got = Collector()
    async with running(sensor, bus, got) as rt:
        for i, job in enumerate(["build", "build", "lint"]):
            await bus.publish(failed(job, f"f{i}"))
        await until(lambda: rt.stats["events"] == 3)
        store = await bus.state(rt.bucket)
        doc, _ = await store.get("s.page.kbuild")
        assert [i for i, _ in doc["counted"]["failure"]] == ["f0", "f1"]
    async with running(sensor, bus, got) as rt2:
        await bus.publish(failed("build", "f3"))
        await until(lambda: len(got.firings) == 1)
        assert rt2.engine.counted("page", "lint") and not rt2.engine.counted("page", "build")
    (f,) = got.firings
    assert f.key == "build" and f.counted == {"failure": ["f0", "f1", "f3"]} and f.events["failure"].id == "f3"


async def test_emptied_keys_left_by_a_stopped_process_are_removed_after_restart(bus: EventBus, monkeypatch):
    """A key that fired keeps an empty entry while its messages may come back; a new process
    cannot have seen those acks, so it removes the entry once the consumers' ack floor passed them."""
    monkeypatch.setattr(st, "ACKED_GRACE", 0.0)
    monkeypatch.setattr("airflow_argo_events.core.runtime.sensor_runtime.DRAIN_IDLE", 3600.0)  # no idle drain
    sensor = orders_sensor(unique_name("corr"))
    got = Collector()
    async with running(sensor, bus, got) as rt:
        await bus.publish(ev("order", {"id": 1}, id="o1"))
        await bus.publish(ev("pay", {"orderId": 1}, id="p1"))
        await until(lambda: len(got.firings) == 1)
        await until(lambda: not rt.pending())
    assert await state_keys(bus, rt.bucket) == {"s.ship.k1"}  # empty, holding the applied sequences
    monkeypatch.setattr("airflow_argo_events.core.runtime.sensor_runtime.DRAIN_IDLE", 0.2)
    async with running(sensor, bus, got) as rt2:
        assert set(rt2._draining) == {("ship", "1")}
        await until(lambda: not rt2._draining, timeout=30)  # the sweeper samples the floor every 5 s
    assert await state_keys(bus, rt.bucket) == set()
