"""The bus against a real NATS JetStream server (no mocks)."""

from __future__ import annotations

import asyncio
import json

import pytest

from airflow_argo_events.core.bus import EventBus, NatsSettings, StateConflict, StreamSettings
from airflow_argo_events.core.bus.connection import pool_size, shared_connection
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.exceptions import BusUnavailableError, EventBusError
from airflow_argo_events.testing.plugin import unique_name

pytestmark = pytest.mark.timeout(60)


async def test_publish_consume_round_trip_keeps_the_cloudevent(bus: EventBus):
    sub = await bus.subscribe(unique_name("d"), "webhook-es", "example")
    ev = new_event(source="webhook-es", subject="example", type="webhook",
                   data={"header": {"X": ["1"]}, "body": {"msg": "hi", "n": 2.5}})
    res = await bus.publish(ev)
    assert not res.duplicate
    (d,) = await sub.fetch(10, timeout=5)
    assert d.event == ev
    assert d.msg.subject == f"{bus.stream.name}.webhook-es.example"
    assert d.msg.headers["Nats-Msg-Id"] == ev.id
    await d.ack()


async def test_a_message_that_is_no_delivery_on_the_inbox_is_ignored(bus: EventBus):
    # Our inbox's messages come straight from the parser (bus/raw.py). One published there by
    # anyone (no JetStream ack subject) is counted and dropped; before, it reached the
    # fetch as a delivery and nats-py's metadata reader raised out of it.
    sub = await bus.subscribe(unique_name("d"), "s", "e")
    fetching = asyncio.create_task(sub.fetch(10, timeout=5))
    await asyncio.sleep(0.2)
    await bus.nc.publish(sub._inbox, b"hello", reply="not.a.delivery")
    await bus.nc.publish(sub._inbox, b"{}", headers={"Nats-Msg-Id": "x"})
    ev = new_event(source="s", subject="e", type="webhook", data={"k": 1})
    await bus.publish(ev)
    got = await fetching
    got += [] if got else await sub.fetch(10, timeout=5)
    assert [d.event.id for d in got] == [ev.id]
    assert sub.foreign == 2
    assert got[0].msg.headers["Nats-Msg-Id"] == ev.id  # parsed when read


async def test_every_delivery_operation_works_on_routed_messages(bus: EventBus):
    # Deliveries are RawMsg (bus/raw.py), nats-py's Msg with lazily parsed headers: each of
    # Msg's operations must still reach the server (a field named like a method broke ack()).
    sub = await bus.subscribe(unique_name("d"), "s", "ops", ack_wait=1.0)
    events = [new_event(source="s", subject="ops", type="webhook", data=i) for i in range(5)]
    for ev in events:
        await bus.publish(ev)
    got: list = []
    while len(got) < 5:
        got += await sub.fetch(5, timeout=5)
    by_data = {d.event.data: d for d in got}
    await by_data[0].ack()
    await by_data[1].ack(wait=False)
    await by_data[2].term()
    await by_data[3].in_progress()
    await by_data[3].nak()
    await by_data[4].nak()
    again: list = []
    while len(again) < 2:
        again += await sub.fetch(5, timeout=5)
    assert sorted(d.event.data for d in again) == [3, 4]  # the nak'd ones come back, nothing else
    assert all(d.num_delivered == 2 for d in again)
    for d in again:
        await d.ack()
    await asyncio.sleep(1.5)  # past ack_wait: an ack that went nowhere would redeliver now
    assert await sub.fetch(5, timeout=1) == []


async def test_republished_id_is_deduplicated(bus: EventBus):
    sub = await bus.subscribe(unique_name("d"), "s", "e")
    ev = new_event(source="s", subject="e", type="webhook", data={"k": 1})
    first = await bus.publish(ev)
    second = await bus.publish(ev)
    assert second.duplicate and second.seq == first.seq
    got = await sub.fetch(10, timeout=2)
    assert [d.event.id for d in got] == [ev.id]
    assert await sub.fetch(10, timeout=0.5) == []


async def test_deliver_new_skips_history_and_all_replays_it(bus: EventBus):
    old = new_event(source="s", subject="e", type="webhook", data=1)
    await bus.publish(old)
    new_sub = await bus.subscribe(unique_name("d"), "s", "e", deliver="new")
    all_sub = await bus.subscribe(unique_name("d"), "s", "e", deliver="all")
    fresh = new_event(source="s", subject="e", type="webhook", data=2)
    await bus.publish(fresh)
    assert [d.event.id for d in await new_sub.fetch(10, timeout=2)] == [fresh.id]
    assert [d.event.id for d in await all_sub.fetch(10, timeout=2)] == [old.id, fresh.id]


async def test_durable_consumer_resumes_after_reconnect(nats_settings: NatsSettings, stream: StreamSettings):
    durable = unique_name("d")
    events = [new_event(source="s", subject="e", type="webhook", data=i) for i in range(6)]
    async with EventBus(nats_settings, stream) as bus:
        sub = await bus.subscribe(durable, "s", "e")
        for ev in events:
            await bus.publish(ev)
        got = await sub.fetch(3, timeout=2)
        for d in got:
            await d.ack()
    assert pool_size() == 0, "the shared connection is closed when its last user leaves"
    async with EventBus(nats_settings, stream) as bus:
        sub = await bus.subscribe(durable, "s", "e")
        rest = []
        while len(rest) < 3:
            batch = await sub.fetch(10, timeout=2)
            assert batch, "durable consumer lost its position"
            rest.extend(batch)
    assert [d.event.data for d in got + rest] == list(range(6))


async def test_unacked_message_is_redelivered(bus: EventBus):
    sub = await bus.subscribe(unique_name("d"), "s", "e", ack_wait=1.0)
    ev = new_event(source="s", subject="e", type="webhook", data={})
    await bus.publish(ev)
    (first,) = await sub.fetch(1, timeout=2)
    await first.nak()
    (again,) = await sub.fetch(1, timeout=3)
    assert again.event.id == ev.id and again.num_delivered == 2


async def test_malformed_message_is_a_delivery_error_not_a_crash(bus: EventBus):
    sub = await bus.subscribe(unique_name("d"), "s", "e")
    await bus.js.publish(f"{bus.stream.name}.s.e", b"{not json")
    good = new_event(source="s", subject="e", type="webhook", data={})
    await bus.publish(good)
    batch = await sub.fetch(10, timeout=2)
    assert batch[0].event is None and "not a CloudEvent" in batch[0].error
    assert batch[1].event.id == good.id


async def test_kv_compare_and_set_rejects_stale_revision(bus: EventBus):
    bucket = unique_name("kv")
    store = await bus.state(bucket)
    try:
        assert await store.get("trig/dep") == (None, 0)
        r1 = await store.put("trig/dep", {"event": "a"}, revision=0)
        with pytest.raises(StateConflict):
            await store.put("trig/dep", {"event": "b"}, revision=0)
        r2 = await store.put("trig/dep", {"event": "c"}, revision=r1)
        with pytest.raises(StateConflict):
            await store.put("trig/dep", {"event": "d"}, revision=r1)
        assert await store.get("trig/dep") == ({"event": "c"}, r2)
        await store.delete("trig/dep")
        assert await store.get("trig/dep") == (None, 0)
    finally:
        await bus.js.delete_key_value(bucket)


async def test_existing_stream_is_never_shrunk(nats_settings: NatsSettings):
    name = unique_name("s")
    big = StreamSettings(name=name, max_msgs=123_456, replicas=1)
    async with EventBus(nats_settings, big) as bus:
        try:
            async with EventBus(nats_settings, StreamSettings(name=name, max_msgs=10, replicas=1)):
                pass
            info = await bus.js.stream_info(name)
            assert info.config.max_msgs == 123_456
            assert info.config.subjects == [f"{name}.>"]
        finally:
            await bus.js.delete_stream(name)


async def test_workqueue_stream_is_refused(nats_settings: NatsSettings):
    from nats.js import api

    name = unique_name("s")
    async with EventBus(nats_settings, StreamSettings(name=name), ensure=False) as bus:
        await bus.js.add_stream(name=name, subjects=[f"{name}.>"], retention=api.RetentionPolicy.WORK_QUEUE)
        try:
            with pytest.raises(EventBusError, match="WorkQueue"):
                async with EventBus(nats_settings, StreamSettings(name=name)):
                    pass
        finally:
            await bus.js.delete_stream(name)


async def test_shared_connection_is_reused_and_closed_by_last_user(nats_settings: NatsSettings):
    async with shared_connection(nats_settings) as a, shared_connection(nats_settings) as b:
        assert a is b
        assert pool_size() == 1
        async with EventBus(nats_settings, ensure=False) as bus:
            assert bus.nc is a
    assert a.is_closed
    assert pool_size() == 0


async def test_many_users_share_one_socket(nats_settings: NatsSettings, stream: StreamSettings):
    buses = [EventBus(nats_settings, stream) for _ in range(50)]
    entered = await asyncio.gather(*(b.__aenter__() for b in buses))
    try:
        assert len({id(b.nc) for b in entered}) == 1
    finally:
        for b in buses:
            await b.close()
    assert pool_size() == 0


def _auth_server(private_nats, args):
    server = private_nats(extra_args=args)
    return server.url.replace("nats://", "")


async def test_token_auth(private_nats):
    host = _auth_server(private_nats, ["--auth", "s3cret"])
    async with EventBus(NatsSettings.from_url(f"nats://s3cret@{host}"), StreamSettings(replicas=1)) as bus:
        assert (await bus.publish(new_event(source="s", subject="e", type="t", data={}))).seq == 1
    with pytest.raises(BusUnavailableError, match="credentials refused|cannot connect"):
        async with EventBus(NatsSettings.from_url(f"nats://wrong@{host}")):
            pass


async def test_user_password_auth_and_clear_error(private_nats):
    host = _auth_server(private_nats, ["--user", "alice", "--pass", "pw"])
    async with EventBus(NatsSettings.from_url(f"nats://alice:pw@{host}"), StreamSettings(replicas=1)) as bus:
        await bus.publish(new_event(source="s", subject="e", type="t", data={}))
    with pytest.raises(BusUnavailableError) as info:
        async with EventBus(NatsSettings.from_url(f"nats://alice:bad@{host}").with_label("conn 'nats_x'")):
            pass
    assert "conn 'nats_x'" in str(info.value)
    assert "bad" not in str(info.value)


async def test_unreachable_server_names_it():
    from airflow_argo_events.core.bus.embedded import free_port

    port = free_port()
    with pytest.raises(BusUnavailableError, match=f"127.0.0.1:{port}"):
        async with EventBus(NatsSettings.from_url(f"nats://127.0.0.1:{port}", connect_timeout=0.5)):
            pass


async def test_publish_and_consume_survive_a_nats_restart(private_nats):
    server = private_nats()
    settings = NatsSettings.from_url(server.url)
    async with EventBus(settings, StreamSettings(replicas=1)) as bus:
        sub = await bus.subscribe("durable-restart", "s", "e")
        before = new_event(source="s", subject="e", type="t", data="before")
        await bus.publish(before)
        server.restart()
        after = new_event(source="s", subject="e", type="t", data="after")
        for _ in range(50):  # reconnect takes a moment
            try:
                await bus.publish(after, timeout=1)
                break
            except EventBusError:
                await asyncio.sleep(0.2)
        got = []
        for _ in range(20):
            got += [d for d in await sub.fetch(10, timeout=1)]
            if len(got) >= 2:
                break
        assert [d.event.data for d in got] == ["before", "after"]
        assert json.loads(got[0].msg.data)["id"] == before.id
