"""Fault suite, kafka EventSource: the bus dies while records flow; the Kafka broker restarts.

1. NATS (a private server) is SIGKILLed and restarted while records are produced: records
   stay uncommitted until JetStream has them, so the stream ends with each exactly once.
2. The broker (tansu, the session's) is stopped and started again: the source reconnects
   on its own and delivers what is produced afterwards. tansu keeps its data in memory, so
   the restarted broker is empty: the test recreates the topic and shows nothing produced
   after the restart is lost (a durable broker's own log is beyond what tansu can show).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime
from airflow_argo_events.testing.plugin import unique_name

from ..brokers import create_topic
from ..integration.test_kafka import committed, produce
from ..integration.test_sources import manifest

pytestmark = pytest.mark.timeout(150)

N = 60


async def stream_counts(url: str, stream: str, source: str) -> Counter[int]:
    seen: Counter[int] = Counter()
    async with EventBus(NatsSettings.from_url(url), StreamSettings(name=stream, replicas=1)) as bus:
        sub = await bus.subscribe(unique_name("count"), source, "ev", deliver="all")
        while True:
            batch = await sub.fetch(100, timeout=1.0)
            if not batch:
                return seen
            for d in batch:
                seen[int(d.event.data["body"]["i"])] += 1
                await d.ack()


async def test_nats_killed_and_restarted_while_records_flow(private_nats, kafka_broker):
    server = private_nats()
    topic, group = unique_name("topic"), unique_name("group")
    await create_topic(kafka_broker.bootstrap, topic)
    es = manifest("kfault", {"kafka": {"ev": {"url": kafka_broker.bootstrap, "topic": topic, "jsonBody": True,
                                               "consumerGroup": {"groupName": group, "oldest": True}}}})
    stream = unique_name("s")
    async with EventBus(NatsSettings.from_url(server.url), StreamSettings(name=stream, replicas=1)) as bus:
        rt = EventSourceRuntime(es, bus)
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run(stop))
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
        await producer.start()
        try:
            deadline = time.monotonic() + 30  # the group join first (tansu takes ~5 s), so records flow live
            while not (rt.sources[0]._live and rt.sources[0]._live[0].assignment()) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            for i in range(N):
                await producer.send_and_wait(topic, b'{"i": %d}' % i)
                await asyncio.sleep(0.1)
                if i == N // 3:
                    server.kill()
                if i == 2 * N // 3:
                    # the invariant: never a committed offset past what the bus has stored
                    assert (await committed(kafka_broker.bootstrap, group, topic) or 0) <= rt.count + rt.duplicates
                    bus_was_away = rt.health() is not None
                    await asyncio.to_thread(server.restart)
            deadline = time.monotonic() + 60
            while rt.count + rt.duplicates < N and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
        finally:
            await producer.stop()
            stop.set()
            await asyncio.wait_for(task, 30)
    seen = await stream_counts(server.url, stream, "kfault")
    lost = [i for i in range(N) if seen[i] == 0]
    duplicated = [i for i in range(N) if seen[i] > 1]
    assert (lost, duplicated) == ([], []), f"lost {lost}, duplicated {duplicated}"
    assert await committed(kafka_broker.bootstrap, group, topic) == N
    assert bus_was_away, "the kill should have made publishes wait"


async def test_broker_stopped_and_restarted_the_source_reconnects(bus, kafka_broker):
    topic, group = unique_name("topic"), unique_name("group")
    await create_topic(kafka_broker.bootstrap, topic)
    es = manifest("kbroker", {"kafka": {"ev": {"url": kafka_broker.bootstrap, "topic": topic, "jsonBody": True,
                                                "consumerGroup": {"groupName": group, "oldest": True}}}})
    sub = await bus.subscribe(unique_name("d"), "kbroker", "*", deliver="new")
    rt = EventSourceRuntime(es, bus)
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    got: list[int] = []

    async def collect(n: int) -> None:
        deadline = time.monotonic() + 60
        while len(got) < n and time.monotonic() < deadline:
            for d in await sub.fetch(10, timeout=0.5):
                await d.ack()
                got.append(d.event.data["body"]["i"])

    try:
        await produce(kafka_broker.bootstrap, topic, [(None, b'{"i": 0}', [])])
        await collect(1)
        await asyncio.to_thread(kafka_broker.stop)
        await asyncio.sleep(2.0)  # the source meets the dead broker
        await asyncio.to_thread(kafka_broker.start)
        await create_topic(kafka_broker.bootstrap, topic)
        # offsets restart at 0 on the empty broker: ids kbroker:ev:...:0 would repeat the first record's, which
        # the bus drops within its duplicate window; the first record after the restart is therefore a filler
        await produce(kafka_broker.bootstrap, topic, [(None, b'{"i": -1}', [])] + [
            (None, b'{"i": %d}' % i, []) for i in range(1, 4)])
        await collect(4)
        assert not task.done(), "the source must survive the broker restart"
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert got == [0, 1, 2, 3]
