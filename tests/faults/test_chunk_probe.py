"""Adversarial probes of the journal in chunks (``j.b.<instance>.<n>``) claimed by every
trigger's entry. Each test is one attack on a real server; the helpers and the scaled
constants come from ``test_journal_chunks``. Five of them found a lost firing or state
left behind in the first version (their docstrings say what happened then); all are kept as
regression tests for paths the chunk tests do not take (lost replies of the chunk and entry writes and the retry that
follows, a partial entries' write then a crash, a replica starting mid-batch, correlated
keys across replicas, what ``sensor status`` counts).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter

import pytest

from airflow_argo_events.core.bus import StateStore
from airflow_argo_events.core.bus.kv import StateConflict
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.exceptions import EventBusError
from airflow_argo_events.core.observe.status import read_sensor_status
from airflow_argo_events.core.runtime import sensor_runtime as srm
from airflow_argo_events.core.runtime import state as st
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name
from tests.faults.test_journal_chunks import (
    Runs,
    crashing_before_entries,
    ev,
    journal,
    no_journal,
    rt_for,
    sensor,
    until,
)
from tests.support import running_sensor

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("chunks_only")]


def two_on_a(name: str) -> Sensor:
    """Two stateless triggers on one dependency: one event, two firings, one chunk."""
    return sensor(name, [{"template": {"name": "t1", "conditions": "a", "log": {}}},
                         {"template": {"name": "t2", "conditions": "a", "log": {}}}], ["a"])


def orders(name: str) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "order", "eventSourceName": "shop", "eventName": "order"},
                         {"name": "payment", "eventSourceName": "shop", "eventName": "pay"}],
        "triggers": [{"template": {"name": "ship", "conditions": "order && payment", "log": {},
                                   "correlation": {"keys": {"order": "id", "payment": "orderId"},
                                                   "window": "1h"}}}]}})


def cev(subject: str, data: dict, id: str):
    return new_event(source="shop", subject=subject, type="webhook", data=data, id=id)


class Done:
    """An executor counting starts and completions per firing id; ``hang`` makes it never return."""

    def __init__(self, hang: bool = False, started: Counter | None = None, done: Counter | None = None) -> None:
        self.hang = hang
        self.started: Counter[str] = started if started is not None else Counter()
        self.done: Counter[str] = done if done is not None else Counter()
        self.ids: dict[str, str] = {}  # firing id -> trigger

    async def __call__(self, firing) -> None:
        self.started[firing.id] += 1
        self.ids[firing.id] = firing.trigger
        if self.hang:
            await asyncio.Event().wait()
        self.done[firing.id] += 1


async def kill(rt: SensorRuntime, task: asyncio.Task) -> None:
    """The process dies: its run loop, actions, dispatcher and journal clearer with it."""
    for t in (task, *rt._actions, rt._dispatcher, rt._clearer):
        if t is not None:
            t.cancel()
    with contextlib.suppress(BaseException):
        await task
    for t in list(rt._actions):
        with contextlib.suppress(BaseException):
            await t
    for sub in rt._subs:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


def lose_replies_once(rt: SensorRuntime, stored: str, lost=lambda key: True) -> list[str]:
    """The first write of keys starting with ``stored`` is stored, but the replies of those
    ``lost`` picks are lost (an error instead). Returns the keys of that write, once made."""
    real = rt.store.put_many
    tripped: list[str] = []

    async def put_many(items, *args, **kw):
        res = await real(items, *args, **kw)
        if not tripped and any(k.startswith(stored) for k, *_ in items):
            tripped.extend(k for k, *_ in items)
            return [EventBusError("reply lost") if lost(k) else r for (k, *_), r in zip(items, res, strict=True)]
        return res

    rt.store.put_many = put_many
    return tripped


async def chunk_docs(bus, bucket: str) -> dict[str, list[str]]:
    store = await StateStore.open(bus.js, bucket)
    out = {}
    async for e in store.scan("j.>"):
        if not e.deleted:
            out[e.key] = [f["id"] for f in st.journal_docs(e.key, st.loads_strict(e.value))]
    return out


# --------------------------------------------------------------------------- a replica starting mid-batch


async def test_a_replica_starting_mid_batch_keeps_the_firings_of_a_chunk_it_knows_only_part_of(
        bus, monkeypatch, scaled):
    """A journals F1 (t1) and F2 (t2) in chunk A.1; its entries' write lands for t1 and not
    yet for t2 (the puts of one ``put_many`` are not atomic) when replica B starts: B's
    ``_load`` sees A.1 named by t1 only and recovers F1 alone. B runs F1 and, the chunk being
    young, rewrites it with F2 instead of erasing it (it used to erase it: F2 was lost). A's
    t2 entry then lands, naming A.1; A runs F2, acks the message, and dies before F2
    finishes. The restart runs F2 from A.1: it completes once."""
    s = two_on_a(unique_name("mid"))
    started, done = Counter(), Counter()
    ex_a, ex_ok = Done(True, started, done), Done(False, started, done)
    a = SensorRuntime(s, bus, ex_a, ack_wait=30.0, idle_poll=0.5)  # no redelivery to B during the test
    b = SensorRuntime(s, bus, ex_ok, ack_wait=30.0, idle_poll=0.5)
    await a.start()
    half, gate = asyncio.Event(), asyncio.Event()
    real = a.store.put_many

    async def put_many(items, *args, **kw):
        t2 = [it for it in items if it[0].startswith("s.t2.")]
        rest = [it for it in items if not it[0].startswith("s.t2.")]
        if not t2 or not any(k.startswith("s.t1.") for k, *_ in rest) or gate.is_set():
            return await real(items, *args, **kw)
        r1 = await real(rest)
        half.set()
        await gate.wait()
        r2 = await real(t2)
        i1, i2 = iter(r1), iter(r2)
        return [next(i2) if k.startswith("s.t2.") else next(i1) for k, *_ in items]

    a.store.put_many = put_many
    stop = asyncio.Event()
    task = asyncio.create_task(a.run(stop))
    try:
        await bus.publish(ev("a", 0))
        await until(half.is_set, what="t1's entry stored, t2's not yet")
        [chunk] = await journal(bus, a.bucket)
        await b.start()
        b_knows = sorted(r.trigger for r in b._journal.values())
        async with running_sensor(b, start=False):
            await until(lambda: sum(done.values()) >= 1, what="B ran what it recovered")
            f1 = next(iter(ex_ok.ids))

            async def rewritten() -> bool:
                docs = await chunk_docs(bus, b.bucket)
                return list(docs) == [chunk] and len(docs[chunk]) == 1 and f1 not in docs[chunk]

            await until(rewritten, what="B rewrote the chunk without F1")
            gate.set()
            await until(lambda: len(started) == 2 and sum(started.values()) == 3, what="A started F1 and F2")
            f2 = next(f for f, t in ex_a.ids.items() if t == "t2")
            await asyncio.sleep(0.3)  # A's acks leave
        await kill(a, task)
    finally:
        gate.set()
        await kill(a, task)
    c = rt_for(bus, s, Done(False, started, done))
    async with running_sensor(c):
        await asyncio.sleep(2.0)
        left = await chunk_docs(bus, c.bucket)
    print(f"chunk {chunk}; B recovered {b_knows}; started {dict(started)}; done {dict(done)}; left {left}")
    assert b_knows == ["t1"]
    assert done[f2] == 1, f"F2 ({f2}) never completed: B erased chunk {chunk} knowing only F1 of it"
    assert not left, f"the chunk stayed after F2: {left}"


async def test_a_replica_starting_while_a_large_event_is_staged_does_not_erase_its_blob(bus, monkeypatch, scaled):
    """Found: a lost firing (the same logic was in the per-firing journal before chunks).
    A stages a firing whose event is larger than INLINE_MAX: the blob ``e.<hash>`` is written
    first, then the chunk and the entry. Replica B starts in between: its ``_load`` has
    scanned ``s.>`` and ``j.>`` before the chunk existed, then lists ``e.>`` and erases the
    blob as an orphan (no age check, unlike young chunks). A's chunk and entry commit; the
    firing's event is read back from the blob to run it, is missing, and the firing is
    dropped ("cannot be rebuilt"). Now: it runs once."""
    s = sensor(unique_name("blob"), [{"template": {"name": "t", "conditions": "a", "log": {}}}], ["a"])
    runs = Runs()
    a = rt_for(bus, s, runs)
    b = rt_for(bus, s, runs)
    await a.start()
    staged, gate = asyncio.Event(), asyncio.Event()
    real = a.store.put_many

    async def put_many(items, *args, **kw):
        res = await real(items, *args, **kw)
        if any(k.startswith("e.") for k, *_ in items) and not gate.is_set():
            staged.set()
            await gate.wait()
        return res

    a.store.put_many = put_many
    async with running_sensor(a, start=False):
        await bus.publish(ev("a", 0, size=st.INLINE_MAX + 100))
        await until(staged.is_set, what="the blob written")
        await b.start()  # B is not run: it only loads (a replica's start)
        gate.set()
        with contextlib.suppress(AssertionError):
            await until(lambda: a.stats["actions_done"] >= 1, timeout=5, what="the action over")
        await asyncio.sleep(0.5)
    await b.close()
    print(f"runs {dict(runs.count)}; stats {a.stats}")
    assert len(runs.count) == 1, "the firing was dropped: its blob was erased by the replica's start"


# --------------------------------------------------------------------------- lost replies and the retry


@pytest.mark.parametrize(("stored", "lost"), [("j.b.", None), ("s.", "s.t2.")],
                         ids=["chunk-create", "entries"])
async def test_a_write_stored_with_its_reply_lost_fires_each_firing_once(bus, monkeypatch, scaled, stored, lost):
    """chunk-create: the chunk's create is stored but its reply lost (an error); the batch is
    processed again, the first chunk erased as uncommitted once the retry is stored, the
    firings journaled again and run once. entries: both entries' writes are stored, t2's
    reply lost: the retry finds them naming the first chunk, runs its firings once, and
    stages nothing again."""
    runs = Runs()
    s = two_on_a(unique_name("lost"))
    a = rt_for(bus, s, runs)
    await a.start()
    tripped = lose_replies_once(a, stored, (lambda k: k.startswith(lost)) if lost else (lambda k: True))
    async with running_sensor(a, start=False):
        await bus.publish(ev("a", 0))
        await until(lambda: len(runs.count) == 2 and not a.pending() and not a._partial, what="2 firings")
        await until(lambda: no_journal(bus, a.bucket), what="journal empty")
        await asyncio.sleep(1.5)
    assert tripped and not runs.twice(), runs.count
    assert a.stats["firings"] == 2, a.stats


async def test_an_entry_write_stored_after_the_reload_that_retried_it_loses_the_firing(bus, monkeypatch, scaled):
    """Found: a lost firing. The entry's write times out on the client and is stored by the
    server only after the retry re-read the entry (a slow proposal; a follower's direct get).
    The retry (``_stored_earlier``) sees the old entry, judges the first chunk C uncommitted
    and erases it, then journals the firing again in C2; its entry write conflicts with the
    late one. The next retry reloads an entry naming C (gone) with the message applied, while
    ``attempted`` now holds only the C2 record (overwritten by firing id): C2 is erased as
    uncommitted, the message is skipped as applied, and the firing never runs. The entry
    names a chunk that no longer exists, so a restart does not run it either.
    Now: the firing runs once."""
    runs = Runs()
    s = sensor(unique_name("late"), [{"template": {"name": "t", "conditions": "a", "log": {}}}], ["a"])
    a = rt_for(bus, s, runs)
    await a.start()
    real = a.store.put_many
    late: list = []
    seen_chunks: list[str] = []

    async def put_many(items, *args, **kw):
        seen_chunks.extend(k for k, *_ in items if k.startswith("j.b."))
        if any(k.startswith("s.") for k, *_ in items):
            if not late:
                late.append(items)  # "sent": stored later, the client saw a timeout
                return [EventBusError("publish timed out") for _ in items]
            if late[0] is not None:
                first, late[0] = late[0], None
                print("late write stored:", await real(first))
        return await real(items, *args, **kw)

    a.store.put_many = put_many
    async with running_sensor(a, start=False):
        await bus.publish(ev("a", 0))
        await until(lambda: late and late[0] is None, what="the late write")
        await asyncio.sleep(2.0)
        entry, _ = await a.store.get(st.entry_key("t"))
        left = await chunk_docs(bus, a.bucket)
    c = rt_for(bus, s, runs)
    async with running_sensor(c):  # a restart does not bring it back either
        await asyncio.sleep(1.5)
    print(f"chunks written {seen_chunks}; entry batches {entry.get('batches')} applied {entry.get('applied')}; "
          f"journal {left}; runs {dict(runs.count)}; stats {a.stats}")
    assert len(runs.count) == 1, f"the firing never ran: entry names {entry.get('batches')}, journal {left}"


# --------------------------------------------------------------------------- partial entries' write, then a crash


async def test_one_entry_committed_the_other_conflicting_then_a_crash_runs_each_firing_once(bus, monkeypatch, scaled):
    """t1's entry names the chunk, t2's write loses a compare-and-set (a replica wrote t2);
    the process dies before the retry. The restart runs F1 from the chunk (named by t1) and
    not F2 from it (t2 does not name it); the redelivered message fires F2 afresh. Each runs
    once; the chunk goes after F1."""
    runs = Runs()
    s = two_on_a(unique_name("part"))
    a = rt_for(bus, s, runs)
    await a.start()
    real = a.store.put_many
    hang = asyncio.Event()
    failed: list[int] = []

    async def put_many(items, *args, **kw):
        if any(k.startswith("s.") for k, *_ in items):
            failed.append(1)
            if len(failed) > 1:
                await hang.wait()  # the retry never happens: the process is dying
            t1 = [it for it in items if not it[0].startswith("s.t2.")]
            res = iter(await real(t1))
            return [StateConflict("revision is stale") if k.startswith("s.t2.") else next(res) for k, *_ in items]
        return await real(items, *args, **kw)

    a.store.put_many = put_many
    stop = asyncio.Event()
    task = asyncio.create_task(a.run(stop))
    await bus.publish(ev("a", 0))
    await until(lambda: len(failed) == 2, what="the retry hanging")
    await kill(a, task)
    before = await chunk_docs(bus, a.bucket)
    assert not runs.count
    c = rt_for(bus, s, runs)
    async with running_sensor(c):
        assert sorted(r["trigger"] for r in c.pending().values()) == ["t1"], c.pending()
        await until(lambda: len(runs.count) == 2 and not c.pending() and not c._partial, what="F1 and F2")
        with contextlib.suppress(AssertionError):
            await until(lambda: no_journal(bus, c.bucket), timeout=5, what="journal empty")
        await asyncio.sleep(1.5)
        after = await chunk_docs(bus, c.bucket)
        entries = {t: (await c.store.get(st.entry_key(t)))[0] for t in ("t1", "t2")}
    print(f"journal after the crash {before}; runs {dict(runs.count)}; journal at the end {after}; "
          f"entries {entries}; C closed {list(c._closed)} chunks {c._chunks}")
    firings, _ = await st.journal_firings(c.store)
    assert not firings, f"a committed firing left behind: {firings}; journal {after}"
    # what is left: the crashed retry's unnamed chunk and F2 in the first (young: kept as a
    # replica's might be), never run; a start after ORPHAN_AGE erases them
    monkeypatch.setattr(st, "ORPHAN_AGE", 0.0)
    d = rt_for(bus, s, runs)
    await d.start()
    await d.close()
    assert await no_journal(bus, d.bucket)
    assert not runs.twice(), runs.count


# --------------------------------------------------------------------------- correlated keys


async def test_a_correlated_firing_held_while_its_key_drains_survives_a_crash(bus, monkeypatch, scaled):
    """Key k1 fires into a chunk whose action hangs; other keys fire and drain around it,
    floors pass k1's sequences. The emptied k1 entry must not go while its chunk is open:
    a crash then re-runs k1's firing."""
    monkeypatch.setattr(srm, "DRAIN_IDLE", 0.1)
    started = Counter()
    rerun = Done(False)
    hold = asyncio.Event()

    async def exec_a(f):
        started[f.id] += 1
        if f.key == "1":
            await hold.wait()

    s = orders(unique_name("cdr"))
    a = rt_for(bus, s, exec_a)
    await a.start()
    async with crashing_before_entries(a):
        await bus.publish(cev("order", {"id": 1}, "o1"))
        await bus.publish(cev("pay", {"orderId": "1"}, "p1"))
        await until(lambda: len(started) == 1, what="k1 fired")
        for i in range(2, 8):
            await bus.publish(cev("order", {"id": i}, f"o{i}"))
            await bus.publish(cev("pay", {"orderId": str(i)}, f"p{i}"))
        await until(lambda: len(started) == 7, what="k2..k7 fired")
        await asyncio.sleep(2.5)  # floors sampled, emptied keys drained
        keys = [k async for k in _keys(bus, a.bucket, "s.")]
    assert keys == ["s.ship.k1"], f"only k1's entry (its chunk open) should be left: {keys}"
    c = rt_for(bus, s, rerun)
    async with running_sensor(c):
        await until(lambda: rerun.done, what="k1's firing re-run")
        await asyncio.sleep(1.5)
        await until(lambda: no_journal(bus, c.bucket), what="journal empty")
        await until(lambda: _none(bus, c.bucket, "s."), timeout=10, what="k1's entry drained")
    print(f"A started {dict(started)}; C ran {dict(rerun.done)}")
    assert set(started.values()) == {1} and list(rerun.done.values()) == [1], (started, rerun.done)
    assert next(iter(rerun.done)) in started


async def _keys(bus, bucket: str, prefix: str):
    store = await StateStore.open(bus.js, bucket)
    for k in sorted(await store.keys()):
        if k.startswith(prefix):
            yield k


async def _none(bus, bucket: str, prefix: str) -> bool:
    return [k async for k in _keys(bus, bucket, prefix)] == []


async def test_an_emptied_key_naming_a_stopped_replicas_chunk_is_never_drained(bus, monkeypatch, scaled):
    """Found: state left behind for the survivor's lifetime. Replicas A and B start
    together. B fires key 1 (chunk B.1, named by s.ship.k1), finishes, and is stopped (scaled
    down) before it drained the emptied key. A later takes a new order and payment for key 1:
    its entry now names B.1 and A.1. A finishes A.1, the floors pass everything, but A never
    removes s.ship.k1: for A, another instance's chunk it did not erase is "open" forever
    (``_open``), and ``_drained`` skips a key naming one. Only a restart (``_load`` finds B.1
    gone) clears it. Now: s.ship.k1 is removed once its sequences settle."""
    monkeypatch.setattr(srm, "DRAIN_IDLE", 0.1)
    monkeypatch.setattr(st, "ACKED_GRACE", 30.0)  # B stops before its floors age
    runs = Runs()
    s = orders(unique_name("cst"))
    a, b = rt_for(bus, s, runs), rt_for(bus, s, runs)
    await a.start()
    await b.start()
    async with running_sensor(b, start=False):
        await bus.publish(cev("order", {"id": 1}, "o1"))
        await bus.publish(cev("pay", {"orderId": "1"}, "p1"))
        await until(lambda: len(runs.count) == 1 and not b.pending() and not b._partial, what="B fired key 1")
    store = await StateStore.open(bus.js, a.bucket)
    doc_b, _ = await store.get("s.ship.k1")
    monkeypatch.setattr(st, "ACKED_GRACE", 0.5)
    async with running_sensor(a, start=False):
        await bus.publish(cev("order", {"id": 1}, "o1-again"))
        await bus.publish(cev("pay", {"orderId": "1"}, "p1-again"))
        await until(lambda: len(runs.count) == 2 and not a.pending() and not a._partial, what="A fired key 1")
        with contextlib.suppress(AssertionError):
            await until(lambda: _none(bus, a.bucket, "s."), timeout=6, what="s.ship.k1 drained")
        doc_a, _ = await store.get("s.ship.k1")
        draining = list(a._draining)
    print(f"after B: batches {doc_b.get('batches')}; after A: {doc_a and doc_a.get('batches')} "
          f"applied {doc_a and doc_a.get('applied')}; A draining {draining}")
    assert doc_b.get("batches") and st.chunk_name(st.chunk_key(doc_b["batches"][0]))
    assert doc_a is None, f"s.ship.k1 left behind naming {doc_a.get('batches')} (A waits on B's closed chunk)"


# --------------------------------------------------------------------------- what status counts


async def test_status_counts_no_firing_of_a_chunk_no_entry_names(bus, monkeypatch, scaled):
    """Found: phantom pending firings in status. The process dies between the chunk and the
    entries; the restarted sensor (correctly) does not run the unnamed chunk, fires from the redelivered message and
    finishes. ``sensor status`` and ``state list`` (``count_journal``) still report a pending
    firing: they count every firing of every chunk, named or not, and the unnamed chunk stays
    until a start later than ORPHAN_AGE (a sensor that keeps running keeps it, and its blobs).
    Now: nothing pending once the firing finished."""
    runs = Runs()
    s = sensor(unique_name("stat"), [{"template": {"name": "t", "conditions": "a", "log": {}}}], ["a"])
    a = rt_for(bus, s, runs)
    await a.start()
    async with crashing_before_entries(a) as hang:
        hang.set()
        await bus.publish(ev("a", 0))
        await until(lambda: journal(bus, a.bucket), what="the chunk written")
        await asyncio.sleep(0.2)
    c = rt_for(bus, s, runs)
    async with running_sensor(c):
        await until(lambda: len(runs.count) == 1 and not c.pending() and not c._partial, what="the firing")
        await asyncio.sleep(1.0)
        status = await read_sensor_status(bus.js, c.bucket)
        counted = await st.count_journal(c.store)
        left = await chunk_docs(bus, c.bucket)
    pending = [p.id for t in status.triggers for p in t.pending]
    print(f"runs {dict(runs.count)}; status pending {pending}; count_journal {counted}; journal {left}")
    assert not runs.twice()
    assert pending == [] and counted == 0, f"status shows {pending} pending, state list {counted}: the unnamed chunk"


# --------------------------------------------------------------------------- bounds


def test_an_entry_at_the_hard_cap_fits_the_max_payload():
    """Found: a bound too loose. APPLIED_HARD_CAP bounds each dependency's list, not the entry: a trigger
    over six dependencies (``a || b || ...``) whose ack floor is stuck (one consumer holding
    one message) keeps 20,000 sequences for each, and at stream sequences of 10^8 the entry
    exceeds NATS's default 1 MB max payload. Its write then fails with StateTooLarge, which
    ``_handle`` treats as a bug: every message is processed alone and dead-lettered."""
    deps = [f"d{i}" for i in range(6)]
    e = st.Entry("t", applied={d: list(range(100_000_000 + i, 100_000_000 + i + 6 * st.APPLIED_HARD_CAP, 6))[
        : st.APPLIED_HARD_CAP] for i, d in enumerate(deps)})
    over, dropped = e.bound(0)
    size = len(e.encode())
    print(f"bounded entry: {size} bytes, over cap {over}, dropped {dropped}")
    assert size < 1024 * 1024, f"a bounded entry is {size} bytes: more than the default max payload"
