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


async def test_a_correlated_manifest_yields_one_event_per_key(bus, stream, nats_conn):
    """The correlation extension through the Airflow layer (SensorTrigger shares SensorRuntime):
    orders and payments arriving crossed give one TriggerEvent per matching pair, with its key."""
    manifest = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": "orders"}, "spec": {
        "dependencies": [{"name": "order", "eventSourceName": "shop", "eventName": "order"},
                         {"name": "payment", "eventSourceName": "shop", "eventName": "payment"}],
        "triggers": [{"template": {"name": "ship", "conditions": "order && payment", "log": {},
                                   "correlation": {"keys": {"order": "body.id", "payment": "body.orderId"},
                                                   "window": "15m"}}}]}}
    trigger = SensorTrigger(sensor=manifest, trigger="ship")
    queue: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(_consume(trigger, queue))
    try:
        await _started(bus, stream.name, task)
        for i in range(3):
            await bus.publish(new_event(source="shop", subject="order", type="webhook", data={"body": {"id": i}},
                                        id=f"o{i}"))
        for i in (2, 0, 1):
            await bus.publish(new_event(source="shop", subject="payment", type="webhook",
                                        data={"body": {"orderId": i}}, id=f"p{i}"))
        got = [(await asyncio.wait_for(queue.get(), 10)).payload for _ in range(3)]
        assert [(g["key"], g["events"]["order"]["id"], g["events"]["payment"]["id"]) for g in got] == [
            ("2", "o2", "p2"), ("0", "o0", "p0"), ("1", "o1", "p1")]
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=10)


async def test_sensor_status_of_a_trigger_that_creates_dag_runs(bus, stream, nats_conn, monkeypatch):
    """What `sensor status`/`sensor list` and the UI read of a SensorTrigger: who runs it, and the
    last firing with its DAG run id (the trigger's outcome reaches the runtime's notes)."""
    from airflow_argo_events.core.observe.status import list_sensors, read_sensor_status
    from tests.support import AirflowContract

    api = AirflowContract().start()
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", f"http://admin:pw@127.0.0.1:{api.server.port}")
    trigger = SensorTrigger(name="runs", dependencies=[{"name": "d", "eventSourceName": "s", "eventName": "e"}],
                            dag_id="target", airflow_conn_id="airflow_api")
    queue: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(_consume(trigger, queue))
    try:
        await _started(bus, stream.name, task)
        await bus.publish(new_event(source="s", subject="e", type="webhook", data={}))
        got = await asyncio.wait_for(queue.get(), 20)
        fid = got.payload["firing_id"]
        bucket = trigger.state_for(stream.name)
        for _ in range(100):  # the notes are stored at most once a second
            status = await read_sensor_status(bus.js, bucket)
            if status.triggers[0].last_firing is not None:
                break
            await asyncio.sleep(0.1)
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=10)
        api.stop()
    last = status.triggers[0].last_firing
    assert last is not None and last.ok and last.id == fid and last.ref == f"argo-events__{fid}"
    assert ("target", f"argo-events__{fid}") in api.runs
    assert status.owner["kind"] == "SensorTrigger" and status.owner["creates_runs_of"] == "target"
    assert any(s.state == bucket and s.owner["kind"] == "SensorTrigger" for s in await list_sensors(bus.js))


async def test_a_shadow_trigger_records_what_it_would_fire_and_acts_on_nothing(bus, stream, nats_conn,
                                                                               monkeypatch, caplog):
    """SensorTrigger(shadow=True) beside the real one: the real one gets the event and creates
    its DAG run; the shadow logs what it would have done, yields nothing, creates nothing."""
    from airflow_argo_events.core.observe.status import read_sensor_status
    from tests.support import AirflowContract

    api = AirflowContract().start()
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", f"http://admin:pw@127.0.0.1:{api.server.port}")
    deps = [{"name": "d", "eventSourceName": "s", "eventName": "e"}]
    real = SensorTrigger(name="runs", dependencies=deps, dag_id="target", airflow_conn_id="airflow_api")
    shadow = SensorTrigger(name="runs", dependencies=deps, dag_id="target", airflow_conn_id="airflow_api",
                           shadow=True)
    assert shadow.serialize()[1]["shadow"] is True and "shadow" not in real.serialize()[1]
    assert shadow.state_for(stream.name).startswith("shadow-")
    assert shadow.state_for(stream.name) != real.state_for(stream.name)
    real_q: asyncio.Queue = asyncio.Queue()
    shadow_q: asyncio.Queue = asyncio.Queue()
    tasks = [asyncio.create_task(_consume(real, real_q)), asyncio.create_task(_consume(shadow, shadow_q))]
    caplog.set_level("INFO", logger="airflow_argo_events")
    try:
        for _ in range(100):
            if (await bus.js.stream_info(stream.name)).state.consumer_count >= 2:
                break
            assert not any(t.done() for t in tasks)
            await asyncio.sleep(0.1)
        await bus.publish(new_event(source="s", subject="e", type="webhook", data={}))
        got = await asyncio.wait_for(real_q.get(), 20)
        fid = got.payload["firing_id"]
        bucket = shadow.state_for(stream.name)
        for _ in range(100):  # the shadow's notes are stored at most once a second
            status = await read_sensor_status(bus.js, bucket)
            if status.triggers[0].last_firing is not None:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        assert shadow_q.empty(), "a shadow trigger yields no TriggerEvent"
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.wait(set(tasks), timeout=10)
        api.stop()
    assert list(api.runs) == [("target", f"argo-events__{fid}")]  # the real trigger's run only
    last = status.triggers[0].last_firing
    assert last is not None and last.id == fid and last.detail.startswith("shadow: not executed")
    assert any(f"firing {fid}: shadow: would create a run of DAG target" in r.getMessage() for r in caplog.records)


async def test_dag_run_retries_show_in_sensor_status(bus, stream, nats_conn, monkeypatch):
    """While the API answers 503, `sensor status` shows the firing pending with its attempts and
    last error (as for `sensor run`'s actions); once the run is created, the last firing counts them."""
    from airflow_argo_events.core.observe.status import read_sensor_status
    from tests.support import AirflowContract

    class Unavailable(AirflowContract):
        down = True

        def _respond(self, r):
            if self.down and r.path.endswith("/dagRuns"):
                return 503, {"detail": "metadata database is away"}
            return super()._respond(r)

    api = Unavailable().start()
    monkeypatch.setenv("AIRFLOW_CONN_AIRFLOW_API", f"http://admin:pw@127.0.0.1:{api.server.port}")
    trigger = SensorTrigger(name="retries", dependencies=[{"name": "d", "eventSourceName": "s", "eventName": "e"}],
                            dag_id="target", airflow_conn_id="airflow_api")
    trigger.backoff_start, trigger.backoff_cap = 0.05, 0.2  # attempts close together: the test waits less
    queue: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(_consume(trigger, queue))
    bucket = trigger.state_for(stream.name)

    async def status_until(check):
        for _ in range(300):  # the notes are stored at most once a second
            status = await read_sensor_status(bus.js, bucket)
            if check(status):
                return status
            assert not task.done(), task.exception()
            await asyncio.sleep(0.1)
        raise AssertionError(f"status never showed it: {status.to_dict()}")

    try:
        await _started(bus, stream.name, task)
        await bus.publish(new_event(source="s", subject="e", type="webhook", data={}))
        pending = await status_until(lambda s: any(p.attempts >= 2 for p in s.triggers[0].pending))
        (firing,) = pending.triggers[0].pending
        assert firing.running and "503" in firing.last_error, firing
        api.down = False
        got = await asyncio.wait_for(queue.get(), 30)
        done = await status_until(lambda s: s.triggers[0].last_firing is not None)
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=10)
        api.stop()
    last = done.triggers[0].last_firing
    assert last.ok and last.id == got.payload["firing_id"] == firing.id
    assert last.attempts >= 3 and last.attempts > firing.attempts
    assert done.counters["action_retries"] == last.attempts - 1
    assert not done.triggers[0].pending
