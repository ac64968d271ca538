"""``sensor status`` / ``sensor list`` read a live sensor's state on a real NATS without disturbing it."""

from __future__ import annotations

import asyncio
import logging

import pytest

from airflow_argo_events.core.actions.base import ActionContext
from airflow_argo_events.core.actions.executor import ActionRunner
from airflow_argo_events.core.bus import EventBus
from airflow_argo_events.core.observe.record import OBS_KEY
from airflow_argo_events.core.observe.status import SensorNotFound, list_sensors, read_sensor_status
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name
from tests.integration.test_sensor_runtime import ev, running, until

pytestmark = pytest.mark.timeout(120)


def sensor(name: str) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "shop", "eventName": "order"},
                         {"name": "b", "eventSourceName": "shop", "eventName": "pay",
                          "filters": {"data": [{"path": "ok", "type": "bool", "value": ["true"]}]}},
                         {"name": "c", "eventSourceName": "shop", "eventName": "ship"}],
        "triggers": [{"template": {"name": "both", "conditions": "a && b", "log": {}}},
                     {"template": {"name": "all3", "log": {}}},
                     {"template": {"name": "any", "conditions": "c", "log": {}}}]}})


async def consumer_states(bus: EventBus, stream: str) -> list[tuple[str, int, int]]:
    return sorted((c.name, c.delivered.consumer_seq, c.num_ack_pending) for c in await bus.js.consumers_info(stream))


async def test_status_shows_conditions_last_events_and_firings(bus: EventBus):
    s = sensor(unique_name("st"))
    done = []

    async def execute(firing):
        done.append(firing)

    async with running(s, bus, execute, owner={"kind": "test", "dag_id": "d1"}) as rt:
        await bus.publish(ev("order", id="o1"))
        await bus.publish(ev("pay", {"ok": False}, id="p0"))  # rejected by b's filter
        await bus.publish(ev("ship", id="s1"))
        await until(lambda: rt.stats["events"] == 3 and len(done) == 1)
        await until(lambda: rt.stats["actions_ok"] == 1)
        await until(lambda: not rt._done_home)  # the firing's entry written without it (the sensor's last write)
        await rt._store_notes()
        consumers_before = await consumer_states(bus, bus.stream.name)
        keys_before = await (await bus.state(rt.bucket)).keys()
        status = await read_sensor_status(bus.js, s.metadata.name)
        # reading changed nothing: no consumer created or moved, no key written
        assert await consumer_states(bus, bus.stream.name) == consumers_before
        assert await (await bus.state(rt.bucket)).keys() == keys_before
    assert status.state == rt.bucket and status.sensor == s.metadata.name and status.running
    assert status.owner == {"kind": "test", "dag_id": "d1"}
    by = {t.name: t for t in status.triggers}
    assert by["both"].condition == "a && b" and by["both"].stateful
    assert [(d.name, d.satisfied, d.event_id) for d in by["both"].dependencies] == [("a", True, "o1"),
                                                                                   ("b", False, None)]
    assert by["both"].waiting_for == "waits for b"
    assert by["all3"].waiting_for == "waits for b"  # a and c saved; b missing
    assert not by["any"].stateful and by["any"].last_firing is not None and by["any"].last_firing.ok
    assert by["both"].last_firing is None and by["both"].pending == []
    deps = {d.name: d for d in status.dependencies}
    assert deps["b"].last_event is not None and deps["b"].last_event.id == "p0"
    assert deps["b"].last_event.verdict.startswith("data filter") or "rejected" in deps["b"].last_event.verdict \
        or deps["b"].last_event.verdict != "passed"
    assert deps["a"].last_event.verdict == "passed"
    assert deps["a"].consumer is not None and deps["a"].consumer.pending == 0 and deps["a"].consumer.error is None
    assert status.counters["received"] == 3 and status.counters["rejected"] == 1
    doc = status.to_dict()
    assert doc["triggers"][0]["dependencies"][0]["event_id"] == "o1"
    listed = [x for x in await list_sensors(bus.js) if x.state == rt.bucket]
    assert len(listed) == 1 and listed[0].sensor == s.metadata.name and listed[0].owner["dag_id"] == "d1"
    await bus.js.delete_key_value(rt.bucket)


async def test_status_shows_pending_firing_attempts_and_lag(bus: EventBus):
    """An action that keeps failing: the firing waits in the journal with its attempts and error,
    and events behind it show as lag on the consumer."""
    s = Sensor.model_validate({"metadata": {"name": unique_name("stp")}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "shop", "eventName": "order"}],
        "triggers": [{"template": {"name": "call", "http": {"url": "http://127.0.0.1:9/none", "method": "POST"}},
                      "retryStrategy": {"steps": 1000, "duration": "50ms"}}]}})
    rt_holder = {}
    gate = asyncio.Event()

    async def execute(firing):
        rt = rt_holder["rt"]
        for attempt in range(1, 4):
            rt.note_attempt(firing, attempt, False, f"POST http://127.0.0.1:9/none: refused {attempt}")
        gate.set()
        await asyncio.sleep(3600)

    # One action slot: the firing behind o1 waits in the journal however fast it was journaled
    # (with free slots it would start at once, and whether the notes saw it yet was a race).
    rt = SensorRuntime(s, bus, execute, max_pending_firings=1, batch=1, max_concurrent_actions=1)
    rt_holder["rt"] = rt
    await rt.start()
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    try:
        await bus.publish(ev("order", id="o1"))
        await asyncio.wait_for(gate.wait(), 20)
        for i in range(3):
            await bus.publish(ev("order", id=f"later{i}"))
        await rt._store_notes()

        async def lag() -> int:
            st = await read_sensor_status(bus.js, rt.bucket)
            return st.dependencies[0].consumer.lag if st.dependencies[0].consumer else -1

        for _ in range(100):
            if await lag() >= 1:
                break
            await asyncio.sleep(0.1)
        status = await read_sensor_status(bus.js, rt.bucket)
    finally:
        stop.set()
        await task
        await rt.close(drain_timeout=0.1)
    pending = {p.events["a"]: p for p in status.triggers[0].pending}
    first = pending.pop("o1")
    assert first.running and first.attempts == 3 and first.last_error.endswith("refused 3")
    assert not any(p.running for p in pending.values())
    # back-pressure: what is not journaled waits on the consumer (lag), nothing is lost
    assert len(pending) + status.dependencies[0].consumer.lag == 3 and status.dependencies[0].consumer.lag >= 1
    await bus.js.delete_key_value(rt.bucket)


async def test_last_firing_records_dag_run_id_and_http_status(bus: EventBus, monkeypatch):
    """The executor's outcome (status, DAG run id) becomes the trigger's last firing."""
    from tests.support import AirflowContract

    api = AirflowContract().start()
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", f"http://admin:pw@127.0.0.1:{api.server.port}")
    s = Sensor.model_validate({"metadata": {"name": unique_name("sta")}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "shop", "eventName": "order"}],
        "triggers": [{"template": {"name": "run", "airflow": {"dagId": "etl", "connId": "airflow_api"}}}]}})
    holder = {}

    async def execute(firing):
        return await holder["runner"].run(firing)

    try:
        async with running(s, bus, execute) as rt:
            holder["runner"] = ActionRunner(rt.engine, ActionContext(), on_attempt=rt.note_attempt)
            await bus.publish(ev("order", id="o1"))
            await until(lambda: rt.stats["actions_done"] == 1)
        await holder["runner"].close()
    finally:
        api.stop()
    status = await read_sensor_status(bus.js, rt.bucket)
    last = status.triggers[0].last_firing
    assert last is not None and last.ok, last
    assert last.status == 200 and last.ref == f"argo-events__{last.id}" and last.attempts == 1
    assert status.counters["actions_ok"] == 1
    await bus.js.delete_key_value(rt.bucket)


async def test_unknown_sensor_is_a_clear_error(bus: EventBus):
    with pytest.raises(SensorNotFound, match="no sensor state"):
        await read_sensor_status(bus.js, unique_name("nosuch"))


async def test_reading_a_state_of_an_older_layout_without_spec(bus: EventBus):
    """meta without 'spec' (older versions): the status still shows saved events, and says what is missing."""
    s = sensor(unique_name("old"))
    async with running(s, bus, lambda f: asyncio.sleep(0)) as rt:
        await bus.publish(ev("order", id="o1"))
        await until(lambda: rt.stats["events"] == 1)
    store = await bus.state(rt.bucket)
    meta, _ = await store.get("meta")
    meta.pop("spec")
    await store.put("meta", meta)
    await store.erase(OBS_KEY)
    status = await read_sensor_status(bus.js, rt.bucket)
    assert any("-f SENSOR.yaml" in w for w in status.warnings)
    assert [(d.name, d.satisfied) for d in status.triggers[0].dependencies] == [("a", True)]
    with_manifest = await read_sensor_status(bus.js, rt.bucket, sensor=s)
    assert with_manifest.triggers[0].waiting_for == "waits for b" and not with_manifest.warnings
    await bus.js.delete_key_value(rt.bucket)


def test_decision_lines_are_rate_limited_and_count_what_they_leave_out(caplog):
    from airflow_argo_events.core.observe.decisions import DecisionLog

    now = [0.0]
    log = logging.getLogger("airflow_argo_events.sensor.test")
    d = DecisionLog("s", log, burst=2, rate=1.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger=log.name):
        d.refresh()
        wanted = [d.wants("k") for _ in range(5)]
        assert wanted == [True, True, False, False, False]
        now[0] = 1.0
        d.refresh()  # the clock is read once per batch
        assert d.wants("k")
        d.write("k", "event e1 (es/a)", ["  dependency a: passed"])
    assert caplog.records[-1].getMessage() == (
        "sensor s: event e1 (es/a): dependency a: passed (3 more event(s) of this dependency not logged, rate limit)")
