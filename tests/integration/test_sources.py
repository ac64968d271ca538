"""Every event source with real stimulus, and its CloudEvent found on the real bus in Argo's shape."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import time

import aiohttp
import pytest
import yaml

from airflow_argo_events.core.bus import EventBus
from airflow_argo_events.core.bus.embedded import free_port
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime
from airflow_argo_events.core.spec.loader import load_text
from airflow_argo_events.testing.plugin import unique_name

from ..support import FakeWebHDFS, wait_answering, webhook_health_urls

pytestmark = pytest.mark.timeout(60)


def manifest(name: str, spec: dict):
    (es,) = load_text(yaml.safe_dump({"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource",
                                      "metadata": {"name": name}, "spec": spec}))
    return es


class Running:
    """An EventSourceRuntime on the test's bus plus a consumer reading what it published."""

    def __init__(self, es, bus: EventBus):
        self.es, self.bus = es, bus
        self.rt = EventSourceRuntime(es, bus)
        self.stop = asyncio.Event()

    async def __aenter__(self):
        self.sub = await self.bus.subscribe(unique_name("d"), self.es.metadata.name, "*", deliver="new")
        self.task = asyncio.create_task(self.rt.run(self.stop))
        await asyncio.sleep(0.3)
        # A webhook serves once its task has bound the port, on a loaded machine well after
        # 0.3 s (CI: connection refused): wait until each of its ports answers.
        for url in webhook_health_urls(self.es):
            await wait_answering(url, task=self.task)
        return self

    async def __aexit__(self, *exc):
        self.stop.set()
        await asyncio.wait_for(self.task, 20)

    async def events(self, n: int, timeout: float = 10):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            for d in await self.sub.fetch(10, timeout=0.5):
                await d.ack()
                out.append(d.event)
        return out


def reachable(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ---------------------------------------------------------------- webhook

async def test_webhook_json_body_header_and_answer_after_bus_ack(bus):
    port = free_port()
    es = manifest("webhook", {"webhook": {"example": {"port": str(port), "endpoint": "/example", "method": "POST",
                                                      "metadata": {"team": "data"}}}})
    async with Running(es, bus) as r, aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{port}/example", json={"message": "hi"},
                             headers={"X-Trace": "t1"}) as resp:
            assert resp.status == 200
        (ev,) = await r.events(1)
    assert (ev.source, ev.subject, ev.type) == ("webhook", "example", "webhook")
    assert ev.data["body"] == {"message": "hi"}
    assert ev.data["header"]["X-Trace"] == ["t1"]
    assert ev.data["metadata"] == {"team": "data"}


async def test_webhook_refuses_bad_input_and_keeps_running(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_WH_TOKEN", "s3cret")
    port = free_port()
    es = manifest("wh", {"webhook": {"ex": {"port": str(port), "endpoint": "/ex", "method": "POST",
                                            "maxPayloadSize": 100, "authSecret": {"name": "wh", "key": "token"}}}})
    url = f"http://127.0.0.1:{port}/ex"
    auth = {"Authorization": "Bearer s3cret"}
    async with Running(es, bus) as r, aiohttp.ClientSession() as http:
        cases = [
            (http.get(url, headers=auth), 400),                                    # wrong method
            (http.post(url, data=b"{not json", headers=auth), 400),               # invalid JSON
            (http.post(url, json={"x": "y" * 500}, headers=auth), 413),            # oversized
            (http.post(url, json={"a": 1}), 401),                                  # no token
            (http.post(url, json={"a": 1}, headers={"Authorization": "Bearer no"}), 401),
            (http.post(f"http://127.0.0.1:{port}/other", json={}, headers=auth), 404),
        ]
        for req, status in cases:
            async with req as resp:
                assert resp.status == status
        async with http.get(f"http://127.0.0.1:{port}/health") as resp:
            assert resp.status == 200
        async with http.post(url, json={"ok": True}, headers=auth) as resp:
            assert resp.status == 200
        events = await r.events(1)
    assert [e.data["body"] for e in events] == [{"ok": True}]


def _sign(secret: str, body: bytes, algo=hashlib.sha256) -> str:
    return hmac.new(secret.encode(), body, algo).hexdigest()


@pytest.mark.parametrize(
    "kind, good, bad",
    [
        ("github", lambda b: {"X-Hub-Signature-256": "sha256=" + _sign("k", b)},
         lambda b: {"X-Hub-Signature-256": "sha256=" + _sign("other", b)}),
        ("gitlab", lambda b: {"X-Gitlab-Token": "k"}, lambda b: {"X-Gitlab-Token": "nope"}),
        ("bitbucket", lambda b: {"X-Hub-Signature": "sha256=" + _sign("k", b)}, lambda b: {"X-Hub-Signature": "x"}),
        ("stripe", lambda b: {"Stripe-Signature": f"t={int(time.time())},v1=" + hmac.new(
            b"k", f"{int(time.time())}.".encode() + b, hashlib.sha256).hexdigest()},
         lambda b: {"Stripe-Signature": f"t={int(time.time()) - 3600},v1=" + hmac.new(
             b"k", f"{int(time.time()) - 3600}.".encode() + b, hashlib.sha256).hexdigest()}),
        ("hmac", lambda b: {"X-Signature": _sign("k", b)}, lambda b: {"X-Signature": _sign("k", b + b"x")}),
    ],
)
async def test_webhook_signatures(bus, monkeypatch, kind, good, bad):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_SIG_KEY", "k")
    port = free_port()
    es = manifest("signed", {"webhook": {"ex": {"port": str(port), "endpoint": "/ex", "method": "POST",
                                                "signature": {"kind": kind, "secret": {"name": "sig", "key": "key"}}}}})
    body = json.dumps({"n": 1}).encode()
    async with Running(es, bus) as r, aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{port}/ex", data=body, headers=bad(body)) as resp:
            assert resp.status in (400, 401)
        async with http.post(f"http://127.0.0.1:{port}/ex", data=body,
                             headers={**good(body), "Content-Type": "application/json"}) as resp:
            assert resp.status == 200, await resp.text()
        assert len(await r.events(1)) == 1


# ---------------------------------------------------------------- calendar

async def test_calendar_interval_events(bus):
    es = manifest("cal", {"calendar": {"tick": {"interval": "1s", "metadata": {"k": "v"}}}})
    async with Running(es, bus) as r:
        events = await r.events(2, timeout=6)
    assert len(events) == 2
    assert events[0].type == "calendar" and events[0].subject == "tick"
    assert " +0000 UTC" in events[0].data["eventTime"]
    assert events[0].data["metadata"] == {"k": "v"}
    assert events[0].id != events[1].id


async def test_calendar_schedule_exclusions_and_catchup():
    from datetime import datetime, timezone

    from airflow_argo_events.core.sources.base import SourceContext
    from airflow_argo_events.core.sources.calendar import CalendarSource

    es = manifest("cal", {"calendar": {"hourly": {
        "schedule": "0 * * * *", "timezone": "Europe/Paris", "exclusionDates": ["2024-01-02T00:00:00Z"],
        "persistence": {"catchup": {"enabled": True, "maxDuration": "3h"}}}}})
    store = {"calendar.hourly": "2024-01-01T18:30:00+00:00"}
    now = datetime(2024, 1, 1, 22, 10, tzinfo=timezone.utc)

    async def get(k):
        return store.get(k)

    async def put(k, v):
        store[k] = v

    async def no_sleep(_s):
        pass

    src = CalendarSource(es.event("hourly"), SourceContext(state_get=get, state_put=put), now=lambda: now,
                         sleep=no_sleep)
    ticks = []
    async for ev in src.events():
        ticks.append(ev.time.astimezone(timezone.utc).hour)
        ev.published.set_result(True)
        if len(ticks) == 3:
            break
    # last tick 18:30, but maxDuration 3h caps catch-up at 19:10 -> ticks at 20:00, 21:00, 22:00 UTC
    # (21:00, 22:00, 23:00 Paris)
    assert ticks == [20, 21, 22]
    assert store["calendar.hourly"].startswith("2024-01-01T22:00:00")
    assert src.excluded(datetime(2024, 1, 2, 12, 0, tzinfo=timezone.utc))
    assert src.event_for(now).id == src.event_for(now).id  # a re-emitted tick keeps its id


# ---------------------------------------------------------------- file

@pytest.mark.parametrize("polling", [False, True], ids=["native", "polling"])
async def test_file_create_write_rename_remove(bus, tmp_path, polling):
    d = tmp_path / "watched"
    d.mkdir()
    (d / "old.txt").write_text("already here")
    es = manifest("files", {"file": {"ex": {"eventType": "CREATE|WRITE|RENAME|REMOVE", "polling": polling,
                                            "watchPathConfig": {"directory": str(d), "pathRegexp": r".*\.txt$"}}}})
    from airflow_argo_events.core.sources import file as file_mod

    file_mod.POLL_SECONDS = 0.2
    async with Running(es, bus) as r:
        r.rt.sources[0].poll_seconds = 0.2
        await asyncio.sleep(0.3)
        (d / "x.txt").write_text("a")
        (d / "ignored.csv").write_text("a")
        got = await r.events(1)
        with open(d / "x.txt", "a") as f:
            f.write("more")
        got += await r.events(1)
        os.rename(d / "x.txt", d / "y.txt")
        got += await r.events(1)
        os.remove(d / "y.txt")
        got += await r.events(1)
    ops = [(os.path.basename(e.data["name"]), e.data["op"]) for e in got]
    assert ops == [("x.txt", 1), ("x.txt", 2), ("y.txt", 8), ("y.txt", 4)], ops
    assert all(e.type == "file" and e.data["name"].startswith(str(d)) for e in got)


# ---------------------------------------------------------------- hdfs (a WebHDFS-protocol server, no real HDFS here)

async def test_hdfs_over_webhdfs_with_failover(bus):
    namenode = FakeWebHDFS().start()
    try:
        namenode.put("/tmp/already.txt")
        dead = f"127.0.0.1:{free_port()}"
        es = manifest("hdfs", {"hdfs": {"example": {
            "directory": "/tmp/", "type": "CREATE|RENAME|WRITE|REMOVE", "pathRegexp": ".*",
            "addresses": [dead, namenode.address], "hdfsUser": "root", "checkInterval": "200ms"}}})
        async with Running(es, bus) as r:
            first = await r.events(1)  # first scan: CREATE for what is already there
            namenode.put("/tmp/x.txt")
            namenode.put("/tmp/sub/deep.txt")
            got = await r.events(2)
            namenode.put("/tmp/x.txt", length=10, mtime=2)
            got += await r.events(1)
            namenode.move("/tmp/x.txt", "/tmp/z.txt")
            got += await r.events(1)
            namenode.delete("/tmp/z.txt")
            got += await r.events(1)
        assert [(e.data["name"], e.data["op"]) for e in first] == [("/tmp/already.txt", 1)]
        assert sorted((e.data["name"], e.data["op"]) for e in got[:2]) == [("/tmp/sub/deep.txt", 1), ("/tmp/x.txt", 1)]
        assert [(e.data["name"], e.data["op"]) for e in got[2:]] == [("/tmp/x.txt", 2), ("/tmp/z.txt", 8),
                                                                      ("/tmp/z.txt", 4)]
        assert any("LISTSTATUS" in rq.path.upper() and "user.name=root" in rq.path for rq in namenode.server.requests)
    finally:
        namenode.stop()


async def test_hdfs_path_and_type_filter():
    from airflow_argo_events.core.sources.watcher import Change, PathMatcher

    m = PathMatcher("/tmp/", "x.txt", "", "CREATE")
    assert m.matches(Change(1, "/tmp/x.txt"))
    assert not m.matches(Change(2, "/tmp/x.txt"))
    assert not m.matches(Change(1, "/tmp/y.txt"))


# ---------------------------------------------------------------- queues on real brokers

async def test_nats_source(bus, nats_settings):
    from airflow_argo_events.core.bus.connection import shared_connection

    subject = unique_name("subj")
    es = manifest("natsrc", {"nats": {"ex": {"url": nats_settings.servers[0], "subject": subject, "jsonBody": True}}})
    async with Running(es, bus) as r:
        async with shared_connection(nats_settings) as nc:
            await nc.publish(subject, b'{"n": 1}', headers={"X-A": "b"})
            await nc.flush()
        (ev,) = await r.events(1)
    assert ev.data == {"subject": subject, "body": {"n": 1}, "header": {"X-A": ["b"]}}


@pytest.mark.skipif(not reachable(5672), reason="RabbitMQ is not listening on 127.0.0.1:5672 (.ci/run starts it)")
async def test_amqp_source_on_rabbitmq(bus):
    import aio_pika

    exchange = unique_name("ex")
    es = manifest("amqp", {"amqp": {"ex": {"url": "amqp://guest:guest@127.0.0.1:5672/", "exchangeName": exchange,
                                           "exchangeType": "fanout", "routingKey": "k", "jsonBody": True}}})
    async with Running(es, bus) as r:
        await asyncio.sleep(0.5)
        conn = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
        ch = await conn.channel()
        ex = await ch.declare_exchange(exchange, "fanout", durable=True)
        await ex.publish(aio_pika.Message(b'{"order": 7}', content_type="application/json", message_id="m1"),
                         routing_key="k")
        await conn.close()
        (ev,) = await r.events(1)
    assert ev.data["body"] == {"order": 7}
    assert ev.data["exchange"] == exchange and ev.data["messageId"] == "m1"
    assert ev.data["contentType"] == "application/json"


@pytest.mark.skipif(not reachable(1883), reason="Mosquitto is not listening on 127.0.0.1:1883 (.ci/run starts it)")
async def test_mqtt_source_on_mosquitto(bus):
    import aiomqtt

    topic = unique_name("t")
    es = manifest("mqtt", {"mqtt": {"ex": {"url": "tcp://127.0.0.1:1883", "topic": topic, "jsonBody": False,
                                           "clientId": unique_name("c")}}})
    async with Running(es, bus) as r:
        await asyncio.sleep(0.5)
        async with aiomqtt.Client("127.0.0.1", 1883) as c:
            await c.publish(topic, b"raw bytes", qos=1)
        (ev,) = await r.events(1)
    assert ev.data["topic"] == topic
    assert base64.b64decode(ev.data["body"]) == b"raw bytes"  # Go's []byte is base64 in JSON


@pytest.mark.skipif(not reachable(6379), reason="Redis is not listening on 127.0.0.1:6379 (.ci/run starts it)")
async def test_redis_pubsub_and_stream_sources(bus):
    import redis.asyncio as aioredis

    channel, stream = unique_name("ch"), unique_name("st")
    es = manifest("redis", {"redis": {"ps": {"hostAddress": "127.0.0.1:6379", "channels": [channel],
                                             "jsonBody": True}},
                            "redisStream": {"rs": {"hostAddress": "127.0.0.1:6379", "streams": [stream]}}})
    async with Running(es, bus) as r:
        await asyncio.sleep(0.5)
        client = aioredis.Redis()
        await client.publish(channel, '{"x": 1}')
        await client.xadd(stream, {"field": "value"})
        events = await r.events(2)
        await client.delete(stream)
        await client.aclose()
    by_subject = {e.subject: e.data for e in events}
    assert by_subject["ps"] == {"channel": channel, "pattern": channel, "body": {"x": 1}}
    assert by_subject["rs"]["stream"] == stream and by_subject["rs"]["values"] == {"field": "value"}


async def test_redis_stream_source_stops_when_asked_mid_burst(bus):
    """A backlog of 50 entries, and stop asked the moment the last one is published (the
    source busy acking): the runtime ends. Before, the pump's cancellation was swallowed on
    the way through redis-py and the source read on for ever: a stopped ``argo-events
    eventsource run`` (or a cancelled trigger) never ended."""
    import redis.asyncio as aioredis

    stream = unique_name("st")
    client = aioredis.Redis()
    for i in range(50):
        await client.xadd(stream, {"i": str(i)})
    group = "argo-events-redisburst-rs"  # the source's default group, read from the start
    await client.xgroup_create(stream, group, id="0")
    es = manifest("redisburst", {"redisStream": {"rs": {"hostAddress": "127.0.0.1:6379", "streams": [stream],
                                                        "maxMsgCountPerRead": 100}}})
    stop = asyncio.Event()
    seen = 0

    async def on_event(_: object) -> None:
        nonlocal seen
        seen += 1
        if seen == 50:
            stop.set()

    try:
        task = asyncio.create_task(EventSourceRuntime(es, bus, on_event=on_event).run(stop))
        await asyncio.wait_for(stop.wait(), 30)
        done, _ = await asyncio.wait({task}, timeout=20)
        if not done:
            task.cancel()
        assert done, "the redisStream runtime did not stop within 20 s of being asked"
        task.result()
    finally:
        await client.delete(stream)
        await client.aclose()


async def test_event_source_filter_expression(bus):
    port = free_port()
    es = manifest("flt", {"webhook": {"ex": {"port": str(port), "endpoint": "/ex", "method": "POST",
                                             "filter": {"expression": "body.n > 5"}}}})
    async with Running(es, bus) as r, aiohttp.ClientSession() as http:
        for n in (1, 10):
            async with http.post(f"http://127.0.0.1:{port}/ex", json={"n": n}) as resp:
                assert resp.status == 200
        events = await r.events(2, timeout=2)
    assert [e.data["body"]["n"] for e in events] == [10]
    assert r.rt.filtered == 1


async def test_events_wait_for_nats_and_are_not_lost(private_nats):
    from airflow_argo_events.core.bus import NatsSettings, StreamSettings

    server = private_nats()
    port = free_port()
    es = manifest("wh", {"webhook": {"ex": {"port": str(port), "endpoint": "/ex", "method": "POST"}}})
    async with EventBus(NatsSettings.from_url(server.url), StreamSettings(replicas=1)) as bus:
        sub = await bus.subscribe("d1", "wh", "ex")
        stop = asyncio.Event()
        rt = EventSourceRuntime(es, bus)
        task = asyncio.create_task(rt.run(stop))
        await wait_answering(f"http://127.0.0.1:{port}/health", status=200, task=task)
        server.kill()  # NATS is away
        async with aiohttp.ClientSession() as http:
            pending = asyncio.ensure_future(http.post(f"http://127.0.0.1:{port}/ex", json={"n": 1}))
            await asyncio.sleep(1.0)
            assert not pending.done(), "the caller must not get 200 before the bus has the event"
            server.restart()
            resp = await asyncio.wait_for(pending, 30)
            assert resp.status == 200
            resp.release()
        got = []
        for _ in range(40):
            got += await sub.fetch(10, timeout=0.5)
            if got:
                break
        stop.set()
        await task
    assert [d.event.data["body"] for d in got] == [{"n": 1}]


def test_cli_eventsource_run_publishes_and_stops_on_sigterm(nats_url, tmp_path):
    import signal
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    port = free_port()
    stream = unique_name("cli")
    path = tmp_path / "es.yaml"
    path.write_text(yaml.safe_dump({"kind": "EventSource", "metadata": {"name": "cliwh"}, "spec": {
        "webhook": {"ex": {"port": str(port), "endpoint": "/ex", "method": "POST"}}}}))
    cli = str(Path(sys.executable).parent / "argo-events")
    tail = subprocess.Popen([cli, "tail", "--nats", nats_url, "--stream", stream, "--count", "1", "--timeout", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "tailing" in tail.stderr.readline()
    proc = subprocess.Popen([cli, "eventsource", "run", "-f", str(path), "--nats", nats_url, "--stream", stream],
                            stderr=subprocess.PIPE, text=True)
    try:
        asyncio.run(wait_answering(f"http://127.0.0.1:{port}/health"))
        req = urllib.request.Request(f"http://127.0.0.1:{port}/ex", data=b'{"k": "v"}', method="POST",
                                     headers={"Content-Type": "application/json"})
        assert urllib.request.urlopen(req, timeout=10).status == 200
        out, _ = tail.communicate(timeout=30)
        assert json.loads(out)["data"]["body"] == {"k": "v"}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "published (#1)" in err and "stopped; published 1 event(s)" in err, err
    finally:
        proc.kill()
        tail.kill()
