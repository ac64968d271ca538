"""The live path's bus pieces against a real NATS JetStream server (no mocks): writes and acks
sent in batches and confirmed one by one (``pipeline.py``), and the pull loop of
``Subscription.fetch`` (a trickle, prefetch, messages given back on unsubscribe)."""

from __future__ import annotations

import asyncio

import nats.errors
import pytest

from airflow_argo_events.core.bus import EventBus, StateConflict
from airflow_argo_events.core.bus.consumer import ack_many
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.exceptions import EventBusError
from airflow_argo_events.testing.plugin import unique_name

pytestmark = pytest.mark.timeout(60)


def _ev(i: int):
    return new_event(source="s", subject="e", type="webhook", data={"i": i})


async def test_put_many_checks_each_revision_and_reports_each_result(bus: EventBus):
    store = await bus.state(unique_name("pipe"))
    try:
        revs = await store.put_many([("a", b"1", 0), ("b", b"2", 0), ("c", b"3", None)])
        assert all(isinstance(r, int) for r in revs), revs
        # a stale revision, a create over an existing key, a good update: only the last one lands
        out = await store.put_many([("a", b"x", revs[0] + 1000), ("b", b"y", 0), ("c", b"z", revs[2])])
        assert isinstance(out[0], StateConflict) and isinstance(out[1], StateConflict)
        assert isinstance(out[2], int) and out[2] > revs[2]
        assert (await store.get_raw("a"))[0] == b"1" and (await store.get_raw("b"))[0] == b"2"
        assert (await store.get_raw("c"))[0] == b"z"
    finally:
        await bus.js.delete_key_value(store.bucket)


async def test_create_over_a_delete_marker_succeeds_as_nats_create_does(bus: EventBus):
    """Revision 0 means "must not exist": a key whose last message is a delete marker (a
    journal tombstone) does not exist."""
    store = await bus.state(unique_name("pipe"))
    try:
        await store.put_raw("j.f1", b"{}", 0)
        assert await store.delete_many(["j.f1"]) == [None]
        assert await store.seen("j.f1") and (await store.get_raw("j.f1"))[0] is None
        (rev,) = await store.put_many([("j.f1", b"again", 0)])
        assert isinstance(rev, int)
        assert (await store.get_raw("j.f1"))[0] == b"again"
    finally:
        await bus.js.delete_key_value(store.bucket)


async def test_deletes_confirmed_by_the_last_leave_every_marker(bus: EventBus):
    store = await bus.state(unique_name("pipe"))
    try:
        keys = [f"j.f{i}" for i in range(50)]
        assert all(isinstance(r, int) for r in await store.put_many([(k, b"{}", 0) for k in keys]))
        assert await store.delete_many(keys, confirm_each=False) == [None] * 50
        for k in keys:  # stored before the last one's PubAck came back
            assert await store.seen(k) and (await store.get_raw(k))[0] is None
    finally:
        await bus.js.delete_key_value(store.bucket)


async def test_erase_many_removes_values_and_markers_and_reports_errors_per_key(bus: EventBus):
    store = await bus.state(unique_name("pipe"))
    try:
        keys = [f"j.f{i}" for i in range(40)]
        assert all(isinstance(r, int) for r in await store.put_many([(k, b"{}", 0) for k in keys]))
        assert await store.delete_many(keys[:20], confirm_each=False) == [None] * 20  # markers
        assert await store.erase_many(keys[10:30]) == [None] * 20
        assert [k for k in keys if await store.seen(k)] == keys[:10] + keys[30:]
        assert await store.erase_many(["j.absent"]) == [None]  # nothing to remove is not an error
    finally:
        await bus.js.delete_key_value(store.bucket)
    (err,) = await store.erase_many(["j.f0"])  # the bucket is gone: an error for the key, not raised
    assert isinstance(err, EventBusError) and "j.f0" in str(err), err


async def test_a_request_nobody_answers_is_an_error_not_an_exception(bus: EventBus):
    (res,) = await bus.pipeline().send([(f"nobody.{unique_name('x')}", b"", None)], timeout=1.0)
    assert isinstance(res, EventBusError)
    (res,) = await bus.pipeline().publish([(f"$KV.{unique_name('nobucket')}.k", b"v", None)], timeout=1.0)
    assert isinstance(res, EventBusError)


async def test_ack_many_is_confirmed_for_every_message(bus: EventBus):
    durable = unique_name("d")
    sub = await bus.subscribe(durable, "s", "e", batch=64)
    for i in range(40):
        await bus.publish(_ev(i))
    got = []
    while len(got) < 40:
        got += await sub.fetch(64, timeout=2)
    assert await ack_many(got, bus.pipeline()) == [None] * 40
    # confirmed: the server already counts them (no wait, no retry)
    info = await sub.info()
    assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == got[-1].stream_seq


async def test_a_trickle_is_handed_out_at_once_not_held_for_a_full_batch(bus: EventBus):
    sub = await bus.subscribe(unique_name("d"), "s", "e", batch=64, prefetch=True)
    for i in range(3):
        fetch = asyncio.create_task(sub.fetch(64, timeout=30))
        await asyncio.sleep(0.05)  # the fetch waits on its pull request
        await bus.publish(_ev(i))
        got = await asyncio.wait_for(fetch, 10)  # far below the fetch's own 30 s
        assert [d.event.data["i"] for d in got] == [i]
        await ack_many(got, bus.pipeline())


async def test_prefetch_keeps_the_next_batch_coming_within_max_ack_pending(bus: EventBus):
    sub = await bus.subscribe(unique_name("d"), "s", "e", batch=10, max_ack_pending=20, prefetch=True)
    for i in range(50):
        await bus.publish(_ev(i))
    first = await sub.fetch(10, timeout=5)
    assert len(first) <= 10
    # one batch handed out, the next one delivered ahead (before any ack), never past max_ack_pending
    for _ in range(100):
        if (await sub.info()).num_ack_pending >= 20:
            break
        await asyncio.sleep(0.1)
    assert (await sub.info()).num_ack_pending == 20
    seen = [d.event.data["i"] for d in first]
    await ack_many(first, bus.pipeline())
    while len(seen) < 50:
        batch = await sub.fetch(10, timeout=5)
        assert batch, f"stalled after {len(seen)}"
        seen += [d.event.data["i"] for d in batch]
        await ack_many(batch, bus.pipeline())
    assert seen == list(range(50))


async def test_unsubscribe_gives_back_what_was_delivered_but_not_handed_out(bus: EventBus):
    """Prefetched messages go back to the server at once (not after ack_wait), so the next
    reader of the durable (a restarted sensor) gets them right away, in order."""
    durable = unique_name("d")
    sub = await bus.subscribe(durable, "s", "e", batch=5, ack_wait=60, prefetch=True)
    for i in range(10):
        await bus.publish(_ev(i))
    first = await sub.fetch(5, timeout=5)
    await asyncio.sleep(0.3)  # the second batch arrives in the buffer
    await ack_many(first, bus.pipeline())
    await sub.unsubscribe()
    again = await bus.subscribe(durable, "s", "e", batch=5, ack_wait=60)
    rest = []
    while len(rest) < 10 - len(first):
        batch = await again.fetch(5, timeout=3)
        assert batch, "the prefetched messages were not given back (they would wait for ack_wait, 60 s)"
        rest += batch
    assert [d.event.data["i"] for d in first + rest] == list(range(10))


async def test_fetch_on_a_deleted_consumer_raises_a_bus_error(bus: EventBus):
    durable = unique_name("d")
    sub = await bus.subscribe(durable, "s", "e")
    waiting = asyncio.create_task(sub.fetch(10, timeout=10))
    await asyncio.sleep(0.2)
    await bus.js.delete_consumer(bus.stream.name, durable)
    with pytest.raises(EventBusError):
        await asyncio.wait_for(waiting, 8)


def _failing_requests(sub, fail_on: set[int]) -> list[int]:
    """Make the subscription's pull requests number ``fail_on`` (1-based) fail before they
    leave the client, as a publish on a connection that is dropping does."""
    calls: list[int] = []
    send = sub._request

    async def request(n, timeout):
        calls.append(n)
        if len(calls) in fail_on:
            raise nats.errors.ConnectionReconnectingError()
        await send(n, timeout)

    sub._request = request
    return calls


async def test_a_pull_request_that_could_not_be_sent_is_asked_again_at_once(bus: EventBus):
    # Counted as asked, it kept every later fetch from asking until its expiry (here 30 s).
    sub = await bus.subscribe(unique_name("d"), "s", "e", batch=8, heartbeat=None)
    calls = _failing_requests(sub, {1})
    with pytest.raises(EventBusError):
        await sub.fetch(8, timeout=30)
    await bus.publish(_ev(1))
    got = await asyncio.wait_for(sub.fetch(8, timeout=30), 10)  # a hang detector, far below 30 s
    assert [d.event.data["i"] for d in got] == [1] and len(calls) == 2


async def test_a_failed_prefetch_request_keeps_the_batch_in_hand(bus: EventBus):
    # The batch was taken off the buffer before the prefetch request failed: raising lost it
    # until ack_wait brought it back.
    sub = await bus.subscribe(unique_name("d"), "s", "e", batch=4, prefetch=True, heartbeat=None)
    for i in range(8):
        await bus.publish(_ev(i))
    # The first pull asks for two batches (8) and gets them all; the fetch that empties the
    # buffer then asks for the next two: that prefetch request fails.
    calls = _failing_requests(sub, {2})
    seen: list[int] = []
    while len(seen) < 8:
        got = await asyncio.wait_for(sub.fetch(4, timeout=30), 10)
        seen += [d.event.data["i"] for d in got]
        await ack_many(got, bus.pipeline())
    assert seen == list(range(8)) and len(calls) == 2
    await bus.publish(_ev(8))
    more = await asyncio.wait_for(sub.fetch(4, timeout=30), 10)  # the next fetch asks again
    assert [d.event.data["i"] for d in more] == [8] and len(calls) == 3
