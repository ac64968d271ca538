"""The non-deferrable EventSensor on real NATS: each poke is one short check of the durable consumer;
what arrives between pokes is kept (consumer and condition state), and a firing ends the wait."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from airflow_argo_events.core.events import new_event
from airflow_argo_events.triggers import SensorTrigger

pytestmark = pytest.mark.timeout(120)
A = {"name": "a", "eventSourceName": "shop", "eventName": "a"}
B = {"name": "b", "eventSourceName": "shop", "eventName": "b"}


@pytest.fixture
def nats_conn(monkeypatch, nats_url, stream):
    monkeypatch.setenv("AIRFLOW_CONN_NATS_DEFAULT", f"{nats_url}?stream={stream.name}")


def _event(name: str, **data):
    return new_event(source="shop", subject=name, type="webhook", data=data)


async def test_check_returns_none_when_caught_up_and_keeps_state_between_pokes(bus, stream, nats_conn):
    trigger = SensorTrigger(dependencies=[A, B], conditions="a && b", name="poke", max_firings=1,
                            deliver=datetime.now(timezone.utc).isoformat())
    assert await trigger.check(limit=30) is None  # nothing yet: returns once caught up, not after the limit
    await bus.publish(_event("a", n=1))
    assert await trigger.check(limit=30) is None  # a alone does not satisfy a && b ...
    await bus.publish(_event("b", n=2))
    payload = await trigger.check(limit=30)  # ... but is remembered: b completes the condition
    assert payload is not None and set(payload["events"]) == {"a", "b"}
    assert payload["events"]["a"]["data"] == {"n": 1}
    assert await trigger.check(limit=30) is None  # the firing is not repeated


async def test_a_backlog_is_processed_in_one_poke(bus, stream, nats_conn):
    trigger = SensorTrigger(dependencies=[{**A, "filters": {"data": [{"path": "n", "type": "number",
                                                                      "value": ["50"]}]}}],
                            name="backlog", max_firings=1, deliver="all")
    for n in range(51):
        await bus.publish(_event("a", n=n))
    payload = await trigger.check(limit=60)
    assert payload is not None and payload["events"]["a"]["data"] == {"n": 50}


def _context(run_id: str):
    ti = SimpleNamespace(dag_id="d", task_id="wait", run_id=run_id, map_index=-1,
                         start_date=datetime.now(timezone.utc))
    return {"ti": ti, "params": {"cond": "a"}}


def _sync(nats_settings, stream_name, action):
    """Run ``action(bus)`` on a loop of its own (the sensor's pokes run asyncio.run, as on a worker)."""
    from airflow_argo_events.core.bus import EventBus, StreamSettings

    async def main():
        async with EventBus(nats_settings, StreamSettings(name=stream_name, replicas=1)) as b:
            return await action(b)

    return asyncio.run(main())


def test_event_sensor_poke_then_firing_then_cleanup(monkeypatch, nats_url, nats_settings):
    from airflow_argo_events.sensors import EventSensor
    from airflow_argo_events.testing.plugin import unique_name
    from airflow_argo_events.version_compat import PokeReturnValue

    name = unique_name("poke")
    monkeypatch.setenv("AIRFLOW_CONN_NATS_DEFAULT", f"{nats_url}?stream={name}")
    sensor = EventSensor(task_id="wait", dependencies=[A], conditions="{{ params.cond }}", deferrable=False,
                         mode="reschedule", poke_interval=1, timeout=60)
    context = _context(f"run-{name}")
    sensor.render_template_fields(context)
    try:
        assert sensor.poke(context) is False  # one short check, then the worker slot is free
        _sync(nats_settings, name, lambda b: b.publish(_event("a", n=7)))
        done = sensor.poke(context)
        assert isinstance(done, PokeReturnValue) and done.is_done
        assert done.xcom_value["events"]["a"]["data"] == {"n": 7}

        async def consumers(b):
            return [c.name for c in await b.js.consumers_info(name)]

        assert _sync(nats_settings, name, consumers) == [], "the finished sensor's durable consumers are removed"
    finally:
        from airflow_argo_events.testing.plugin import delete_streams

        _sync(nats_settings, name, lambda b: delete_streams(b, lambda n: name in n))


async def test_explain_gives_each_event_exactly_one_decision_line(bus, stream, nats_conn, caplog):
    """explain=True (what EventSensor sets): every event gets one line saying what became of it
    (the rejected ones: which filter and why), none of them twice, and none left out by the rate
    limit that decision lines otherwise have (5 at once per dependency)."""
    import logging

    caplog.set_level(logging.INFO, logger="airflow_argo_events")
    dep = {**A, "filters": {"data": [{"path": "n", "type": "number", "value": ["1"]}]}}
    trigger = SensorTrigger(dependencies=[dep], name="why", max_firings=1, deliver="all", explain=True)
    assert trigger.serialize()[1]["explain"] is True
    assert "explain" not in SensorTrigger(dependencies=[dep], name="why").serialize()[1]  # watchers keep their hash
    rejected = [_event("a", n=2) for _ in range(8)]
    for ev in rejected:
        await bus.publish(ev)
    assert await trigger.check(limit=30) is None
    accepted = _event("a", n=1)
    await bus.publish(accepted)
    assert (await trigger.check(limit=30))["events"]["a"]["id"] == accepted.id
    messages = [r.getMessage() for r in caplog.records]
    for ev in [*rejected, accepted]:
        lines = [m for m in messages if f"event {ev.id} (shop/a)" in m]
        assert len(lines) == 1, (ev.id, lines)
        if ev is accepted:
            assert "rejected" not in lines[0]
        else:
            assert "dependency a: rejected" in lines[0] and "data filter" in lines[0], lines[0]