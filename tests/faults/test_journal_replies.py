"""A journal entry stored while its reply was lost is the sensor's own, not a replica's.

Seen in CI (the e2e NATS stall test, 16 of 20 DAG runs): NATS was SIGSTOPped while a batch's
journal entries were being created. The server stored them when it resumed, but the replies
had timed out, so the batch was processed again. On the retry each create met an existing
entry and the sensor took it for another process's ("journaled by another process"). One
more timeout in that retry sent the batch round once more, and then those firings counted
as done: they never ran. Each entry now says which process wrote it.
"""

from __future__ import annotations

import asyncio

import pytest

from airflow_argo_events.core.bus import EventBus
from airflow_argo_events.core.bus.kv import StateStore
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.exceptions import EventBusError
from airflow_argo_events.core.runtime import state as state_module
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name
from tests.support import running_sensor, wait_until

pytestmark = pytest.mark.timeout(120)


def one_dep_sensor(name: str) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "shop", "eventName": "order"}],
        "triggers": [{"template": {"name": "t", "log": {}}}]}})


async def test_journal_creates_whose_replies_were_lost_still_fire(nats_settings, stream, monkeypatch, chunks_only):
    real_put_many = StateStore.put_many
    journal_calls: list[int] = []

    async def lossy(self, items):
        results = await real_put_many(self, items)  # the server stores every one of them
        if not all(key.startswith("j.") for key, _, _ in items):
            return results
        journal_calls.append(len(items))
        lost = EventBusError("request to $KV...: no reply within 5s")
        if len(journal_calls) == 1:  # every reply lost
            return [lost for _ in results]
        if len(journal_calls) == 2:  # the retry: the last one's reply lost again
            return [*results[:-1], lost]
        return results

    monkeypatch.setattr(StateStore, "put_many", lossy)
    fired: list[str] = []

    async def action(firing) -> None:
        fired.extend(e.id for e in firing.events.values())

    async with EventBus(nats_settings, stream) as bus:
        rt = SensorRuntime(one_dep_sensor(unique_name("s")), bus, action, idle_poll=0.5)
        await rt.start()  # its consumers exist (DeliverNew) before the events are published
        for i in range(3):  # published before the sensor reads: one batch
            await bus.publish(new_event(source="shop", subject="order", type="webhook", data={"i": i}, id=f"o{i}"))
        async with running_sensor(rt, start=False):
            assert await wait_until(lambda: sorted(fired) == ["o0", "o1", "o2"], 30), f"fired {fired}"
            assert len(journal_calls) >= 3  # the batch really went round three times
            await asyncio.sleep(1)
            assert sorted(fired) == ["o0", "o1", "o2"]  # and none ran twice


def two_dep_sensor(name: str) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "shop", "eventName": "order"},
                         {"name": "b", "eventSourceName": "shop", "eventName": "payment"}],
        "triggers": [{"template": {"name": "t", "conditions": "a && b", "log": {}}}]}})


@pytest.mark.parametrize(("journal", "journal_reply_lost"), [("entry", False), ("chunks", False), ("chunks", True)])
async def test_a_state_write_stored_while_its_reply_was_lost_fires_once(nats_settings, stream, monkeypatch,
                                                                       journal, journal_reply_lost):
    """The batch that completes ``a && b`` journals the firing and writes the trigger's entry
    (a consumed, b applied). The server stores both, but the entry write's reply is lost (and,
    in the second case, the journal create's too), so the batch is processed again on top of
    the reloaded entry. That entry already applied b: the firing must still run, once, and b
    must not be saved again as if it were waiting for a new a."""
    if journal == "chunks":
        monkeypatch.setattr(state_module, "ENTRY_JOURNAL_MAX", 0)
    real_put_many = StateStore.put_many
    armed = asyncio.Event()
    lost_calls: list[str] = []

    async def lossy(self, items):
        results = await real_put_many(self, items)  # the server stores every one of them
        if not armed.is_set() or not items:
            return results
        kind = items[0][0][:2]
        if kind == "s." and "s." not in lost_calls or kind == "j." and journal_reply_lost and "j." not in lost_calls:
            lost_calls.append(kind)
            return [EventBusError("request to $KV...: no reply within 5s") for _ in results]
        return results

    monkeypatch.setattr(StateStore, "put_many", lossy)
    fired: list[list[str]] = []

    async def action(firing) -> None:
        fired.append(sorted(e.id for e in firing.events.values()))

    async with EventBus(nats_settings, stream) as bus:
        rt = SensorRuntime(two_dep_sensor(unique_name("s")), bus, action, idle_poll=0.5)
        async with running_sensor(rt):
            await bus.publish(new_event(source="shop", subject="order", type="webhook", data={}, id="a1"))
            assert await wait_until(lambda: rt.stats["events"] == 1, 20)
            armed.set()
            await bus.publish(new_event(source="shop", subject="payment", type="webhook", data={}, id="b1"))
            assert await wait_until(lambda: fired == [["a1", "b1"]], 30), f"fired {fired}, lost {lost_calls}"
            assert "s." in lost_calls
            await asyncio.sleep(1)
            assert fired == [["a1", "b1"]]  # once
            entry = rt._entries.get(("t", "_"))
            assert entry is None or not entry.refs, f"b saved again: {entry.refs}"
            # a new a alone does not fire (b was consumed by the firing)
            await bus.publish(new_event(source="shop", subject="order", type="webhook", data={}, id="a2"))
            assert await wait_until(lambda: rt.stats["events"] == 3, 20)
            await asyncio.sleep(0.5)
            assert fired == [["a1", "b1"]]
