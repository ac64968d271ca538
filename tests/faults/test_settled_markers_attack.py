"""Attacks on the "settled" reasoning behind early marker removal (commit 525c69c).

Past MAX_TOMBSTONES markers, the oldest go early once ``highest_seq()`` of the firing's
events is at or below ``_settled_floor()`` (the lowest consumer ack floor, sampled, trusted
ACKED_GRACE later). Real servers (``private_nats``, 2.11+), both marker paths: TTL
rewrite and purge (``msg_ttl`` patched off). Scaled: MAX_TOMBSTONES 2, SWEEP_EVERY 0.3 s,
ACKED_GRACE 0.5 s, ack_wait 1 s. A lost ack = no ack sent for the chosen deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from airflow_argo_events.core.bus import EventBus
from airflow_argo_events.core.bus.kv import StateStore
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.runtime import sensor_runtime as srm
from airflow_argo_events.core.runtime import state as st
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name
from tests.faults.test_marker_ttl_attack import Runs, marker, ttl_bus, until
from tests.support import running_sensor

pytestmark = pytest.mark.timeout(90)

PATHS = pytest.mark.parametrize("ttl_server", [True, False], ids=["ttl-path", "purge-path"])


def ev(subject: str, i: int):
    return new_event(source="shop", subject=subject, type="webhook", data={"i": i})


def tag(d) -> tuple[str, int] | None:
    e = d.event
    if e is None:
        return None
    return e.subject, (e.data or {}).get("i")


def sensor(name: str, doc_triggers: list[dict], deps: list[str]) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": d, "eventSourceName": "shop", "eventName": d} for d in deps],
        "triggers": doc_triggers}})


class Dropper:
    """``send_acks_unconfirmed`` that sends no ack for deliveries ``drop(delivery)`` picks."""

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


def scale(monkeypatch, ttl_server: bool) -> None:
    monkeypatch.setattr(srm, "MAX_TOMBSTONES", 2)
    monkeypatch.setattr(srm, "SWEEP_EVERY", 0.3)
    monkeypatch.setattr(srm, "IDLE_SWEEP", 0.5)
    monkeypatch.setattr(st, "ACKED_GRACE", 0.5)
    monkeypatch.setattr(st, "TOMBSTONE_AGE", 600.0)


def path(monkeypatch, ttl_server: bool) -> None:
    """Called inside ``ttl_bus`` (it skips a bus without TTLs): the purge path."""
    if not ttl_server:
        monkeypatch.setattr(EventBus, "msg_ttl", property(lambda self: False))


def rt_for(bus, s: Sensor, runs, **kw) -> SensorRuntime:
    return SensorRuntime(s, bus, runs, ack_wait=1.0, idle_poll=0.5, **kw)


async def has_marker(bus, bucket: str, fid: str) -> bool:
    return await marker(bus, bucket, fid) is not None


def fid_of(runs: Runs, before: set[str]) -> str:
    new = set(runs.count) - before
    assert len(new) == 1, new
    return new.pop()


# --------------------------------------------------------------------------- A. a && b


@PATHS
async def test_and_trigger_marker_survives_until_completing_message_settles_and_restart_recognises(
        private_nats, monkeypatch, ttl_server):
    """``a && b`` (one consumer each) plus a noise trigger on ``c`` (a third consumer whose
    floor runs ahead). b0 completes the firing F0; the process dies after F0's journal
    write and before the trigger entry's write (so only the journal/marker can recognise
    the regenerated F0). The restarted sensor re-runs F0 from the journal, leaving a
    marker; b0's acks keep being lost; 10 noise firings go past the cap. F0's marker must
    stay while b0 is unsettled, and b0's redelivery must not run F0 again."""
    scale(monkeypatch, ttl_server)
    monkeypatch.setattr(srm, "RECENT_FINISHED", 0)  # no _finished memory: journal, applied or marker tell
    drop, runs = Dropper(monkeypatch), Runs()
    s_doc = [{"template": {"name": "both", "conditions": "a && b", "log": {}}},
             {"template": {"name": "noise", "conditions": "c", "log": {}}}]
    async with ttl_bus(private_nats().url) as bus:
        path(monkeypatch, ttl_server)
        name = unique_name("and")
        s = sensor(name, s_doc, ["a", "b", "c"])
        a = rt_for(bus, s, runs)
        await a.start()
        hang = asyncio.Event()
        real_put_many = a.store.put_many

        async def put_many(items, *args, **kw):  # the crash point: entries after journal (2)
            if hang.is_set() and any(k.startswith("s.") for k, *_ in items):
                await asyncio.Event().wait()
            return await real_put_many(items, *args, **kw)

        a.store.put_many = put_many
        stop = asyncio.Event()
        task = asyncio.create_task(a.run(stop))
        try:
            await bus.publish(ev("a", 0))
            await until(lambda: a.stats["events"] >= 1, what="a0 stored")
            drop.drop = lambda d: tag(d) == ("b", 0)  # b0's acks are lost, every copy
            hang.set()
            await bus.publish(ev("b", 0))

            async def journaled() -> bool:
                return bool([k async for k in (await StateStore.open(bus.js, a.bucket)).scan("j.>", values=False)])

            await until(journaled, what="F0 journaled")
            await asyncio.sleep(0.2)
        finally:
            task.cancel()  # crash: the entry write never happened, b0 never acked
            with contextlib.suppress(BaseException):
                await task
            for sub in a._subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        assert not runs.count, "F0 ran before the crash"
        c = rt_for(bus, s, runs)
        async with running_sensor(c):
            await until(lambda: len(runs.count) == 1 and not c.pending() and not c._clearing, what="F0 re-run")
            f0 = next(iter(runs.count))
            assert await has_marker(bus, c.bucket, f0)
            for i in range(1, 11):
                await bus.publish(ev("c", i))
            await until(lambda: len(runs.count) == 11, what="10 noise firings")
            await asyncio.sleep(3.0)  # many sweeps, floors sampled and trusted
            present = await has_marker(bus, c.bucket, f0)
            b0_copies = [x for x in drop.dropped if x[0] == ("b", 0)]
            tombs = len(c._tombstones)
            drop.drop = lambda d: False  # b0 settles now
            await asyncio.sleep(2.5)
        print(f"F0 marker present while b0 unsettled: {present}; b0 copies seen: {len(b0_copies)}; "
              f"tombstones kept: {tombs}; runs: {dict(runs.count)}")
        assert present, "F0's marker went early while b0 (its completing message) was unsettled"
        assert len(b0_copies) >= 2, "b0 was not redelivered to the restarted sensor"
        assert not runs.twice(), f"firings run twice: {runs.twice()}"


# --------------------------------------------------------------------------- B. stuck floor


@PATHS
async def test_a_stuck_consumer_keeps_every_later_marker_and_the_sensor_keeps_firing(
        private_nats, monkeypatch, ttl_server):
    """Consumer ``a`` holds a0 unacked (its floor is stuck below a0); consumer ``c`` fires
    30 times, all acked. Markers of firings after a0 are unsettled (min floor): none may
    go; earlier ones may. Memory grows; the sensor keeps firing."""
    scale(monkeypatch, ttl_server)
    drop, runs = Dropper(monkeypatch), Runs()
    s_doc = [{"template": {"name": "ta", "conditions": "a", "log": {}}},
             {"template": {"name": "tc", "conditions": "c", "log": {}}}]
    async with ttl_bus(private_nats().url) as bus:
        path(monkeypatch, ttl_server)
        s = sensor(unique_name("stuck"), s_doc, ["a", "c"])
        rt = rt_for(bus, s, runs)
        async with running_sensor(rt):
            for i in range(5):  # before a0: settled, may go early
                await bus.publish(ev("c", i))
            await until(lambda: len(runs.count) == 5 and not rt._clearing, what="5 early firings")
            drop.drop = lambda d: tag(d) == ("a", 0)
            before = set(runs.count)
            a0_seq = (await bus.publish(ev("a", 0)))
            await until(lambda: len(runs.count) == 6, what="a0's firing")
            fa0 = fid_of(runs, before)
            later_before = set(runs.count)
            for i in range(5, 35):
                await bus.publish(ev("c", i))
            await until(lambda: len(runs.count) == 36 and not rt._clearing, what="30 later firings")
            later = sorted(set(runs.count) - later_before)
            await asyncio.sleep(3.0)
            missing = [f for f in [fa0, *later] if not await has_marker(bus, rt.bucket, f)]
            tombs = len(rt._tombstones)
            floor = rt._settled_floor()
            for i in range(35, 40):
                await bus.publish(ev("c", i))
            await until(lambda: len(runs.count) == 41, what="still firing")
        print(f"a0 publish ack: {a0_seq}; floor={floor}; tombstones in memory {tombs}; "
              f"missing unsettled markers {len(missing)}")
        assert not missing, f"{len(missing)} unsettled markers removed early (floor {floor})"
        assert tombs >= 31
        assert not runs.twice()


# --------------------------------------------------------------------------- C. replicas


@PATHS
async def test_a_copy_held_by_replica_b_outlives_the_marker_replica_a_removed(private_nats, monkeypatch, ttl_server):
    """Two replicas of a stateless sensor share the durable consumer. A runs F0, its ack is
    lost. The redelivered copy lands in B's prefetch buffer and waits there (as it does
    while B is under back-pressure: ``_fetch`` does not call ``fetch`` while ``_room`` is
    unset, and nothing drops a buffered message that outlived ack_wait). The server
    redelivers again after ack_wait; A recognises that copy and acks it: the ack floor
    passes e0, A (busy: over the cap) removes F0's marker ACKED_GRACE later. Then B takes
    its buffered copy: num_delivered 2, not in B's memory, no marker."""
    scale(monkeypatch, ttl_server)
    drop, runs = Dropper(monkeypatch), Runs()
    s_doc = [{"template": {"name": "t", "conditions": "a", "log": {}}}]
    async with ttl_bus(private_nats().url) as bus:
        path(monkeypatch, ttl_server)
        s = sensor(unique_name("rep"), s_doc, ["a"])
        a, b = rt_for(bus, s, runs), rt_for(bus, s, runs)
        await a.start()
        await b.start()
        held: list = []
        late: list = []  # (i, num_delivered) B took from its buffer after the release
        release = asyncio.Event()
        sub = b._subs[0]
        real_fetch = sub.fetch

        async def fetch(*args, **kw):  # B's buffer: keeps the first redelivered e0 copy
            if release.is_set() and held:
                out = list(held)
                held.clear()
                return out
            if release.is_set():
                got = await real_fetch(*args, **kw)
                late.extend((tag(d)[1], d.num_delivered) for d in got if d.event is not None)
                return got
            if held and not release.is_set():  # back-pressure: B's fetcher does not call fetch
                await asyncio.sleep(0.2)
                return []
            got = await real_fetch(*args, **kw)
            out = []
            for d in got:
                if tag(d) == ("a", 0) and not release.is_set():
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
        drop.drop = lambda d: tag(d) == ("a", 0) and not held  # A's acks lost until B holds a copy
        async with running_sensor(a, start=False):
            await bus.publish(ev("a", 0))
            await until(lambda: len(runs.count) == 1 and not a._clearing, what="F0 on A")
            f0 = next(iter(runs.count))
            async with running_sensor(b, start=False):
                await until(lambda: bool(held), timeout=20, what="B holding a redelivered e0 copy")
                t_held = time.monotonic()
                for i in range(1, 11):
                    await bus.publish(ev("a", i))
                await until(lambda: len(runs.count) == 11, what="10 more firings")

                async def gone() -> bool:
                    return not await has_marker(bus, a.bucket, f0)

                await until(gone, timeout=20, what="F0's marker removed early")
                waited = time.monotonic() - t_held
                copy = held[0]
                release.set()
                await until(lambda: not held, what="B taking its buffered copy")
                await asyncio.sleep(1.0)
        print(f"B held e0 (delivery {copy.num_delivered}) {waited:.1f}s; B's buffered copies after: {late}; "
              f"runs {sorted(runs.count.values())}")
        assert not runs.twice(), (f"F0 ran twice: B's copy of e0, held {waited:.1f}s, was processed after A's "
                                  f"sweeper removed the marker: {runs.twice()}")
