"""A pull request the server forgot is asked again (issue 19, the leader-kill pause).

In a cluster, a waiting pull request lives on the consumer's leader. When that node dies the
request dies with it, and nothing tells the client: before, the sensor waited for the request's
expiry (10 s idle, 30 s here) before it asked again, and firings paused that long. Now a live
sensor's long requests ask for idle heartbeats (two missed: gone, ask again), and the
triggerer's shared wait, which cannot afford a heartbeat per trigger, asks again when its
doorbell rings for a message the silent request does not bring.
"""

from __future__ import annotations

import asyncio
import time

import nats
import pytest

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.bus.consumer import HEARTBEAT, Subscription
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.exceptions import EventBusError
from airflow_argo_events.core.runtime.shared_wait import SensorBus, SharedWaitSubscription
from airflow_argo_events.testing.plugin import unique_name

pytestmark = pytest.mark.timeout(180)


async def consumer_leader(nats_cluster, stream: str, durable: str, timeout: float = 30.0) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            info = await nats_cluster.js_api(f"CONSUMER.INFO.{stream}.{durable}")
            leader = (info.get("cluster") or {}).get("leader")
            if leader and nats_cluster.nodes[str(leader)].running:
                return str(leader)
        except Exception:  # an election under way
            pass
        assert asyncio.get_running_loop().time() < deadline, f"consumer {durable}: no leader"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("noticed_by", ["heartbeat", "doorbell"])
async def test_a_pull_lost_with_the_consumer_leader_is_asked_again(nats_cluster, noticed_by):
    stream = StreamSettings(name=unique_name("hb"), replicas=3)
    durable = unique_name("d")
    async with EventBus(NatsSettings.from_url(nats_cluster.url), stream):
        pass  # the R3 stream, made while all three nodes are up
    async with EventBus(NatsSettings.from_url(nats_cluster.url), stream, ensure=False) as admin:
        sub = Subscription(admin.js, stream.name, stream.subject("es", "e"), durable, ack_wait=30)
        await sub.start()
        await sub.unsubscribe()
    # the reader's one connection is to a node that stays up: the fault is the leader's death alone
    leader = await consumer_leader(nats_cluster, stream.name, durable)
    reader_node = next(n for n in nats_cluster.nodes if n != leader)
    reader_url = nats_cluster.nodes[reader_node].url
    reader = await nats.connect(reader_url, max_reconnect_attempts=-1)
    shared = SensorBus(NatsSettings.from_url(reader_url), stream, shared_wait=True)
    await shared.__aenter__()
    try:
        sub: Subscription
        if noticed_by == "heartbeat":  # the live sensor's (EventBus.subscribe asks for them)
            sub = Subscription(reader.jetstream(), stream.name, stream.subject("es", "e"), durable, ack_wait=30,
                               nc=reader, heartbeat=HEARTBEAT)
            await sub.start()
        else:  # the triggerer's: no heartbeats, a doorbell per event source
            sub = await shared.subscribe(durable, "es", "e", ack_wait=30)
            assert isinstance(sub, SharedWaitSubscription) and sub._heartbeat is None
        assert await consumer_leader(nats_cluster, stream.name, durable) == leader
        loop = asyncio.get_running_loop()
        until = loop.time() + 30

        async def read() -> list:
            """As the sensor's fetch loop: an error (no consumer leader yet: 503) is asked again."""
            while loop.time() < until:
                try:
                    got = await sub.fetch(1, timeout=until - loop.time())
                except EventBusError:
                    await asyncio.sleep(0.1)
                    continue
                if got:
                    return got
            return []

        waiting = asyncio.create_task(read())
        await asyncio.sleep(2)  # the request waits on the leader, heartbeats coming
        nats_cluster.kill(leader)
        try:
            assert await consumer_leader(nats_cluster, stream.name, durable) != leader
            await nats_cluster.stream_leader(stream.name)
            async with EventBus(NatsSettings.from_url(nats_cluster.nodes[reader_node].url), stream,
                                ensure=False) as pub:
                await pub.publish(new_event(source="es", subject="e", type="webhook", data={}, id="after-kill"))
            got = await waiting
            # Before: the request died with the leader and the one fetch returned nothing at its
            # 30 s deadline, though the event was on the stream the whole time.
            assert [d.event.id for d in got if d.event] == ["after-kill"]
            await got[0].ack()
        finally:
            await asyncio.to_thread(nats_cluster.respawn, leader)
            await nats_cluster.wait_stream_current(stream.name)
    finally:
        await shared.__aexit__(None, None, None)
        await reader.close()
        async with EventBus(NatsSettings.from_url(nats_cluster.url), stream, ensure=False) as bus:
            await bus.js.delete_stream(stream.name)


@pytest.mark.parametrize("noticed_by", ["heartbeat", "doorbell"])
async def test_a_pull_the_server_never_got_is_asked_again(nats_settings, stream, monkeypatch, noticed_by):
    """The server forgets a pull request (as a dead consumer leader does): here the first one
    is never sent, which the client cannot tell apart. Before, the fetch waited out its whole
    timeout and returned nothing while the event sat on the stream; now the request is given
    up after two missed heartbeats, or two seconds after the doorbell rang for the event, and
    asked again."""
    real_request = Subscription._request
    dropped: list[int] = []

    async def forgetful(self, n: int, timeout: float) -> None:
        if not dropped:
            dropped.append(n)
            # what the client records of a request it sent, as the real one does
            self._hb_asked = time.monotonic() if self._heartbeat and timeout >= 4 * self._heartbeat else 0.0
            return  # the server never hears of it
        await real_request(self, n, timeout)

    monkeypatch.setattr(Subscription, "_request", forgetful)
    durable = unique_name("d")
    async with SensorBus(nats_settings, stream, shared_wait=True) as bus:
        if noticed_by == "heartbeat":  # the live sensor's subscription (EventBus.subscribe)
            sub = await EventBus.subscribe(bus, durable, "es", "e")
            assert sub._heartbeat == HEARTBEAT
        else:  # the triggerer's
            sub = await bus.subscribe(durable, "es", "e")
            assert isinstance(sub, SharedWaitSubscription) and sub._heartbeat is None
        fetching = asyncio.create_task(sub.fetch(1, timeout=25))
        await asyncio.sleep(1)
        await bus.publish(new_event(source="es", subject="e", type="webhook", data={}, id="waiting"))
        got = await fetching
        assert dropped, "the first request was not the one dropped"
        assert [d.event.id for d in got if d.event] == ["waiting"]
        assert sub.lost_requests == 1
        await got[0].ack()


async def test_an_idle_pull_hears_heartbeats_and_is_not_asked_again(nats_settings, stream):
    """One server, nothing published: the request's heartbeats keep it alive for its whole
    timeout (no request is given up as lost, none is sent twice)."""
    async with EventBus(nats_settings, stream) as bus:
        sub = await bus.subscribe(unique_name("d"), "es", "idle")
        assert await sub.fetch(1, timeout=6) == []
        assert sub.heartbeats >= 2
        assert sub.lost_requests == 0
        assert await sub.fetch(1, timeout=2) == []  # too short to ask for heartbeats
