"""A batch's firings journaled in their own trigger entry, against faults on a real server.

When every firing of a batch belongs to one entry of a trigger without correlation keys, the
firings go into that entry's write (``firings``), which records what the batch applied
anyway: one write, no chunk (state.py). A finished firing leaves at the entry's next write:
the next batch that touches it, or the processing loop a moment later (HOME_CLEAR_AFTER),
or ``close``. Each test breaks one of those pieces. Scaled as test_journal_chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

import pytest

from airflow_argo_events.core.runtime import sensor_runtime as srm
from airflow_argo_events.core.runtime import state as st
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.testing.plugin import unique_name
from tests.faults.test_chunk_probe import Done, cev, kill, lose_replies_once, orders, two_on_a
from tests.faults.test_journal_chunks import Runs, ev, journal, no_journal, one_dep, rt_for, until
from tests.support import running_sensor

pytestmark = pytest.mark.timeout(120)


async def stored_firings(rt: SensorRuntime, key: str = "s.t._") -> list[str] | None:
    """The firing ids the entry ``key`` holds on the server (None: no entry)."""
    doc, _ = await rt.store.get(key)
    return None if doc is None else [f["id"] for f in doc.get("firings") or []]


class Writes:
    """Every key ``put_many`` wrote for one runtime, and how many batches with messages it processed."""

    def __init__(self, rt: SensorRuntime) -> None:
        self.keys: Counter[str] = Counter()
        self.batches = 0
        real_put, real_apply = rt.store.put_many, rt._apply

        async def put_many(items, *args, **kw):
            self.keys.update(k for k, *_ in items)
            return await real_put(items, *args, **kw)

        async def apply(batch, *args, **kw):
            self.batches += bool(batch)
            return await real_apply(batch, *args, **kw)

        rt.store.put_many = put_many
        rt._apply = apply

    def under(self, prefix: str) -> int:
        return sum(n for k, n in self.keys.items() if k.startswith(prefix))


@contextlib.asynccontextmanager
async def dying(rt: SensorRuntime):
    """Run ``rt`` for the block, then kill it: no close, no last write."""
    await rt.start()
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    try:
        yield task
    finally:
        await kill(rt, task)


async def test_a_batch_of_one_trigger_lives_in_its_entry_and_runs_again_after_a_crash(bus, scaled):
    """Three firings of one trigger, their actions hanging: the entry holds them (no ``j.*``
    key at all) and status counts them; killed, the restart runs each once more with the
    same id, and then the entry holds none."""
    runs = Runs()
    runs.hold = asyncio.Event()
    name = unique_name("home")
    a = rt_for(bus, one_dep(name), runs, batch=64)
    async with dying(a):
        for i in range(3):
            await bus.publish(ev("a", i))
        await until(lambda: len(runs.count) == 3, what="3 actions started")
        await until(lambda: holds(a, 3), what="3 firings in the entry")
        assert await journal(bus, a.bucket) == []
        assert await st.count_journal(a.store) == 3
    runs.hold = None
    c = rt_for(bus, one_dep(name), runs)
    async with running_sensor(c):
        await until(lambda: sum(runs.count.values()) == 6 and not c.pending(), what="3 re-runs")
        await until(lambda: holds(c, 0), what="the entry emptied")
        await asyncio.sleep(1.0)  # acked before the crash: nothing comes back
    assert set(runs.count.values()) == {2}, runs.count
    assert await journal(bus, c.bucket) == [] and await st.count_journal(c.store) == 0


async def holds(rt: SensorRuntime, n: int, key: str = "s.t._") -> bool:
    """Does the entry ``key`` hold ``n`` firings on the server?"""
    got = await stored_firings(rt, key)
    return got is not None and len(got) == n


async def test_a_busy_trigger_takes_its_finished_firings_out_with_its_next_write(bus, scaled):
    """500 events in many batches: no chunk is ever written, and the entry is written about
    once per batch (its finished firings leave in the next batch's write; chunks cost three
    writes a batch, an entry write per removal two)."""
    runs = Runs()
    name = unique_name("busy")
    a = rt_for(bus, one_dep(name), runs, batch=16)
    await a.start()
    writes = Writes(a)
    async with running_sensor(a, start=False):
        for i in range(500):
            await bus.publish(ev("a", i))
        await until(lambda: len(runs.count) == 500 and not a.pending(), what="500 firings done")
        await until(lambda: holds(a, 0), what="the entry emptied")
    entry_writes = writes.keys["s.t._"]
    print(f"{writes.batches} batches: {entry_writes} entry writes, {writes.under('j.')} journal writes")
    assert writes.under("j.") == 0
    assert writes.batches >= 10, writes.batches  # several batches, or the count says nothing
    assert entry_writes <= 1.5 * writes.batches + 3, (entry_writes, writes.batches)
    assert set(runs.count.values()) == {1}


async def test_an_idle_triggers_finished_firing_leaves_its_entry_a_moment_later(bus, scaled):
    """One event, nothing after it: the processing loop writes the entry out by itself."""
    runs = Runs()
    a = rt_for(bus, one_dep(unique_name("idle")), runs)
    async with running_sensor(a):
        await bus.publish(ev("a", 0))
        await until(lambda: len(runs.count) == 1, what="the firing ran")
        await until(lambda: holds(a, 0), timeout=5, what="the entry emptied while idle")
        assert not a.pending() and a.stats["received"] == 1


async def test_close_writes_the_finished_firings_out_of_their_entry(bus, monkeypatch, scaled):
    """A triggerer's sensor stops right after its firing (``max_firings``): ``close`` writes the
    entry, so the next start runs nothing again."""
    monkeypatch.setattr(srm, "HOME_CLEAR_AFTER", 600.0)  # only close() can take it out
    runs = Runs()
    name = unique_name("close")
    a = rt_for(bus, one_dep(name), runs)
    async with running_sensor(a):
        await bus.publish(ev("a", 0))
        await until(lambda: len(runs.count) == 1, what="the firing ran")
        await asyncio.sleep(0.3)
        assert await stored_firings(a) == list(runs.count), "the firing left before close"
    assert await stored_firings(a) == [] and await st.count_journal(a.store) == 0
    c = rt_for(bus, one_dep(name), runs)
    async with running_sensor(c):
        await asyncio.sleep(1.0)
        assert not c.pending()
    assert list(runs.count.values()) == [1]


async def test_a_slow_firing_stays_in_its_entry_while_the_finished_ones_leave(bus, scaled):
    """Three firings in one entry, one hangs: the other two leave, a crash re-runs only it."""
    slow = asyncio.Event()
    ran: Counter[int] = Counter()

    async def action(firing) -> None:
        i = firing.events["a"].data["i"]
        ran[i] += 1
        if i == 0:
            await slow.wait()

    name = unique_name("slow")
    a = rt_for(bus, one_dep(name), action)
    async with dying(a):
        for i in range(3):
            await bus.publish(ev("a", i))
        await until(lambda: len(ran) == 3 and len(a.pending()) == 1, what="two done")
        await until(lambda: holds(a, 1), what="the entry holding the slow one only")
    slow.set()
    c = rt_for(bus, one_dep(name), action)
    async with running_sensor(c):
        await until(lambda: ran[0] == 2 and not c.pending(), what="the slow one re-run")
        await asyncio.sleep(1.0)
    assert ran == Counter({0: 2, 1: 1, 2: 1}), ran


async def test_a_replica_carries_another_processes_firing_and_never_runs_it(bus, scaled):
    """A's firing hangs in entry ``s.t._``; B, a replica (started before, so its start did not
    load A's firing to run it), gets the next events and writes the same entry, keeping A's
    firing in it: not B's to run or drop. A finishes it and takes it out through B's writes
    (compare-and-set: A reloads and writes again)."""
    hold = asyncio.Event()
    by_a, by_b = Done(), Done()

    async def exec_a(firing) -> None:
        await by_a(firing)
        await hold.wait()

    name = unique_name("rep")
    a = rt_for(bus, one_dep(name), exec_a, max_pending_firings=1)  # then A stops fetching: B gets the rest
    b = rt_for(bus, one_dep(name), by_b)
    await a.start()
    await b.start()
    async with running_sensor(a, start=False):
        await bus.publish(ev("a", 0))
        await until(lambda: len(by_a.started) == 1, what="A's firing started")
        [held] = list(by_a.started)
        await asyncio.sleep(1.0)  # A's last pull expires (idle_poll 0.5 s): it asks for no more
        async with running_sensor(b, start=False):
            for i in range(1, 6):
                await bus.publish(ev("a", i))
            await until(lambda: len(by_a.started) + len(by_b.started) == 6, what="5 more firings")
            assert by_b.started, "B got none of the events: the test shows nothing"
            await until(lambda: not b.pending(), what="B's firings done")
            await until(lambda: holds(b, 1), what="B's firings out of the entry")
            assert await stored_firings(b) == [held], "B's writes dropped A's firing"
            hold.set()
            await until(lambda: holds(a, 0), what="A's firing out of the entry")
    assert held not in by_b.started
    assert a.stats["conflicts"] >= 1  # A's write taking it out met B's writes first
    assert set(Counter({**by_a.started, **by_b.started}).values()) == {1}
    assert len(by_a.started) + len(by_b.started) == 6


@pytest.mark.parametrize("case", ["two triggers", "too large"])
async def test_firings_of_two_entries_or_too_large_for_one_go_to_a_chunk(bus, monkeypatch, scaled, case):
    """The entry journal only takes what it may: firings of one entry, up to ENTRY_JOURNAL_MAX."""
    runs = Runs()
    runs.hold = asyncio.Event()
    if case == "two triggers":
        s = two_on_a(unique_name("two"))
    else:
        monkeypatch.setattr(st, "ENTRY_JOURNAL_MAX", 1000)
        s = one_dep(unique_name("big"))
    a = rt_for(bus, s, runs)
    async with dying(a):
        await bus.publish(ev("a", 0, size=1200 if case == "too large" else 0))
        await until(lambda: len(runs.count) == (2 if case == "two triggers" else 1), what="the firings started")
        [key] = await journal(bus, a.bucket)
        for slot, e in a._entries.items():
            assert not e.firings and st.chunk_name(key) in e.batches, (slot, e.firings, e.batches)
    runs.hold = None
    c = rt_for(bus, s, runs)
    async with running_sensor(c):
        await until(lambda: not c.pending() and sum(runs.count.values()) == 2 * len(runs.count), what="re-runs")
        await until(lambda: no_journal(bus, c.bucket), what="the chunk erased")
    assert set(runs.count.values()) == {2}, runs.count


async def test_a_correlated_keys_firing_goes_to_a_chunk_its_entry_waits_for(bus, monkeypatch, scaled):
    """Correlation keys never hold firings (a status page would have to read every key's
    entry to find them): key 1 fires into a chunk its entry names, and the action hangs;
    other keys fire and drain around it while the ack floors pass key 1's messages. Its
    entry stays while the chunk is open: a crash re-runs the firing, and the key drains after."""
    monkeypatch.setattr(srm, "DRAIN_IDLE", 0.1)
    hold = asyncio.Event()
    started: Counter[str] = Counter()

    async def exec_a(f) -> None:
        started[f.id] += 1
        if f.key == "1":
            await hold.wait()

    s = orders(unique_name("ckey"))
    a = rt_for(bus, s, exec_a)
    async with dying(a):
        await bus.publish(cev("order", {"id": 1}, "o1"))
        await bus.publish(cev("pay", {"orderId": "1"}, "p1"))
        await until(lambda: len(started) == 1, what="key 1 fired")
        for i in range(2, 8):
            await bus.publish(cev("order", {"id": i}, f"o{i}"))
            await bus.publish(cev("pay", {"orderId": str(i)}, f"p{i}"))
        await until(lambda: len(started) == 7, what="keys 2..7 fired")
        await asyncio.sleep(2.5)  # floors sampled, emptied keys drained
        keys = sorted(k for k in await a.store.keys() if k.startswith("s."))
        assert keys == ["s.ship.k1"], f"only key 1's entry (naming its chunk) should be left: {keys}"
        [chunk] = await journal(bus, a.bucket)
        doc, _ = await a.store.get("s.ship.k1")
        assert not doc.get("firings") and doc["batches"] == [st.chunk_name(chunk)], doc
    rerun = Done()
    c = rt_for(bus, s, rerun)
    async with running_sensor(c):
        await until(lambda: rerun.done, what="key 1's firing re-run")
        await until(lambda: _gone(c), timeout=10, what="key 1's entry drained")
    assert set(started.values()) == {1} and list(rerun.done) == [next(k for k in started if k in rerun.done)]


async def _gone(rt: SensorRuntime) -> bool:
    return not [k for k in await rt.store.keys() if k.startswith("s.")]


async def test_an_unreadable_firing_in_an_entry_is_dropped_with_one_line_and_the_others_run(bus, caplog):
    """A hand-edited (or corrupted) entry: a firing without a trigger cannot be rebuilt. It is
    logged once and dropped; the entry's readable firing runs and both leave the entry."""
    runs = Runs()
    name = unique_name("bad")
    a = rt_for(bus, one_dep(name), runs)
    store = await bus.state(a.bucket)
    good = st.JournalRecord("f-good", "t", st.NO_CORRELATION, {"a": st.new_ref(ev("a", 1), 1, "x")[0]},
                            "2026-12-04T00:00:00Z")
    entry = st.Entry("t", firings={"f-good": good.encode(), "f-bad": b'{"id":"f-bad","events":{}}'})
    await store.put("s.t._", entry.dump())
    with caplog.at_level(logging.ERROR, logger="airflow_argo_events.sensor"):
        async with running_sensor(a):
            await until(lambda: runs.count["f-good"] == 1 and not a.pending(), what="the readable firing ran")
            await until(lambda: holds(a, 0), what="the entry emptied")
    bad = [r.getMessage() for r in caplog.records if "f-bad" in r.getMessage()]
    assert len(bad) == 1 and "cannot be read" in bad[0], bad
    assert dict(runs.count) == {"f-good": 1}


async def test_an_entry_write_holding_firings_stored_with_its_reply_lost_runs_each_once(bus, scaled):
    """The write that journals a batch's firings in their entry is stored, its reply lost: the
    retry sees the messages applied and stages nothing; the reloaded entry holds the firings,
    which run once (``_stored_earlier``)."""
    runs = Runs()
    a = rt_for(bus, one_dep(unique_name("lost")), runs)
    await a.start()
    tripped = lose_replies_once(a, "s.")
    async with running_sensor(a, start=False):
        for i in range(3):
            await bus.publish(ev("a", i))
        await until(lambda: len(runs.count) == 3 and not a.pending(), what="3 firings")
        await until(lambda: holds(a, 0), what="the entry emptied")
        await asyncio.sleep(1.5)  # a redelivery would run one again now
    assert tripped and a.stats["conflicts"] + a.stats["bus_errors"] >= 1
    assert set(runs.count.values()) == {1} and len(runs.count) == 3, runs.count
