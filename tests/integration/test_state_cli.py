"""Sensor state on the real NATS: identities that never collide, and `argo-events state list/delete`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from airflow_argo_events.core.bus import EventBus, NatsSettings
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.runtime.identity import definition_hash, state_name
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.spec.loader import parse_manifest
from airflow_argo_events.triggers import SensorTrigger

pytestmark = pytest.mark.timeout(120)
CLI = str(Path(sys.executable).parent / "argo-events")


@pytest.fixture
def nats_conn(monkeypatch, nats_url, stream):
    monkeypatch.setenv("AIRFLOW_CONN_NATS_DEFAULT", f"{nats_url}?stream={stream.name}")


async def _consume(trigger, queue):
    async for event in trigger.run():
        queue.put_nowait(event)


async def _consumers(bus, stream_name, n, tasks):
    for _ in range(150):
        if (await bus.js.stream_info(stream_name)).state.consumer_count >= n:
            return
        for t in tasks:
            assert not t.done(), t.exception()
        await asyncio.sleep(0.1)
    raise AssertionError(f"the triggers never created {n} consumers")


def _dep(kind):
    return [{"name": "d", "eventSourceName": "shop", "eventName": "order",
             "filters": {"data": [{"path": "kind", "type": "string", "value": [kind]}]}}]


async def test_two_unnamed_triggers_never_take_each_others_events(bus, stream, nats_conn):
    """Regression: both had the default name 'airflow-sensor', so one bucket and, on the same event,
    one durable consumer: each took about half of the other's events (and dropped them at its
    filter) and overwrote the other's state."""
    orders = SensorTrigger(dependencies=_dep("a"))
    refunds = SensorTrigger(dependencies=_dep("b"))
    got_a: asyncio.Queue = asyncio.Queue()
    got_b: asyncio.Queue = asyncio.Queue()
    tasks = [asyncio.create_task(_consume(orders, got_a)), asyncio.create_task(_consume(refunds, got_b))]
    try:
        await _consumers(bus, stream.name, 2, tasks)
        sent_a = [new_event(source="shop", subject="order", type="webhook", data={"kind": "a"}) for _ in range(10)]
        sent_b = [new_event(source="shop", subject="order", type="webhook", data={"kind": "b"}) for _ in range(10)]
        for a, b in zip(sent_a, sent_b, strict=True):
            await bus.publish(a)
            await bus.publish(b)

        async def take(queue, n):
            out = []
            try:
                for _ in range(n):
                    out.append((await asyncio.wait_for(queue.get(), 10)).payload["events"]["d"]["id"])
            except asyncio.TimeoutError:
                pass
            return out

        seen_a, seen_b = await asyncio.gather(take(got_a, 10), take(got_b, 10))
        assert seen_a == [e.id for e in sent_a]
        assert seen_b == [e.id for e in sent_b]
        await asyncio.sleep(0.5)  # anything stray would show up now
        assert got_a.empty() and got_b.empty()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=15)


async def test_same_definition_finds_its_state_after_a_restart(bus, stream, nats_conn):
    """A trigger rebuilt from its serialized kwargs (a triggerer restart, a DAG re-parse) resumes:
    events published while it was away are delivered once."""
    dep = [{"name": "d", "eventSourceName": "shop", "eventName": "order"}]
    first = SensorTrigger(dependencies=dep)
    queue: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(_consume(first, queue))
    await _consumers(bus, stream.name, 1, [task])
    ev1 = new_event(source="shop", subject="order", type="webhook", data={})
    await bus.publish(ev1)
    assert (await asyncio.wait_for(queue.get(), 15)).payload["events"]["d"]["id"] == ev1.id
    task.cancel()
    await asyncio.wait({task}, timeout=15)
    ev2 = new_event(source="shop", subject="order", type="webhook", data={})
    await bus.publish(ev2)  # while nobody listens
    second = SensorTrigger(**first.serialize()[1])
    task = asyncio.create_task(_consume(second, queue))
    try:
        assert (await asyncio.wait_for(queue.get(), 15)).payload["events"]["d"]["id"] == ev2.id
        await asyncio.sleep(0.5)
        assert queue.empty()
        assert (await bus.js.stream_info(stream.name)).state.consumer_count == 1
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=15)


# ---------------------------------------------------------------- argo-events state


SENSOR = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": "state-cli"},
          "spec": {"dependencies": [{"name": "d", "eventSourceName": "shop", "eventName": "order"}],
                   "triggers": [{"template": {"name": "fire", "log": {}}}]}}


async def _make_state(bus: EventBus, sensor_doc: dict, prefix: str) -> tuple[str, list[str]]:
    """State as a sensor leaves it: a bucket, durable consumers, and the ``meta`` key of the contract."""
    sensor = parse_manifest(sensor_doc, None, "Sensor")
    name = state_name(sensor, bus.stream.name, prefix)
    seen: list = []

    async def execute(firing):
        seen.append(firing)

    runtime = SensorRuntime(sensor, bus, execute, bucket=name, consumer_prefix=name)
    await runtime.start()
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    await bus.publish(new_event(source="shop", subject="order", type="webhook", data={}))
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait({task}, timeout=15)
    await runtime.close(drain_timeout=5)
    consumers = [i.name for i in await bus.js.consumers_info(bus.stream.name) if i.name.startswith("group-")]
    store = await bus.state(name)
    meta, _ = await store.get("meta")
    if meta is None:  # the runtime does not write it yet on this branch: write it as the contract says
        await store.put("meta", {"version": 2, "sensor": sensor.metadata.name, "stream": bus.stream.name,
                                 "identity": name, "consumers": consumers, "triggers": ["fire"],
                                 "started": datetime.now(timezone.utc).isoformat(),
                                 "definition": definition_hash(sensor, bus.stream.name)})
    return name, consumers


def _cli(nats_url, *args, stdin=subprocess.DEVNULL):
    return subprocess.run([CLI, "state", *args, "--nats", nats_url], capture_output=True, text=True, timeout=60,
                          stdin=stdin)


async def test_state_list_and_delete(bus, stream, nats_url):
    name, consumers = await _make_state(bus, SENSOR, f"t{stream.name}")
    assert consumers
    legacy = f"sensor-{stream.name}-legacy"
    await (await bus.state(legacy)).put("state", {"engine": {}, "pending": {}, "recent": []})

    out = await asyncio.to_thread(_cli, nats_url, "list", "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows[name]["sensor"] == "state-cli"
    assert rows[name]["stream"] == stream.name
    assert rows[name]["legacy"] is False
    assert rows[name]["keys"] >= 1 and rows[name]["bytes"] > 0
    assert rows[name]["consumers"] == consumers
    assert rows[legacy]["legacy"] is True

    table = await asyncio.to_thread(_cli, nats_url, "list")
    assert table.returncode == 0
    line = next(line for line in table.stdout.splitlines() if line.startswith(name))
    assert "state-cli" in line and stream.name in line
    assert "legacy" in next(line for line in table.stdout.splitlines() if line.startswith(legacy))

    # Not a tty and no --yes: refuses, deletes nothing.
    refused = await asyncio.to_thread(_cli, nats_url, "delete", name)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    assert name in {r["name"] for r in json.loads((await asyncio.to_thread(_cli, nats_url, "list", "--json")).stdout)}

    deleted = await asyncio.to_thread(_cli, nats_url, "delete", name, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    left = {i.name for i in await bus.js.consumers_info(stream.name)}
    assert not set(consumers) & left
    assert name not in {r["name"] for r in json.loads((await asyncio.to_thread(_cli, nats_url, "list",
                                                                              "--json")).stdout)}

    missing = await asyncio.to_thread(_cli, nats_url, "delete", name, "--yes")
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0 and "no sensor state named" in missing.stderr

    gone = await asyncio.to_thread(_cli, nats_url, "delete", legacy, "--yes")
    assert gone.returncode == 0, gone.stderr


def test_sensor_run_uses_the_definition_state_name(tmp_path, nats_url, stream):
    """`sensor run` keeps its state in the bucket named from the definition (or --state-name)."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(SENSOR))
    expected = state_name(parse_manifest(SENSOR, None, "Sensor"), stream.name, "sensor")
    pinned = f"pinned-{stream.name}"

    async def buckets(delete=()):
        async with EventBus(NatsSettings.from_url(nats_url), stream) as b:
            for name in delete:
                try:
                    await b.js.delete_key_value(name)
                except Exception:
                    pass
            return {i.config.name[3:] for i in await b.js.streams_info() if i.config.name.startswith("KV_")}

    try:
        for extra, bucket in (([], expected), (["--state-name", pinned], pinned)):
            proc = subprocess.Popen([CLI, "sensor", "run", "-f", str(path), "--nats", nats_url, "--stream",
                                     stream.name, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                for _ in range(300):
                    if bucket in asyncio.run(buckets()):
                        break
                    assert proc.poll() is None, proc.communicate()[1][-2000:]
                    time.sleep(0.1)
                else:
                    raise AssertionError(f"no bucket {bucket}")
            finally:
                proc.terminate()
                proc.communicate(timeout=30)
    finally:
        asyncio.run(buckets(delete=(expected, pinned)))
    bad = subprocess.run([CLI, "sensor", "run", "-f", str(path), "--nats", nats_url, "--state-name", "a.b"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--state-name" in bad.stderr


async def test_state_list_counts_live_journal_entries_not_markers(bus: EventBus):
    from airflow_argo_events.cli.state_commands import _count_journal
    from airflow_argo_events.testing.plugin import unique_name

    store = await bus.state(unique_name("cnt"))
    try:
        assert await _count_journal(bus.js, store.bucket) == 0
        await store.put_many([(f"j.f{i}", b"{}", 0) for i in range(3)] + [("s.t._", b"{}", 0)])
        assert await store.delete_many(["j.f0"]) == [None]  # a finished firing's marker
        assert await _count_journal(bus.js, store.bucket) == 2
    finally:
        await bus.js.delete_key_value(store.bucket)
