"""Adversarial probes of the entry journal (commit 8d0d034): a batch whose firings all belong
to one trigger entry journals them in that entry's write (``firings``); a finished firing
leaves with the entry's next write (next batch, a pass HOME_CLEAR_AFTER later, or close()).

Each test is one attack on a real server (faults injected by wrapping the store's methods,
as test_entry_journal / test_chunk_probe do). Four found bugs, fixed since: committed
firings never run after a "state too large" fallback (``SensorRuntime._process``), a firing
of another trigger or an unreadable one kept in an entry for good (``state.entry_records``,
``Entry.dirty``), and a ``firings`` field that is not a list stopping the sensor's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import pytest

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.bus.kv import StateTooLarge
from airflow_argo_events.core.exceptions import EventBusError
from airflow_argo_events.core.runtime import sensor_runtime as srm
from airflow_argo_events.core.runtime import state as st
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.testing.plugin import unique_name
from tests.faults.test_chunk_probe import Done, cev, orders
from tests.faults.test_entry_journal import dying, holds, stored_firings
from tests.faults.test_journal_chunks import Runs, ev, journal, one_dep, rt_for, sensor, until
from tests.support import running_sensor

pytestmark = pytest.mark.timeout(60)


def good_record(fid: str, trigger: str = "t", i: int = 1) -> st.JournalRecord:
    return st.JournalRecord(fid, trigger, st.NO_CORRELATION, {"a": st.new_ref(ev("a", i), i, "x")[0]},
                            "2026-12-04T00:00:00Z")


def intercept_writes(rt: SensorRuntime, write) -> None:
    """``rt``'s ``store.put_many`` goes through ``write(real, items, *args, **kw)`` (a fault
    injector that calls, or skips, the real one)."""
    real = rt.store.put_many

    async def put_many(items, *args, **kw):
        return await write(real, items, *args, **kw)

    rt.store.put_many = put_many


def is_removal(rt: SensorRuntime, items, key: str = "s.t._") -> bool:
    """A write of ``key`` made while finished firings wait in it (a removal write)."""
    return bool(rt._done_home) and any(k == key for k, *_ in items)


async def passes_while(rt: SensorRuntime, seconds: float) -> int:
    """How many processing passes ``rt`` makes in ``seconds`` (batches included)."""
    n = [0]
    real = rt._apply

    async def apply(*a, **kw):
        n[0] += 1
        return await real(*a, **kw)

    rt._apply = apply
    try:
        await asyncio.sleep(seconds)
    finally:
        rt._apply = real
    return n[0]


# --------------------------------------------------------------------------- the removal write fails


@pytest.mark.parametrize("stored", [True, False], ids=["stored", "not-stored"])
async def test_the_removal_write_with_its_reply_lost_empties_the_entry_and_runs_nothing_again(
        bus, scaled, stored):
    """The loop's own pass that takes a finished firing out of its entry loses its reply
    (the write stored, or not). The retry reloads the entry and writes it again (or finds it
    written): the entry ends empty, the firing ran once, ``_journal`` is empty, and a restart
    runs nothing."""
    runs = Runs()
    name = unique_name("rmlost")
    a = rt_for(bus, one_dep(name), runs)
    await a.start()
    tripped: list[int] = []

    async def put_many(real, items, *args, **kw):
        if not tripped and is_removal(a, items):
            tripped.append(len(items))
            if stored:
                await real(items, *args, **kw)
            return [EventBusError("reply lost") for _ in items]
        return await real(items, *args, **kw)

    intercept_writes(a, put_many)
    async with running_sensor(a, start=False):
        await bus.publish(ev("a", 0))
        await until(lambda: len(runs.count) == 1, what="the firing ran")
        await until(lambda: tripped, what="the removal write failed once")
        await until(lambda: holds(a, 0), what="the entry emptied")
        await until(lambda: not a.pending() and not a._done_home, what="the journal emptied")
    assert a.stats["bus_errors"] >= 1
    c = rt_for(bus, one_dep(name), runs)
    async with running_sensor(c):
        await asyncio.sleep(1.0)
        assert not c.pending()
    assert list(runs.count.values()) == [1], runs.count


async def test_a_replica_writes_the_entry_exactly_while_the_removal_is_pending(bus, monkeypatch, scaled):
    """A's firing finished; just before A's removal write, a replica writes the same entry
    (its own unfinished firing added, A's kept, as a replica does). A's compare-and-set fails,
    A reloads and writes again: A's firing leaves, the replica's stays untouched and A never
    runs it."""
    runs = Runs()
    name = unique_name("rmrace")
    a = rt_for(bus, one_dep(name), runs)
    await a.start()
    raced: list[int] = []
    foreign = good_record("f-replica", i=99)

    async def put_many(real, items, *args, **kw):
        if not raced and is_removal(a, items):
            doc, rev = await a.store.get("s.t._")
            doc.setdefault("firings", []).append(st.loads_strict(foreign.encode()))
            doc["applied"] = {**doc.get("applied", {}), "a": [*doc.get("applied", {}).get("a", []), 10**6]}
            raced.append(await a.store.put("s.t._", doc, rev))
        return await real(items, *args, **kw)

    intercept_writes(a, put_many)
    async with running_sensor(a, start=False):
        await bus.publish(ev("a", 0))
        await until(lambda: len(runs.count) == 1, what="the firing ran")
        await until(lambda: raced, what="the replica's write")
        await until(lambda: not a._done_home and not a.pending(), what="A's firing out")
        assert await stored_firings(a) == ["f-replica"]
        doc, _ = await a.store.get("s.t._")
        assert 10**6 in doc["applied"]["a"], "A's write lost the replica's applied sequence"
    assert a.stats["conflicts"] >= 1
    assert "f-replica" not in runs.count and list(runs.count.values()) == [1]


@pytest.mark.parametrize("stored", [True, False], ids=["stored", "not-stored"])
async def test_a_batch_adding_and_removing_firings_with_its_reply_lost_runs_each_once(
        bus, monkeypatch, scaled, stored):
    """F0 finished and waits in the entry (only the next batch takes it out); the next
    batch's write removes F0 and adds F1 and its reply is lost (stored or not). F0 and F1 run
    once each; the entry ends empty."""
    monkeypatch.setattr(srm, "HOME_CLEAR_AFTER", 600.0)
    runs = Runs()
    name = unique_name("addrm")
    a = rt_for(bus, one_dep(name), runs)
    await a.start()
    tripped: list[list[str]] = []

    async def put_many(real, items, *args, **kw):
        if not tripped and is_removal(a, items) and any(b'"firings"' in d for _, d, *_ in items):
            tripped.append([k for k, *_ in items])
            if stored:
                await real(items, *args, **kw)
            return [EventBusError("reply lost") for _ in items]
        return await real(items, *args, **kw)

    intercept_writes(a, put_many)
    async with running_sensor(a, start=False):
        await bus.publish(ev("a", 0))
        await until(lambda: len(runs.count) == 1 and a._done_home, what="F0 done, in its entry")
        await bus.publish(ev("a", 1))
        await until(lambda: tripped, what="the add-and-remove write failed")
        await until(lambda: len(runs.count) == 2, what="F1 ran")
        await asyncio.sleep(1.5)  # a redelivery would run one again now
        assert set(a.pending()) == set(a._done_home.get(("t", "_"), ())), "an unfinished firing is pending"
    assert await stored_firings(a) == []  # close() took the finished ones out
    assert set(runs.count.values()) == {1}, runs.count


async def test_firings_finishing_during_a_retry_loop_leave_with_the_retried_write(bus, scaled):
    """F0 hangs; the batch of event 1 cannot be stored for a while (bus errors, not stored);
    F0 finishes during those retries. The retried write carries F1 in and F0 out: both run
    once, the entry ends empty."""
    hold = asyncio.Event()
    ran: Counter[int] = Counter()

    async def action(firing) -> None:
        i = firing.events["a"].data["i"]
        ran[i] += 1
        if i == 0:
            await hold.wait()

    a = rt_for(bus, one_dep(unique_name("retry")), action)
    await a.start()
    failing = asyncio.Event()
    failures = [0]

    async def put_many(real, items, *args, **kw):
        if failing.is_set() and any(k == "s.t._" for k, *_ in items):
            failures[0] += 1
            if failures[0] == 3:
                hold.set()  # F0 finishes while the batch is being retried
            if failures[0] < 6:
                return [EventBusError("bus away") for _ in items]
        return await real(items, *args, **kw)

    intercept_writes(a, put_many)
    async with running_sensor(a, start=False):
        await bus.publish(ev("a", 0))
        await until(lambda: ran[0] == 1, what="F0 started")
        failing.set()
        await bus.publish(ev("a", 1))
        await until(lambda: ran[1] == 1, what="F1 ran")
        await until(lambda: not a.pending(), what="both done")
        await until(lambda: holds(a, 0), what="the entry emptied")
    assert failures[0] >= 6
    assert ran == Counter({0: 1, 1: 1}), ran


async def test_two_replicas_sharing_one_busy_entry_run_each_firing_once_and_leave_it_empty(bus, scaled):
    """Two replicas on one trigger (one entry, ``s.t._``), 200 events, actions of random short
    length: both keep writing the entry (adding firings, taking finished ones out, each keeping
    the other's), conflicting often. Every firing runs once, and the entry ends empty."""
    import random

    rnd = random.Random(7)
    started: Counter[str] = Counter()

    async def action(firing) -> None:
        started[firing.id] += 1
        await asyncio.sleep(rnd.random() * 0.05)

    name = unique_name("rep2")
    a = rt_for(bus, one_dep(name), action, batch=8)
    b = rt_for(bus, one_dep(name), action, batch=8)
    await a.start()
    await b.start()
    async with running_sensor(a, start=False), running_sensor(b, start=False):
        for i in range(200):
            await bus.publish(ev("a", i))
        await until(lambda: len(started) == 200 and not a.pending() and not b.pending(), timeout=30,
                    what="200 firings done")
        await until(lambda: holds(a, 0), what="the entry emptied")
        await asyncio.sleep(1.5)  # a redelivery would run one again now
    print(f"conflicts A {a.stats['conflicts']} B {b.stats['conflicts']}; A ran {a.stats['actions_done']}, "
          f"B {b.stats['actions_done']}")
    assert a.stats["actions_done"] and b.stats["actions_done"], "one replica did all: the test shows little"
    assert set(started.values()) == {1}, {f: n for f, n in started.items() if n > 1}
    assert len(started) == 200


# --------------------------------------------------------------------------- StateTooLarge


def fire_and_save(name: str):
    """``t1`` fires on each ``a`` (its firings: one entry); ``t2`` (a && b) saves ``a`` in its own entry."""
    return sensor(name, [{"template": {"name": "t1", "conditions": "a", "log": {}}},
                         {"template": {"name": "t2", "conditions": "a && b", "log": {}}}], ["a", "b"])


@pytest.mark.parametrize("journal_in", ["entry", "chunk"])
@pytest.mark.parametrize("n", [2, 1], ids=["batch-of-2", "batch-of-1"])
async def test_state_too_large_on_one_entry_after_another_holding_firings_was_stored(
        bus, monkeypatch, scaled, journal_in, n):
    """A batch of ``a`` events: t1's entry ``s.t1._`` (holding the firings, or naming their chunk)
    is stored, t2's entry ``s.t2._`` is refused as too large (once). The runtime falls back to
    one message at a time (or sets a batch of one aside). Each firing must still run once in
    this process: it is committed."""
    if journal_in == "chunk":
        monkeypatch.setattr(st, "ENTRY_JOURNAL_MAX", 0)
    runs = Runs()
    name = unique_name("toolarge")
    a = rt_for(bus, fire_and_save(name), runs)
    await a.start()
    tripped: list[str] = []

    async def put_many(real, items, *args, **kw):
        keys = [k for k, *_ in items]
        if not tripped and "s.t1._" in keys and "s.t2._" in keys:
            tripped.extend(keys)
            mine = [it for it in items if it[0] != "s.t2._"]
            res = iter(await real(mine, *args, **kw))
            return [StateTooLarge("KV put: value exceeds the server's max payload") if k == "s.t2._" else next(res)
                    for k in keys]
        return await real(items, *args, **kw)

    intercept_writes(a, put_many)
    for i in range(n):
        await bus.publish(ev("a", i))  # they wait on the consumer: one batch
    async with running_sensor(a, start=False):
        await until(lambda: tripped, what="the too-large write")
        with contextlib.suppress(AssertionError):
            await until(lambda: len(runs.count) == n and not a.pending(), timeout=4, what="the firings ran")
        left = await stored_firings(a, "s.t1._")
        chunks = await journal(bus, a.bucket)
    print(f"ran {dict(runs.count)}; s.t1._ holds {left}; chunks {chunks}; poison {a.stats['poison']}")
    assert sorted(runs.count.values()) == [1] * n, f"ran {dict(runs.count)}; s.t1._ holds {left}; chunks {chunks}"
    assert left == []


# --------------------------------------------------------------------------- correlated keys


async def test_a_correlated_keys_entry_goes_once_its_firing_left_and_nothing_runs_again(bus, monkeypatch, scaled):
    """Keys fire (into chunks: correlation keys hold no firings); once their firings finished and
    the floors passed, the keys' entries are removed, and a restart runs none."""
    monkeypatch.setattr(srm, "DRAIN_IDLE", 0.1)
    done = Done()
    s = orders(unique_name("ckgone"))
    a = rt_for(bus, s, done)
    async with running_sensor(a):
        for i in range(1, 6):
            await bus.publish(cev("order", {"id": i}, f"o{i}"))
            await bus.publish(cev("pay", {"orderId": str(i)}, f"p{i}"))
        await until(lambda: len(done.done) == 5, what="5 keys fired")

        async def no_entries() -> bool:
            return not [k for k in await a.store.keys() if k.startswith("s.")]

        await until(no_entries, timeout=10, what="the keys' entries removed")
        assert not a._done_home and not a.pending()
    rerun = Done()
    c = rt_for(bus, s, rerun)
    async with running_sensor(c):
        await asyncio.sleep(1.0)
    assert not rerun.started and set(done.started.values()) == {1}


async def test_a_key_firing_again_while_its_previous_firing_runs_keeps_both(bus, monkeypatch, scaled):
    """Key 1 fires (F1 hangs), then fires again (F2, new events for the same key): key 1's entry
    names both chunks, and holds no firing itself. Killed: the restart runs both, once each;
    then the entry goes."""
    monkeypatch.setattr(srm, "DRAIN_IDLE", 0.1)
    hold = asyncio.Event()
    started: Counter[str] = Counter()

    async def exec_a(f) -> None:
        started[f.id] += 1
        await hold.wait()

    s = orders(unique_name("ck2"))
    a = rt_for(bus, s, exec_a)
    async with dying(a):
        await bus.publish(cev("order", {"id": 1}, "o1"))
        await bus.publish(cev("pay", {"orderId": "1"}, "p1"))
        await until(lambda: len(started) == 1, what="F1")
        await bus.publish(cev("order", {"id": 1}, "o1b"))
        await bus.publish(cev("pay", {"orderId": "1"}, "p1b"))
        await until(lambda: len(started) == 2, what="F2")

        async def both_named() -> bool:
            doc, _ = await a.store.get("s.ship.k1")
            return doc is not None and len(doc.get("batches") or []) == 2 and not doc.get("firings")

        await until(both_named, what="key 1's entry naming both chunks")
    rerun = Done()
    c = rt_for(bus, s, rerun)
    async with running_sensor(c):
        await until(lambda: len(rerun.done) == 2, what="both re-run")

        async def gone() -> bool:
            return not [k for k in await c.store.keys() if k.startswith("s.")]

        await until(gone, timeout=10, what="key 1's entry removed")
    assert set(rerun.done) == set(started) and set(rerun.done.values()) == {1}


# --------------------------------------------------------------------------- back-pressure, idle, close


async def test_back_pressure_with_one_pending_firing_never_stalls(bus, scaled):
    """max_pending_firings=1: the fetchers stop while one firing is journaled; a finished firing
    leaves its entry only by the loop's own pass (the timer's poke). 40 events must all fire,
    once each, without a stall."""
    runs = Runs()
    a = rt_for(bus, one_dep(unique_name("bp")), runs, max_pending_firings=1, batch=4)
    async with running_sensor(a):
        for i in range(40):
            await bus.publish(ev("a", i))
        await until(lambda: len(runs.count) == 40 and not a.pending(), timeout=25, what="40 firings")
        await until(lambda: holds(a, 0), what="the entry emptied")
    assert a.stats["backpressure"] >= 1, "back-pressure never engaged: the test shows nothing"
    assert set(runs.count.values()) == {1}


async def test_an_idle_sensor_does_not_spin_while_a_firing_runs_or_after_it_left(bus, scaled):
    """No livelock of the timer poke: while a firing runs (not finished) and after its entry
    write, an idle sensor makes (almost) no processing passes."""
    runs = Runs()
    runs.hold = asyncio.Event()
    a = rt_for(bus, one_dep(unique_name("spin")), runs)
    async with running_sensor(a):
        await bus.publish(ev("a", 0))
        await until(lambda: len(runs.count) == 1, what="the firing started")
        await asyncio.sleep(0.3)
        running = await passes_while(a, 1.5)
        runs.hold.set()
        await until(lambda: holds(a, 0), what="the entry emptied")
        await asyncio.sleep(0.3)
        after = await passes_while(a, 1.5)
    print(f"passes while running: {running}, after: {after}")
    assert running <= 2 and after <= 2, (running, after)


async def test_close_returns_within_bound_while_the_server_hangs_with_a_finished_firing_in_its_entry(
        private_nats, monkeypatch, scaled):
    """The server is paused (requests hang) when close() must write a finished firing out of
    its entry: close() returns within its bound (the last pass has 5 s); the firing stays in
    the entry and runs again after a restart, with the same id (3)."""
    monkeypatch.setattr(srm, "HOME_CLEAR_AFTER", 600.0)  # only close() takes it out
    server = private_nats()
    settings = NatsSettings.from_url(server.url)
    runs = Runs()
    name = unique_name("closehang")
    async with EventBus(settings, StreamSettings(name="ej", replicas=1)) as bus:
        a = rt_for(bus, one_dep(name), runs)
        await a.start()
        stop = asyncio.Event()
        task = asyncio.create_task(a.run(stop))
        await bus.publish(ev("a", 0))
        await until(lambda: len(runs.count) == 1 and a._done_home, what="the firing ran")
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.wait_for(task, 15)
        server.pause()
        try:
            t0 = time.monotonic()
            await asyncio.wait_for(a.close(drain_timeout=1), 30)
            took = time.monotonic() - t0
        finally:
            server.resume()
        print(f"close() took {took:.1f}s")
        assert took < 15, took
        c = rt_for(bus, one_dep(name), runs)
        async with running_sensor(c):
            await until(lambda: not c.pending() and holds(c, 0), what="the re-run left the entry")
    assert list(runs.count.values()) in ([1], [2]), runs.count


async def test_an_airflow_deferred_trigger_cancelled_after_its_event_empties_the_entry(bus, stream, nats_conn):
    """SensorTrigger.run() as the triggerer drives it: the event is taken, then the trigger is
    cancelled (after a deferred task's event). close() writes the finished firing out of its
    entry; a new run of the same trigger hands out nothing again."""
    from airflow_argo_events.core.events import new_event
    from airflow_argo_events.triggers import SensorTrigger

    state = unique_name("dfr").replace(".", "-")
    trig = SensorTrigger(name="dfr", dependencies=[{"name": "d", "eventSourceName": "s", "eventName": "e"}],
                         deliver="all", state_name=state)
    got: asyncio.Queue = asyncio.Queue()

    async def consume():
        async for event in trig.run():
            got.put_nowait(event)

    await bus.publish(new_event(source="s", subject="e", type="webhook", data={"i": 1}))
    task = asyncio.create_task(consume())
    first = await asyncio.wait_for(got.get(), 20)
    await asyncio.sleep(0.01)  # the generator resumes: the event is taken
    task.cancel()
    assert (await asyncio.wait({task}, timeout=20))[0], "cancellation did not finish"
    store = await bus.state(state)
    left = [f["id"] async for e in store.scan("s.>") if not e.deleted
            for f in (st.loads_strict(e.value).get("firings") or [])]
    assert left == [], f"the firing stayed in its entry: {left}"
    task = asyncio.create_task(consume())
    try:
        with pytest.raises(asyncio.TimeoutError):
            again = await asyncio.wait_for(got.get(), 3)
            raise AssertionError(f"handed out again: {again.payload['firing_id']} (first {first.payload['firing_id']})")
    finally:
        task.cancel()
        await asyncio.wait({task}, timeout=20)


# --------------------------------------------------------------------------- hostile entry contents


async def test_a_firing_of_an_unknown_trigger_in_an_entry_leaves_it(bus, caplog):
    runs = Runs()
    name = unique_name("alien")
    a = rt_for(bus, one_dep(name), runs)
    store = await bus.state(a.bucket)
    entry = st.Entry("t", firings={"f-good": good_record("f-good").encode(),
                                   "f-alien": good_record("f-alien", trigger="gone").encode()})
    await store.put("s.t._", entry.dump())
    async with running_sensor(a):
        await until(lambda: runs.count["f-good"] == 1 and not a.pending(), what="the good firing ran")
        with contextlib.suppress(AssertionError):
            await until(lambda: holds(a, 0), timeout=3, what="the entry emptied")
        for i in range(3):  # a busy trigger: its writes do not take it out either
            await bus.publish(ev("a", 10 + i))
        await until(lambda: len(runs.count) == 4 and not a.pending(), what="3 more")
        await asyncio.sleep(0.5)
        left = await stored_firings(a)
        counted = await st.count_journal(a.store)
    assert "f-alien" not in runs.count
    assert left == [] and counted == 0, f"entry still holds {left}; count_journal {counted}"


async def test_an_unreadable_firing_alone_in_an_entry_leaves_it(bus):
    runs = Runs()
    a = rt_for(bus, one_dep(unique_name("bad1")), runs)
    store = await bus.state(a.bucket)
    await store.put("s.t._", st.Entry("t", firings={"f-bad": b'{"id":"f-bad","events":{}}'}).dump())
    async with running_sensor(a):
        await asyncio.sleep(1.0)
        left = await stored_firings(a)
        counted = await st.count_journal(a.store)
    assert not runs.count
    assert left == [] and counted == 0, f"entry still holds {left}; count_journal {counted}"


@pytest.mark.parametrize("firings", [5, True, 1.5], ids=["int", "bool", "float"])
async def test_an_entry_whose_firings_field_is_not_a_list_does_not_stop_the_sensor(bus, firings):
    runs = Runs()
    a = rt_for(bus, one_dep(unique_name("notlist")), runs)
    store = await bus.state(a.bucket)
    await store.put("s.t._", {"trigger": "t", "corr": "_", "deps": {}, "applied": {}, "clock": None,
                              "firings": firings})
    async with running_sensor(a):
        await bus.publish(ev("a", 0))
        await until(lambda: len(runs.count) == 1, what="the sensor fires")


@pytest.mark.parametrize("firings", [{"x": 1}, "abc", [1, "x", None, [], {"no": "id"}]],
                         ids=["dict", "str", "junk-items"])
async def test_entries_with_odd_firings_fields_are_ignored_and_the_sensor_fires(bus, firings):
    """A dict, a string, or a list of non-records: nothing recovered, the sensor runs, and the
    status counter does not fail."""
    runs = Runs()
    a = rt_for(bus, one_dep(unique_name("odd")), runs)
    store = await bus.state(a.bucket)
    await store.put("s.t._", {"trigger": "t", "corr": "_", "deps": {}, "applied": {}, "clock": None,
                              "firings": firings})
    async with running_sensor(a):
        assert not a.pending()
        await bus.publish(ev("a", 0))
        await until(lambda: len(runs.count) == 1 and not a.pending(), what="the sensor fires")
        await until(lambda: holds(a, 0), what="its firing left")
        assert await st.count_journal(a.store) == 0


async def test_duplicate_ids_and_an_oversized_entry_journal(bus, monkeypatch, scaled):
    """An entry holding the same firing id twice runs it once; an entry whose journal is over
    ENTRY_JOURNAL_MAX (a replica's or a hand edit) sends new batches to chunks, and all leave."""
    monkeypatch.setattr(st, "ENTRY_JOURNAL_MAX", 2000)  # the big record alone passes it
    runs = Runs()
    name = unique_name("dupbig")
    a = rt_for(bus, one_dep(name), runs)
    store = await bus.state(a.bucket)
    big = st.JournalRecord("f-big", "t", st.NO_CORRELATION,
                           {"a": st.new_ref(ev("a", 7, size=3000), 7, "x")[0]}, "2026-12-04T00:00:00Z")
    dup = st.loads_strict(good_record("f-dup").encode())
    doc = st.Entry("t").dump()
    doc["firings"] = [dup, dup, st.loads_strict(big.encode())]
    await store.put("s.t._", doc)
    runs.hold = asyncio.Event()
    async with running_sensor(a):
        await until(lambda: len(runs.count) == 2, what="the recovered two started")
        await bus.publish(ev("a", 0))
        await until(lambda: len(runs.count) == 3, what="the new one started")
        assert len(await journal(bus, a.bucket)) == 1, "the new batch should have gone to a chunk"
        runs.hold.set()
        await until(lambda: not a.pending() and holds(a, 0), what="all left")

        async def no_chunk() -> bool:
            return await journal(bus, a.bucket) == []

        await until(no_chunk, what="the chunk erased")
    assert set(runs.count.values()) == {1}, runs.count


# --------------------------------------------------------------------------- the Airflow trigger


@pytest.fixture
def nats_conn(monkeypatch, nats_url, stream):
    monkeypatch.setenv("AIRFLOW_CONN_NATS_DEFAULT", f"{nats_url}?stream={stream.name}")


async def test_an_airflow_check_empties_the_entry_and_the_next_check_returns_nothing(bus, stream, nats_conn):
    """SensorTrigger.check (a non-deferrable poke): the firing finishes when the payload is taken,
    the trigger then stops; close() must write it out of its entry, so the next poke does not
    hand the same firing out again."""
    from airflow_argo_events.triggers import SensorTrigger

    state = unique_name("chk").replace(".", "-")
    trig = SensorTrigger(name="chk", dependencies=[{"name": "d", "eventSourceName": "s", "eventName": "e"}],
                         deliver="all", state_name=state)
    from airflow_argo_events.core.events import new_event

    await bus.publish(new_event(source="s", subject="e", type="webhook", data={"i": 1}))
    first = await trig.check(limit=20)
    assert first is not None
    store = await bus.state(state)
    left = [f["id"] async for e in store.scan("s.>") if not e.deleted
            for f in (st.loads_strict(e.value).get("firings") or [])]
    assert left == [], f"the firing stayed in its entry after check(): {left}"
    second = await trig.check(limit=5)
    assert second is None, f"the same firing handed out again: {second and second.get('firing_id')}"
