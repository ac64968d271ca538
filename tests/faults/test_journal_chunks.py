"""The journal in chunks, claimed by every trigger's entry: faults against it.

A batch's firings are journaled in one chunk (``j.b.<instance>.<n>``); the entries written
next name it, and a firing runs after a restart only if its own entry names its chunk. A
finished firing leaves nothing behind: a redelivery of its message is recognised by the
entry's applied sequences, which a busy entry forgets as soon as the newest ack floor
sample has passed them (``state.APPLIED_CAP``), and an older copy by the floors asked when
it comes. Each test makes one of those pieces fail on a real server; a lost ack is an ack
never sent (``sensor_runtime.send_acks_unconfirmed``), so the message comes back after
``ack_wait``. Scaled: ack_wait 1 s, APPLIED_CAP 2, ACKED_GRACE 0.5 s, sweeps every 0.3 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import pytest

from airflow_argo_events.core.bus import EventBus, NatsSettings, StateStore, StreamSettings
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.runtime import sensor_runtime as srm
from airflow_argo_events.core.runtime import state as st
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name
from tests.support import running_sensor

pytestmark = [pytest.mark.timeout(90), pytest.mark.usefixtures("chunks_only")]  # the entry journal: test_entry_journal.py


def ev(subject: str, i: int, size: int = 0):
    data = {"i": i, "pad": "x" * size} if size else {"i": i}
    return new_event(source="shop", subject=subject, type="webhook", data=data)


def tag(d) -> tuple[str, int] | None:
    e = d.event
    return None if e is None else (e.subject, (e.data or {}).get("i"))


def sensor(name: str, triggers: list[dict], deps: list[str]) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": d, "eventSourceName": "shop", "eventName": d} for d in deps],
        "triggers": triggers}})


def one_dep(name: str) -> Sensor:
    return sensor(name, [{"template": {"name": "t", "conditions": "a", "log": {}}}], ["a"])


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


class Runs:
    """The executor of every runtime of one test: how often each firing id ran."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.hold: asyncio.Event | None = None  # while set and not released, actions hang

    async def __call__(self, firing) -> None:
        self.count[firing.id] += 1
        if self.hold is not None:
            await self.hold.wait()

    def twice(self) -> dict[str, int]:
        return {f: n for f, n in self.count.items() if n > 1}


class Dropper:
    """``send_acks_unconfirmed`` that sends no ack for the deliveries ``drop(delivery)`` picks."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.drop = lambda d: False
        self.dropped: list[tuple] = []
        real = srm.send_acks_unconfirmed

        async def send(deliveries, pipeline):
            keep = []
            for d in deliveries:
                if self.drop(d):
                    self.dropped.append((tag(d), d.stream_seq, d.num_delivered))
                else:
                    keep.append(d)
            return await real(keep, pipeline) if keep else None

        monkeypatch.setattr(srm, "send_acks_unconfirmed", send)


def rt_for(bus: EventBus, s: Sensor, runs, **kw) -> SensorRuntime:
    return SensorRuntime(s, bus, runs, ack_wait=1.0, idle_poll=0.5, **kw)


async def journal(bus: EventBus, bucket: str) -> list[str]:
    store = await StateStore.open(bus.js, bucket)
    return [e.key async for e in store.scan("j.>", values=False)]


async def no_journal(bus: EventBus, bucket: str) -> bool:
    return await journal(bus, bucket) == []


@contextlib.asynccontextmanager
async def crashing_before_entries(rt: SensorRuntime):
    """Run ``rt`` until the block ends, then kill it; once ``hang`` is set, its entries'
    writes never return (a crash after the journal chunk and before the entries (2))."""
    hang = asyncio.Event()
    real = rt.store.put_many

    async def put_many(items, *args, **kw):
        if hang.is_set() and any(k.startswith("s.") for k, *_ in items):
            await asyncio.Event().wait()
        return await real(items, *args, **kw)

    rt.store.put_many = put_many
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    try:
        yield hang
    finally:  # the process dies: its actions, dispatcher and journal clearer with it
        for t in (task, *rt._actions, rt._dispatcher, rt._clearer):
            if t is not None:
                t.cancel()
        with contextlib.suppress(BaseException):
            await task
        for sub in rt._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


# --------------------------------------------------------------------------- lost acks


async def test_a_lost_ack_redelivered_to_a_replica_does_not_run_the_firing_again(bus, monkeypatch, scaled):
    """A runs three firings whose acks are lost, and stops; B, a replica started before,
    gets the redeliveries: A's entry write claimed them, so B skips them. Nothing is left in
    the journal (no marker per firing)."""
    drop, runs = Dropper(monkeypatch), Runs()
    name = unique_name("rep")
    a, b = rt_for(bus, one_dep(name), runs), rt_for(bus, one_dep(name), runs)
    await a.start()
    await b.start()
    async with running_sensor(a, start=False):
        drop.drop = lambda d: True
        for i in range(3):
            await bus.publish(ev("a", i))
        await until(lambda: len(runs.count) == 3 and not a.pending() and not a._partial, what="3 firings cleared")
    drop.drop = lambda d: False
    assert await journal(bus, a.bucket) == []
    async with running_sensor(b, start=False):
        await until(lambda: b.stats["received"] >= 3, what="the 3 redeliveries reaching B")
        await asyncio.sleep(0.5)
    assert b.stats["skipped"] >= 3 and len(drop.dropped) == 3
    assert not runs.twice(), f"firings run twice: {runs.twice()}"


async def test_a_busy_sensor_restarted_after_an_outage_skips_what_it_fired_with_acks_lost(
        bus, monkeypatch, scaled):
    """Many firings, the acks of the last three lost, the process gone for a few seconds:
    its entry, far over APPLIED_CAP, forgot what the ack floor passed but not those three
    (the floor is stuck below them), so their redeliveries are recognised."""
    drop, runs = Dropper(monkeypatch), Runs()
    name = unique_name("busy")
    a = rt_for(bus, one_dep(name), runs)
    async with running_sensor(a, quiet=True):
        for i in range(30):
            await bus.publish(ev("a", i))
        await until(lambda: len(runs.count) == 30, what="30 firings")
        await asyncio.sleep(1.0)  # floors sampled: the entry forgets most of them
        drop.drop = lambda d: True
        for i in range(100, 103):
            await bus.publish(ev("a", i))
        await until(lambda: len(runs.count) == 33 and not a.pending(), what="3 more")
        for i in range(200, 206):  # over the cap again, with the floor stuck below 100
            await bus.publish(ev("a", i))
        await until(lambda: len(runs.count) == 39 and not a.pending(), what="6 more")
        await asyncio.sleep(0.5)
        applied = list(a._entries[("t", "_")].applied["a"])
    drop.drop = lambda d: False
    lost = sorted(seq for _, seq, _ in drop.dropped)[:3]
    assert all(q in applied for q in lost), f"forgot an unacked message: {lost} not all in {applied}"
    assert len(applied) < 30, f"the entry kept what the floor passed: {applied}"
    await asyncio.sleep(2.0)  # the outage
    c = rt_for(bus, one_dep(name), runs)
    async with running_sensor(c):
        await until(lambda: c.stats["received"] >= 9, what="the 9 redeliveries")
        await asyncio.sleep(0.5)
    assert not runs.twice(), f"firings ran twice after the outage: {runs.twice()}"


# --------------------------------------------------------------------------- crashes around the chunk


async def test_a_chunk_no_entry_names_is_never_run_and_its_messages_fire_once(bus, monkeypatch, scaled):
    """``a && b``: b0 completes F0; the process dies after F0's chunk and before the entry
    that would name it. The restarted sensor leaves the young chunk alone (it could be a
    replica's mid-batch) and does not run it; b0, redelivered, fires F0 once. b0's acks stay
    lost, while more a-events push the entry over APPLIED_CAP: its redeliveries are skipped.
    A later start erases the old unnamed chunk."""
    drop, runs = Dropper(monkeypatch), Runs()
    monkeypatch.setattr(srm, "RECENT_FINISHED", 0)  # no memory of finished firings: only entries tell
    s = sensor(unique_name("and"), [{"template": {"name": "both", "conditions": "a && b", "log": {}}}], ["a", "b"])
    a = rt_for(bus, s, runs)
    await a.start()
    async with crashing_before_entries(a) as hang:
        await bus.publish(ev("a", 0))
        await until(lambda: a.stats["events"] >= 1, what="a0 stored")
        drop.drop = lambda d: tag(d) == ("b", 0)
        hang.set()
        await bus.publish(ev("b", 0))
        await until(lambda: journal(bus, a.bucket), what="F0's chunk written")
        await asyncio.sleep(0.2)
    orphan = await journal(bus, a.bucket)
    assert not runs.count and len(orphan) == 1 and st.chunk_name(orphan[0])
    c = rt_for(bus, s, runs)
    async with running_sensor(c):
        assert not c.pending(), "a chunk no entry names was loaded to run"
        await until(lambda: len(runs.count) == 1 and not c.pending(), what="F0 from b0's redelivery")
        for i in range(1, 8):
            await bus.publish(ev("a", i))
        await until(lambda: c.stats["events"] >= 8, what="7 more a-events")
        await asyncio.sleep(2.0)  # b0 redelivered again and again, floors sampled
        copies = [x for x in drop.dropped if x[0] == ("b", 0)]
        drop.drop = lambda d: False
        await asyncio.sleep(1.5)
    assert orphan[0] in await journal(bus, a.bucket)  # young: left to a later start
    assert len(copies) >= 2, f"b0 was not redelivered: {copies}"
    assert dict(runs.count) == {next(iter(runs.count)): 1}, f"F0 did not run exactly once: {runs.count}"
    monkeypatch.setattr(st, "ORPHAN_AGE", 0.0)
    d = rt_for(bus, s, runs)
    await d.start()
    await d.close()
    assert orphan[0] not in await journal(bus, a.bucket), "the old unnamed chunk was not erased"


async def test_a_named_chunk_runs_again_after_a_crash_and_then_leaves_no_key(bus, monkeypatch, scaled):
    """The entry names the chunk; the process dies while the action runs. The restart runs
    the firing again with the same id (idempotent, (3)) and erases the chunk after it."""
    runs = Runs()
    runs.hold = asyncio.Event()  # the first process's action never finishes
    name = unique_name("named")
    a = rt_for(bus, one_dep(name), runs)
    await a.start()
    async with crashing_before_entries(a):
        await bus.publish(ev("a", 0))
        await until(lambda: len(runs.count) == 1, what="the action started")
    [key] = await journal(bus, a.bucket)
    runs.hold = None
    c = rt_for(bus, one_dep(name), runs)
    async with running_sensor(c):
        await until(lambda: sum(runs.count.values()) == 2 and not c.pending(), what="the re-run")
        await until(lambda: no_journal(bus, c.bucket), what="the chunk erased")
        await asyncio.sleep(1.5)  # the message, acked by the first process, never comes back
    assert list(runs.count.values()) == [2], runs.count
    assert st.chunk_name(key)


async def test_a_chunk_with_a_slow_firing_is_rewritten_without_the_finished_ones(bus, monkeypatch, scaled):
    """Two triggers fire on one event, into one chunk; one action is slow. After
    REWRITE_AFTER the chunk holds only the slow firing: a crash then re-runs only it."""
    monkeypatch.setattr(srm, "REWRITE_AFTER", 0.2)
    slow = asyncio.Event()
    ran: Counter[str] = Counter()

    async def action(firing) -> None:
        ran[firing.trigger] += 1
        if firing.trigger == "slow":
            await slow.wait()

    s = sensor(unique_name("slow"), [{"template": {"name": "fast", "conditions": "a", "log": {}}},
                                     {"template": {"name": "slow", "conditions": "a", "log": {}}}], ["a"])
    a = rt_for(bus, s, action)
    await a.start()
    async with crashing_before_entries(a):
        await bus.publish(ev("a", 0))
        await until(lambda: ran == Counter(fast=1, slow=1) and len(a.pending()) == 1, what="fast done")

        async def rewritten() -> bool:
            [key] = await journal(bus, a.bucket)
            doc, _ = await a.store.get(key)
            return [f["trigger"] for f in doc["firings"]] == ["slow"]

        await until(rewritten, what="the chunk rewritten")
    slow.set()
    c = rt_for(bus, s, action)
    async with running_sensor(c):
        await until(lambda: ran["slow"] == 2 and not c.pending(), what="the slow one re-run")
        await asyncio.sleep(1.0)
    assert ran == Counter(fast=1, slow=2), ran


async def test_large_firings_are_journaled_in_several_chunks_each_named(bus, monkeypatch, scaled):
    monkeypatch.setattr(st, "CHUNK_BYTES", 3000)
    runs = Runs()
    runs.hold = asyncio.Event()
    name = unique_name("big")
    a = rt_for(bus, one_dep(name), runs, batch=64, max_concurrent_actions=32)
    await a.start()
    async with crashing_before_entries(a):
        for i in range(20):
            await bus.publish(ev("a", i, size=600))
        await until(lambda: len(runs.count) == 20, what="20 firings started")
        chunks = await journal(bus, a.bucket)
        named = set(a._entries[("t", "_")].batches)
    assert len(chunks) >= 4, chunks
    assert {st.chunk_name(k) for k in chunks} <= named
    runs.hold = None
    c = rt_for(bus, one_dep(name), runs)
    async with running_sensor(c):
        await until(lambda: sum(runs.count.values()) == 40 and not c.pending(), what="20 re-runs")
        await until(lambda: no_journal(bus, c.bucket), what="the chunks erased")
        await asyncio.sleep(0.5)
    assert set(runs.count.values()) == {2}, runs.count


# --------------------------------------------------------------------------- entries forgetting early


async def test_a_stuck_consumer_keeps_every_later_applied_sequence_and_the_sensor_keeps_firing(
        bus, monkeypatch, scaled):
    """Consumer ``a`` holds a0 unacked (its floor, the lowest, is stuck below a0); ``c``
    fires 30 times. The entry of ``tc`` is over APPLIED_CAP but may forget nothing after
    a0; once a0 settles, it shrinks back."""
    drop, runs = Dropper(monkeypatch), Runs()
    s = sensor(unique_name("stuck"), [{"template": {"name": "ta", "conditions": "a", "log": {}}},
                                      {"template": {"name": "tc", "conditions": "c", "log": {}}}], ["a", "c"])
    rt = rt_for(bus, s, runs)
    async with running_sensor(rt):
        drop.drop = lambda d: tag(d) == ("a", 0)
        a0 = await bus.publish(ev("a", 0))
        await until(lambda: len(runs.count) == 1, what="a0's firing")
        for i in range(30):
            await bus.publish(ev("c", i))
        await until(lambda: len(runs.count) == 31, what="30 c-firings")
        await asyncio.sleep(1.5)
        await bus.publish(ev("c", 99))  # a write after the samples: bound() runs
        await until(lambda: len(runs.count) == 32, what="one more")
        kept = list(rt._entries[("tc", "_")].applied["c"])
        drop.drop = lambda d: False
        await until(lambda: rt.stats["skipped"] >= 1, what="a0's redelivery skipped")
        for i in range(100, 110):  # each write asks for floors (over the cap); a later one forgets
            await bus.publish(ev("c", i))
            await until(lambda i=i: len(runs.count) == 33 + i - 100, what="still firing")
            await asyncio.sleep(0.3)
            after = list(rt._entries[("tc", "_")].applied.get("c", []))
            if len(after) <= 10:  # once a0's ack has landed and been sampled
                break
        floors = [(round(t, 2), f) for t, f in rt._floors][-6:]
    print(f"a0 at {a0}; tc kept {len(kept)} while a0 was unacked, {len(after)} after")
    assert len(kept) >= 31, f"forgot a c-sequence above the stuck floor: kept {kept}"
    assert len(after) <= 10, f"did not shrink back once the floor moved: {after}; floors {list(floors)}"
    assert not runs.twice()


async def test_a_copy_held_by_replica_b_is_skipped_after_replica_a_forgot_it(bus, monkeypatch, scaled):
    """Two replicas share the durable consumer. A runs F0, its ack is lost; the redelivered
    copy waits in B's buffer (as under back-pressure). The server redelivers again, A
    recognises and acks that copy, the floor passes e0, and A (over the cap) forgets e0 at
    once. Then B takes its buffered copy: not in B's memory, not in the entry any more; it
    is found acked on the server and skipped."""
    drop, runs = Dropper(monkeypatch), Runs()
    s = one_dep(unique_name("rep"))
    a, b = rt_for(bus, s, runs), rt_for(bus, s, runs)
    await a.start()
    await b.start()
    held: list = []
    release = asyncio.Event()
    sub = b._subs[0]
    real_fetch = sub.fetch

    async def fetch(*args, **kw):  # B's buffer: keeps the first redelivered e0 copy
        if release.is_set() and held:
            out = list(held)
            held.clear()
            return out
        if release.is_set():
            return await real_fetch(*args, **kw)
        if held:  # back-pressure: B's fetcher does not call fetch
            await asyncio.sleep(0.2)
            return []
        out = []
        for d in await real_fetch(*args, **kw):
            if tag(d) == ("a", 0):
                if not held and d.num_delivered >= 2:
                    held.append(d)
                continue  # a first copy B got: not processed, not acked, comes back
            out.append(d)
        return out

    sub.fetch = fetch
    a_fetch = a._subs[0].fetch

    async def fetch_a(*args, **kw):  # until B holds a copy, A passes e0's copies over (unacked)
        got = await a_fetch(*args, **kw)
        return [d for d in got if held or tag(d) != ("a", 0) or d.num_delivered < 2]

    a._subs[0].fetch = fetch_a
    drop.drop = lambda d: tag(d) == ("a", 0) and not held
    async with running_sensor(a, start=False):
        e0 = (await bus.publish(ev("a", 0)))
        await until(lambda: len(runs.count) == 1, what="F0 on A")
        async with running_sensor(b, start=False):
            await until(lambda: bool(held), timeout=20, what="B holding a redelivered e0 copy")
            seq = held[0].stream_seq

            async def forgotten() -> bool:
                await bus.publish(ev("a", 1000 + int(time.monotonic() * 10) % 1000))  # writes run bound()
                await asyncio.sleep(0.2)
                return not a._entries[("t", "_")].already_applied(["a"], seq)

            await until(forgotten, timeout=20, what="A forgetting e0")
            release.set()
            await until(lambda: not held, what="B taking its buffered copy")
            await asyncio.sleep(1.0)
    print(f"e0 {e0}; runs {sorted(runs.count.values())}; B skipped {b.stats['skipped']}")
    assert not runs.twice(), f"F0 ran twice: B's held copy was processed after A forgot e0: {runs.twice()}"


# --------------------------------------------------------------------------- the journal before chunks


async def test_the_per_firing_journal_of_the_previous_layout_runs_and_its_markers_age_out(
        bus, monkeypatch, scaled):
    """A bucket left by the per-firing journal: a pending firing (``j.<id>``) runs at start
    and its key goes; a finished one's delete marker is remembered (its redelivery is not
    run again) and erased at TOMBSTONE_AGE."""
    monkeypatch.setattr(st, "TOMBSTONE_AGE", 3.0)
    runs = Runs()
    name = unique_name("old")
    s = one_dep(name)
    probe = rt_for(bus, s, runs)
    await probe.start()
    await probe.close()
    store = probe.store
    pending = st.JournalRecord("f-pending", "t", st.NO_CORRELATION,
                               {"a": st.new_ref(ev("a", 1), 7, "x")[0]}, "2026-01-01T00:00:00Z", by="gone")
    await store.put(st.journal_key("f-pending"), pending.dump())
    await store.put(st.journal_key("f-done"), {"id": "f-done"})
    await store.delete(st.journal_key("f-done"))
    c = rt_for(bus, s, runs)
    async with running_sensor(c):
        assert "f-done" in c._finished
        await until(lambda: runs.count["f-pending"] == 1 and not c.pending(), what="the old firing run")
        await until(lambda: no_journal(bus, c.bucket), timeout=15, what="old keys and markers erased")
    assert dict(runs.count) == {"f-pending": 1}


# --------------------------------------------------------------------------- a clustered bus


@pytest.mark.timeout(120)
async def test_redeliveries_after_the_state_leader_is_killed_are_skipped(nats_cluster, monkeypatch, scaled):
    """R3 stream and state: three firings with their acks lost, the process gone, the KV
    stream's leader killed. The restarted sensor reads the entries from the new leader and
    skips the redeliveries; the chunks were erased before the kill, and none comes back."""
    cluster = nats_cluster
    drop, runs = Dropper(monkeypatch), Runs()
    settings = StreamSettings(name=unique_name("m"), replicas=3)
    async with EventBus(NatsSettings.from_url(cluster.url), settings) as bus:
        name = unique_name("r3")
        a = rt_for(bus, one_dep(name), runs)
        async with running_sensor(a):
            drop.drop = lambda d: True
            for i in range(3):
                await bus.publish(ev("a", i))
            await until(lambda: len(runs.count) == 3 and not a.pending() and not a._partial, what="3 firings")
        drop.drop = lambda d: False
        kv_stream = f"KV_{a.bucket}"
        assert (await bus.js.stream_info(kv_stream)).config.num_replicas == 3
        leader = await cluster.stream_leader(kv_stream)
        cluster.kill(leader)
        try:
            await cluster.stream_leader(kv_stream)  # a new one elected
            c = rt_for(bus, one_dep(name), runs)
            async with running_sensor(c):
                await until(lambda: c.stats["received"] >= 3, timeout=30, what="the 3 redeliveries")
                await asyncio.sleep(0.5)
                assert await no_journal(bus, c.bucket)
        finally:
            cluster.respawn(leader)
        assert not runs.twice(), f"firings run twice: {runs.twice()}"
        assert c.stats["skipped"] >= 3
        await cluster.wait_stream_current(kv_stream, timeout=30)
        await bus.js.delete_key_value(a.bucket)
        await bus.js.delete_stream(bus.stream.name)


async def test_on_a_server_with_message_ttls_finished_chunks_expire_without_purges(private_nats, monkeypatch):
    """NATS 2.11+: a finished chunk is deleted with a marker the server itself drops a second
    later, so the sensor sends no purge request per batch; the journal ends empty."""
    purged: list[str] = []
    real = StateStore.erase_many

    async def erase_many(self, keys):
        purged.extend(keys)
        return await real(self, keys)

    monkeypatch.setattr(StateStore, "erase_many", erase_many)
    settings = StreamSettings(name=unique_name("m"), replicas=1)
    async with EventBus(NatsSettings.from_url(private_nats().url), settings) as bus:
        if not bus.msg_ttl:
            pytest.skip(f"nats-server {bus.nc.connected_server_version} is older than 2.11")
        runs = Runs()
        rt = rt_for(bus, one_dep(unique_name("ttl")), runs)
        async with running_sensor(rt):
            assert rt.store.expiring_markers
            for i in range(20):
                await bus.publish(ev("a", i))
            await until(lambda: len(runs.count) == 20 and not rt.pending() and not rt._partial, what="20 firings")
            await until(lambda: no_journal(bus, rt.bucket), timeout=10, what="the chunks' markers expired")
    assert not [k for k in purged if k.startswith("j.")], purged
    assert not runs.twice()
