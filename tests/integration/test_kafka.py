"""The kafka event source and trigger against a real Kafka-protocol broker (tansu, started once per session)."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest

from airflow_argo_events.core.bus import EventBus
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime
from airflow_argo_events.core.sources.kafka import GO_ZERO_TIME, event_id, kafka_timestamp
from airflow_argo_events.testing.plugin import unique_name

from ..brokers import create_topic
from .test_sources import Running, manifest

pytestmark = pytest.mark.timeout(90)


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None, list]]) -> list:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        return [await producer.send_and_wait(topic, value, key=key, headers=headers)
                for key, value, headers in records]
    finally:
        await producer.stop()


async def committed(bootstrap: str, group: str, topic: str, partition: int = 0) -> int | None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    # a group member that never joins: it only reads the group's committed offset (OffsetFetch)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        offset = await consumer.committed(TopicPartition(topic, partition))
    finally:
        await consumer.stop()
    return None if offset is None or offset < 0 else offset


async def until(check, timeout: float = 20.0):
    """Poll an async check until it is truthy (a deadline, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


def kafka_es(name: str, bootstrap: str, topic: str, **cfg):
    block = {"url": bootstrap, "topic": topic, **cfg}
    return manifest(name, {"kafka": {"ev": block}})


async def test_consumer_group_payload_is_argos_and_offsets_follow_the_bus(bus, kafka_broker):
    topic, group = unique_name("topic"), unique_name("group")
    await create_topic(kafka_broker.bootstrap, topic)
    es = kafka_es("kfk", kafka_broker.bootstrap, topic, jsonBody=True, metadata={"team": "data"},
                  consumerGroup={"groupName": group, "oldest": True})
    sent = await produce(kafka_broker.bootstrap, topic, [
        (b"k1", b'{"n": 1}', [("trace", b"t1")]),
        (None, b'{"n": 2}', []),
    ])
    async with Running(es, bus) as r:
        events = await r.events(2)
        assert await until(lambda: _at(kafka_broker.bootstrap, group, topic, 2)) == 2
    first, second = events
    assert (first.source, first.subject, first.type) == ("kfk", "ev", "kafka")
    assert first.id == f"kfk:ev:{kafka_broker.bootstrap}:{topic}:0:0" == event_id(
        "kfk", "ev", kafka_broker.bootstrap + ",other:9092", topic, 0, 0)
    assert first.data == {"topic": topic, "key": "k1", "partition": 0, "body": {"n": 1},
                          "timestamp": kafka_timestamp(sent[0].timestamp), "headers": {"trace": "t1"},
                          "metadata": {"team": "data"}}
    assert second.data["key"] == "" and second.data["headers"] == {} and second.data["body"] == {"n": 2}


async def _at(bootstrap, group, topic, want):
    got = await committed(bootstrap, group, topic)
    return got if got == want else None


async def test_raw_body_is_base64_and_a_tombstone_is_null(bus, kafka_broker):
    topic = unique_name("topic")
    await create_topic(kafka_broker.bootstrap, topic)
    es = kafka_es("kraw", kafka_broker.bootstrap, topic, consumerGroup={"groupName": unique_name("g"), "oldest": True})
    await produce(kafka_broker.bootstrap, topic, [(b"k", b"\x00\xffbin", []), (b"k", None, [])])
    async with Running(es, bus) as r:
        a, b = await r.events(2)
    assert base64.b64decode(a.data["body"]) == b"\x00\xffbin"
    assert b.data["body"] is None


async def test_restart_resumes_from_the_committed_offset(bus, kafka_broker):
    """Records produced while the source is down arrive after it restarts; nothing is read twice."""
    topic, group = unique_name("topic"), unique_name("group")
    await create_topic(kafka_broker.bootstrap, topic)
    es = kafka_es("kres", kafka_broker.bootstrap, topic, jsonBody=True,
                  consumerGroup={"groupName": group, "oldest": True, "rebalanceStrategy": "roundrobin"})
    await produce(kafka_broker.bootstrap, topic, [(None, json.dumps({"n": i}).encode(), []) for i in range(3)])
    async with Running(es, bus) as r:
        assert [e.data["body"]["n"] for e in await r.events(3)] == [0, 1, 2]
    assert await committed(kafka_broker.bootstrap, group, topic) == 3  # committed on stop at the latest
    await produce(kafka_broker.bootstrap, topic, [(None, json.dumps({"n": i}).encode(), []) for i in range(3, 5)])
    async with Running(es, bus) as r:
        got = await r.events(2, timeout=40)
        # records of one partition arrive in order: a re-read of 0..2 would have come first
        assert (r.rt.count, r.rt.duplicates) == (2, 0)
    assert [e.data["body"]["n"] for e in got] == [3, 4]


class GatedBus:
    """The real bus, with publishes held until the test opens the gate."""

    def __init__(self, bus: EventBus) -> None:
        self.bus, self.gate, self.nc = bus, asyncio.Event(), bus.nc

    async def publish(self, event):
        await self.gate.wait()
        return await self.bus.publish(event)

    async def state(self, name):
        return await self.bus.state(name)


async def test_offsets_are_committed_only_after_the_bus_acked(bus, kafka_broker):
    topic, group = unique_name("topic"), unique_name("group")
    await create_topic(kafka_broker.bootstrap, topic)
    es = kafka_es("kgate", kafka_broker.bootstrap, topic, consumerGroup={"groupName": group, "oldest": True})
    gated = GatedBus(bus)
    rt = EventSourceRuntime(es, gated)
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    try:
        await produce(kafka_broker.bootstrap, topic, [(None, b"x", []) for _ in range(4)])
        # the source has read the records (they wait on the gate); a commit now commits nothing
        src = rt.sources[0]
        assert await until(lambda: _read(rt, 4))
        consumer, inflight = src._live
        await src._commit(consumer, inflight)
        assert await committed(kafka_broker.bootstrap, group, topic) is None
        gated.gate.set()
        assert await until(lambda: _at(kafka_broker.bootstrap, group, topic, 4)) == 4
        assert rt.count == 4
    finally:
        gated.gate.set()
        stop.set()
        await asyncio.wait_for(task, 30)


async def _read(rt, n):
    src = rt.sources[0]
    return src._live is not None and src._live[1].count >= n


async def test_partition_mode_starts_at_the_newest_then_resumes_from_its_stored_offset(bus, kafka_broker):
    topic = unique_name("topic")
    await create_topic(kafka_broker.bootstrap, topic, partitions=2)
    await produce(kafka_broker.bootstrap, topic, [(b"old", b"old", [])])  # before the first start: not read (Argo)
    es = kafka_es("kpart", kafka_broker.bootstrap, topic, partition="1")
    from aiokafka import AIOKafkaProducer

    async def send(value: bytes) -> None:
        p = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        await p.start()
        try:
            await p.send_and_wait(topic, value, partition=1)
            await p.send_and_wait(topic, b"other-partition", partition=0)
        finally:
            await p.stop()

    await send(b"before")
    async with Running(es, bus) as r:
        await until(lambda: _positioned(r.rt, topic))  # it seeks to the end before we produce
        await send(b"one")
        (a,) = await r.events(1)
    await send(b"while-down")
    async with Running(es, bus) as r:
        got = await r.events(1)
        assert (r.rt.count, r.rt.duplicates) == (1, 0)
    assert base64.b64decode(a.data["body"]) == b"one" and a.data["partition"] == 1
    assert [base64.b64decode(e.data["body"]) for e in got] == [b"while-down"]


async def _positioned(rt, topic):
    from aiokafka import TopicPartition

    src = rt.sources[0]
    if src._live is None or not src._live[0].assignment():
        return False
    return await src._live[0].position(TopicPartition(topic, 1)) >= 0


async def test_missing_partition_is_one_clear_error(bus, kafka_broker):
    from airflow_argo_events.core.exceptions import SpecError

    topic = unique_name("topic")
    await create_topic(kafka_broker.bootstrap, topic)
    rt = EventSourceRuntime(kafka_es("kbad", kafka_broker.bootstrap, topic, partition="7"), bus)
    with pytest.raises(SpecError, match=r"kbad: spec.kafka.ev.partition: partition 7 is not available"):
        await asyncio.wait_for(rt.run(), 30)


def test_timestamp_is_gos_time_string():
    assert kafka_timestamp(1_700_000_000_123) == "2023-11-14 22:13:20.123 +0000 UTC"
    assert kafka_timestamp(1_700_000_000_000) == "2023-11-14 22:13:20 +0000 UTC"
    assert kafka_timestamp(None) == kafka_timestamp(-1) == GO_ZERO_TIME


# ---------------------------------------------------------------- the kafka trigger

async def consume_all(bootstrap: str, topic: str, n: int, timeout: float = 20.0) -> list:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    out: list = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += records
    finally:
        await consumer.stop()
    return out


async def test_kafka_trigger_sends_payload_with_firing_id_headers_and_key(kafka_broker, monkeypatch):
    from airflow_argo_events.core.actions.executor import ActionRunner

    from .test_actions import fire, one_dep_sensor

    monkeypatch.setenv("ARGO_EVENTS_SECRET_KAFKA_TOKEN", "s3cret")
    topic = unique_name("out")
    await create_topic(kafka_broker.bootstrap, topic)
    sensor = one_dep_sensor({"kafka": {
        "url": kafka_broker.bootstrap, "topic": topic, "compress": True, "requiredAcks": 1,
        "headers": {"X-Static": "1"},
        "secureHeaders": [{"name": "X-Token", "valueFrom": {"secretKeyRef": {"name": "kafka", "key": "token"}}}],
        "payload": [{"src": {"dependencyName": "d", "dataKey": "body.msg"}, "dest": "message"}]}})
    eng, f = fire(sensor)
    runner = ActionRunner(eng)
    try:
        outcome = await runner.run(f)
        assert outcome.ok, outcome.detail
        keyed = one_dep_sensor({"kafka": {"url": kafka_broker.bootstrap, "topic": topic, "partitioningKey": "order-7",
                                          "payload": [{"src": {"dependencyName": "d", "dataKey": "body.n"},
                                                       "dest": "n"}]}})
        eng2, f2 = fire(keyed)
        runner2 = ActionRunner(eng2)
        assert (await runner2.run(f2)).ok
        await runner2.close()
    finally:
        await runner.close()
    first, second = await consume_all(kafka_broker.bootstrap, topic, 2)
    assert json.loads(first.value) == {"message": "hi"} and first.key == f.id.encode()
    assert dict(first.headers) == {"X-Static": b"1", "X-Token": b"s3cret", "Idempotency-Key": f.id.encode()}
    assert second.key == b"order-7" and dict(second.headers)["Idempotency-Key"] == f2.id.encode()


async def test_kafka_trigger_failures_are_retried_or_not_as_they_deserve(kafka_broker):
    from airflow_argo_events.core.actions.kafka import KafkaAction

    from .test_actions import fire, one_dep_sensor

    payload = [{"src": {"dependencyName": "d", "dataKey": "body.msg"}, "dest": "m"}]
    _, missing_secret = fire(one_dep_sensor({"kafka": {"url": kafka_broker.bootstrap, "topic": "t", "payload": payload,
                                                       "sasl": {"userSecret": {"name": "nope", "key": "u"},
                                                                "passwordSecret": {"name": "nope", "key": "p"}}}}))
    _, no_broker = fire(one_dep_sensor({"kafka": {"url": "127.0.0.1:1", "topic": "t", "payload": payload}}))
    action = KafkaAction("t", __import__("airflow_argo_events.core.actions.base", fromlist=["x"]).ActionContext())
    try:
        r = await action.execute(missing_secret)
        assert not r.ok and not r.retryable and "sasl.userSecret" in r.detail and "nope/u" in r.detail
        r = await action.execute(no_broker)
        assert not r.ok and r.retryable and r.detail.startswith("kafka t:")
    finally:
        await action.close()


async def test_trigger_to_source_round_trip_carries_the_firing_id(bus, kafka_broker):
    """A sensor's kafka trigger feeds a kafka EventSource: the firing id arrives as a header, for de-duplication."""
    from airflow_argo_events.core.actions.executor import ActionRunner

    from .test_actions import fire, one_dep_sensor

    topic = unique_name("loop")
    await create_topic(kafka_broker.bootstrap, topic)
    es = kafka_es("kloop", kafka_broker.bootstrap, topic, jsonBody=True,
                  consumerGroup={"groupName": unique_name("g"), "oldest": True})
    eng, f = fire(one_dep_sensor({"kafka": {"url": kafka_broker.bootstrap, "topic": topic, "payload": [
        {"src": {"dependencyName": "d", "dataKey": "body.n"}, "dest": "n"}]}}))
    runner = ActionRunner(eng)
    try:
        assert (await runner.run(f)).ok
    finally:
        await runner.close()
    async with Running(es, bus) as r:
        (ev,) = await r.events(1, timeout=40)
    assert ev.data["body"] == {"n": "3"} and ev.data["headers"]["Idempotency-Key"] == f.id and ev.data["key"] == f.id


# ---------------------------------------------------------------- the ways to run it

async def test_runs_under_the_event_source_trigger(kafka_broker):
    from airflow_argo_events.triggers import EventSourceTrigger

    topic = unique_name("topic")
    await create_topic(kafka_broker.bootstrap, topic)
    doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource", "metadata": {"name": "ktrig"},
           "spec": {"kafka": {"ev": {"url": kafka_broker.bootstrap, "topic": topic, "jsonBody": True,
                                     "consumerGroup": {"groupName": unique_name("g"), "oldest": True}}}}}
    trigger = EventSourceTrigger(eventsource=doc, event_name="ev", nats_conn_id=None)
    await produce(kafka_broker.bootstrap, topic, [(b"k", b'{"x": 1}', [])])
    gen = trigger.run()
    try:
        event = await asyncio.wait_for(anext(gen), 40)
    finally:
        await gen.aclose()
    assert event.payload["data"]["body"] == {"x": 1} and event.payload["type"] == "kafka"


def cli_run_one(nats_url: str, tmp_path, name: str, spec: dict, stimulus) -> dict:
    """``argo-events eventsource run`` on a manifest, ``stimulus()`` once, the one event ``tail`` saw; then SIGTERM."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    stream = unique_name("cli")
    path = tmp_path / "es.yaml"
    path.write_text(yaml.safe_dump({"kind": "EventSource", "metadata": {"name": name}, "spec": spec}))
    cli = str(Path(sys.executable).parent / "argo-events")
    tail = subprocess.Popen([cli, "tail", "--nats", nats_url, "--stream", stream, "--count", "1", "--timeout", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "tailing" in tail.stderr.readline()
    proc = subprocess.Popen([cli, "eventsource", "run", "-f", str(path), "--nats", nats_url, "--stream", stream],
                            stderr=subprocess.PIPE, text=True)
    try:
        stimulus()
        out, _ = tail.communicate(timeout=60)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "published (#1)" in err
        return json.loads(out)
    finally:
        proc.kill()
        tail.kill()


def test_cli_eventsource_run_publishes_kafka_records(nats_url, kafka_broker, tmp_path):
    topic = unique_name("topic")
    asyncio.run(create_topic(kafka_broker.bootstrap, topic))
    spec = {"kafka": {"ev": {"url": kafka_broker.bootstrap, "topic": topic, "jsonBody": True,
                             "consumerGroup": {"groupName": unique_name("g"), "oldest": True}}}}
    event = cli_run_one(nats_url, tmp_path, "clik", spec, lambda: asyncio.run(
        produce(kafka_broker.bootstrap, topic, [(b"k", b'{"k": "v"}', [])])))
    assert event["data"]["body"] == {"k": "v"}


def test_cli_bad_kafka_config_is_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "es.yaml"
    path.write_text("kind: EventSource\nmetadata: {name: bad}\nspec:\n  kafka:\n    ev: {url: 'k:9092', topic: t}\n")
    cli = str(Path(sys.executable).parent / "argo-events")
    res = subprocess.run([cli, "eventsource", "run", "-f", str(path), "--nats", "nats://127.0.0.1:1"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "spec.kafka.ev: consumerGroup or partition must be specified" in lines[0], lines


async def test_unreachable_broker_is_retried_and_the_source_stops_cleanly(caplog):
    """No broker at start: the source backs off (one warning a try), and stopping leaves no open client."""
    import logging

    caplog.set_level(logging.WARNING, "airflow_argo_events.sources")
    rt = EventSourceRuntime(kafka_es("kdown", "127.0.0.1:1", "t", consumerGroup={"groupName": "g"}), None)
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    deadline = time.monotonic() + 20
    while not any("reconnecting in" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, 30)
    assert any("kdown/ev (kafka): KafkaConnectionError" in r.getMessage() for r in caplog.records)
    assert rt.sources[0]._live is None


async def test_a_record_too_large_for_the_bus_is_passed_over_and_the_next_arrives(bus, kafka_broker):
    """One error boundary per record: the bus refuses it (max payload), it is logged and committed past."""
    from aiokafka import AIOKafkaProducer

    topic, group = unique_name("topic"), unique_name("group")
    await create_topic(kafka_broker.bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, max_request_size=8 * 1024 * 1024)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"x" * (bus.nc.max_payload + 1))
        await producer.send_and_wait(topic, b'{"after": true}')
    finally:
        await producer.stop()
    es = kafka_es("kbig", kafka_broker.bootstrap, topic, jsonBody=True,
                  consumerGroup={"groupName": group, "oldest": True})
    async with Running(es, bus) as r:
        (ev,) = await r.events(1, timeout=40)
        assert await until(lambda: _at(kafka_broker.bootstrap, group, topic, 2)) == 2
        assert r.rt.failed == 1
    assert ev.data["body"] == {"after": True}
