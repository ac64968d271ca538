"""The live sensor: bus -> engine -> actions, with no lost and no duplicate firing.

Invariants (numbered as the code refers to them):

1. A message is acked only after everything it changed is stored: the entries of the
   stateful triggers it touched (compare-and-set on each entry's revision) and the journal
   entry of every firing it caused (see ``state.py`` for the layout).
2. Write order within a batch: event blobs, then journal entries, then trigger entries,
   then acks. A crash at any point leaves either the old state (the batch is redelivered
   and processed again) or a firing that is journaled before the state that consumed it is
   cleared (it re-runs from the journal; the redelivered batch regenerates the same firing
   id and is recognised).
3. A firing leaves the journal only after its action finished (success, or failure after
   retries and the dead-letter action). A crash in between re-runs it after restart with
   the same firing id, which every action passes on as an idempotency key.
4. A redelivered message is recognised by the stream sequences each entry records in the
   same write that applied it, and a regenerated firing by its journal entry or tombstone.
5. A compare-and-set conflict (another replica wrote first) or a bus error mid-batch
   reloads the touched entries and processes the same batch again on top of them.
6. One error boundary per message: whatever goes wrong with one message (not a CloudEvent,
   a hostile transform, a parameter that cannot be built, an event too large to store) is
   logged once with its id, counted, published to the dead-letter subject
   ``<stream>.dlq.<sensor>`` with the error in headers, and terminated. Only bus failures
   pause the loop, with capped backoff; nothing here exits the process.
7. Bounded: at most ``max_pending_firings`` firings wait in the journal; past that the
   fetchers stop (back-pressure) instead of the state growing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from nats.js.errors import APIError

from airflow_argo_events.core.bus import Delivery, EventBus, StateStore, Subscription, durable_name
from airflow_argo_events.core.bus.consumer import DeliverFrom
from airflow_argo_events.core.bus.kv import StateConflict, StateTooLarge
from airflow_argo_events.core.events import Event, event_from_json, format_time
from airflow_argo_events.core.exceptions import EventBusError
from airflow_argo_events.core.runtime import state as st
from airflow_argo_events.core.sensor.engine import Engine, Firing
from airflow_argo_events.core.spec.sensor import Sensor

log = logging.getLogger("airflow_argo_events.sensor")

Execute = Callable[[Firing], Awaitable[Any]]
RECENT_FINISHED = 10_000
MAX_ACKED = 100_000
MAX_TOMBSTONES = 10_000
"""Finished-firing markers kept at most (about 1 MB of KV): the oldest go early on a busy sensor."""
MAX_BACKOFF = 5.0


def bucket_name(sensor: str, prefix: str = "sensor") -> str:
    """A KV bucket name for a sensor (``[A-Za-z0-9_-]`` only)."""
    return f"{prefix}-" + re.sub(r"[^A-Za-z0-9_-]", "_", sensor)


utcnow = st.utcnow


class _Poison(Exception):
    """One message cannot be processed; carries the reason for the log and the DLQ."""


class SensorRuntime:
    """Runs one Sensor against the bus. ``execute`` is called once per firing (the
    ActionRunner's ``run`` for ``argo-events sensor run``; a queue for Airflow triggers).

    >>> runtime = SensorRuntime(sensor, bus, execute=runner.run)   # doctest: +SKIP
    >>> await runtime.run(stop_event)                              # doctest: +SKIP
    """

    def __init__(
        self,
        sensor: Sensor,
        bus: EventBus,
        execute: Execute,
        *,
        deliver: DeliverFrom = "new",
        bucket: str | None = None,
        consumer_prefix: str = "",
        batch: int = 64,
        clock: Callable[[], datetime] = utcnow,
        max_concurrent_actions: int = 16,
        max_pending_firings: int = 1000,
        engine: Engine | None = None,
        ack_wait: float = 5.0,
        idle_poll: float = 10.0,
        on_processed: Callable[[list[tuple[Any, list[str], list[Firing]]]], None] | None = None,
    ) -> None:
        self.sensor = sensor
        self.name = sensor.metadata.name
        self.bus = bus
        self.engine = engine or Engine(sensor)
        self._execute = execute
        self._deliver = deliver
        self.bucket = bucket or bucket_name(f"{self.name}-{bus.stream.name}")
        self._consumer_prefix = consumer_prefix or self.bucket
        self._batch = batch
        self._ack_wait = ack_wait
        # A pull request waits this long on the server when idle: long enough that 1,000
        # idle sensors cost little CPU, short enough to notice a lost connection.
        self._idle_poll = idle_poll
        self._on_processed = on_processed
        self._clock = clock
        self._max_pending = max(1, max_pending_firings)
        self._store: st.StateStore | None = None
        self._entries: dict[str, st.Entry] = {}
        self._journal: dict[str, st.JournalRecord] = {}
        self._created: set[str] = set()  # journal entries this process wrote
        self._built: dict[str, Firing] = {}  # journaled firings with small events, ready to run
        self._finished: OrderedDict[str, None] = OrderedDict()  # recently finished firing ids
        self._tombstones: deque[tuple[float, str]] = deque()
        self._subs: list[Subscription] = []
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._actions: set[asyncio.Task[None]] = set()
        self._action_slots = asyncio.Semaphore(max_concurrent_actions)
        self._room = asyncio.Event()
        self._room.set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._stopping = False
        self.instance = uuid.uuid4().hex[:12]
        self._running: set[str] = set()
        self._touched: set[str] = set()  # triggers whose entries the current batch edits
        self._acked: OrderedDict[int, float] = OrderedDict()  # stream seq -> when its ack was confirmed
        self.stats = {"events": 0, "skipped": 0, "firings": 0, "malformed": 0, "conflicts": 0, "poison": 0,
                      "dead_lettered": 0, "bus_errors": 0, "backpressure": 0, "actions_done": 0}

    @property
    def store(self) -> StateStore:
        assert self._store is not None, "call start() first"
        return self._store

    # ------------------------------------------------------------------ start

    async def start(self) -> None:
        self._store = await self.bus.state(self.bucket)
        await self._retrying("load state", self._load)
        consumers = []
        for source, event in self.engine.listens_to():
            durable = durable_name(self._consumer_prefix, source, event)
            consumers.append(durable)
            # max_ack_pending bounds what is in flight: after a crash those unacked messages
            # are redelivered (after ack_wait) before anything newer, so events keep their order.
            self._subs.append(await self._retrying(f"create consumer {durable}", lambda d=durable, s=source, e=event:
                self.bus.subscribe(d, s, e, deliver=self._deliver, batch=self._batch, ack_wait=self._ack_wait,
                                   max_ack_pending=self._batch * 2)))
        await self._let_orphans_expire()
        meta = st.meta_doc(self.name, self.bus.stream.name, self.bucket, consumers,
                           [t.name for t in self.engine.triggers], st.definition_hash(self.sensor.dump()))
        await self._retrying("store meta", lambda: self.store.put("meta", meta))
        recovered = [r for r in self._journal.values() if r.recovered]
        if recovered:
            log.warning("sensor %s: re-running %d firing(s) left in the journal", self.name, len(recovered))
        self._update_room()

    async def _let_orphans_expire(self) -> None:
        """Keep the stream's order across a crash: messages a dead process took but never
        acked come back only when their ack_wait runs out, and the server then delivers them
        before anything newer. Taking newer ones first would pair events differently than
        the stream's order (Argo's "latest wins"), so wait, once, until they are due."""
        due = 0.0
        for sub in self._subs:
            try:
                info = await sub.info()
            except EventBusError:
                continue
            last = info.delivered.last_active if info.delivered else None
            if info.num_ack_pending and last is not None:
                due = max(due, last.timestamp() + self._ack_wait + 0.5 - time.time())
        if due > 0:
            log.info("sensor %s: waiting %.1fs for messages left unacked by a previous process", self.name, due)
            await asyncio.sleep(min(due, self._ack_wait + 1))

    async def _load(self) -> None:
        store = self.store
        await self._migrate_v1()
        self._entries.clear()
        for t in self.engine.triggers:
            self.engine.restore(t.name, {})
        known = {t.name for t in self.engine.triggers}
        clock: str | None = None
        async for e in store.scan("s.>"):
            if e.deleted:
                continue
            doc = st.loads_strict(e.value)
            trigger = doc.get("trigger")
            if trigger not in known or not self.engine.stateful(trigger):
                log.info("sensor %s: dropping saved state of trigger %r (not in the spec any more)", self.name, trigger)
                await store.erase(e.key)
                continue
            entry = st.Entry(trigger, doc.get("corr") or st.NO_CORRELATION,
                             {d: st.Ref.parse(r) for d, r in (doc.get("deps") or {}).items()},
                             {d: list(v) for d, v in (doc.get("applied") or {}).items()}, e.revision, doc.get("clock"))
            events = {d: await st.resolve(store, r) for d, r in entry.refs.items()}
            self.engine.restore(trigger, events)
            entry.refs = {d: r for d, r in entry.refs.items() if d in self.engine.saved(trigger)}
            self._entries[trigger] = entry
            if entry.clock and (clock is None or entry.clock > clock):
                clock = entry.clock
        self.engine.clock = datetime.fromisoformat(clock.replace("Z", "+00:00")) if clock else None
        now = time.time()
        async for e in store.scan("j.>"):
            if e.deleted:
                age = now - e.created.timestamp() if e.created else 0.0
                fid = e.key[2:]
                if age > st.TOMBSTONE_AGE:
                    await store.erase(e.key)
                else:
                    self._finished[fid] = None
                    self._tombstones.append((now - age, e.key))
                continue
            rec = st.JournalRecord.parse(st.loads_strict(e.value))
            if rec.firing_id in self._journal:
                continue
            if rec.trigger not in known:
                log.error("sensor %s: journal firing %s belongs to trigger %r, which is not in the spec any more; "
                          "dropped", self.name, rec.firing_id, rec.trigger)
                await self._forget(rec)
                continue
            self._journal[rec.firing_id] = rec
            self._ready.put_nowait(rec.firing_id)
        owned = {r.blob for en in self._entries.values() for r in en.refs.values() if r.blob}
        owned |= {r.blob for rec in self._journal.values() for r in rec.refs.values() if r.blob}
        orphans = [e.key async for e in store.scan("e.>", values=False) if e.key not in owned]
        for key in orphans:  # left by a crash between a blob write and the write that referred to it
            await store.erase(key)

    async def _migrate_v1(self) -> None:
        """Layout 1 kept everything in one ``state`` document: split it once into entries."""
        doc, _ = await self.store.get("state")
        if not doc:
            return
        log.warning("sensor %s: converting state from layout 1 (one document) to layout 2", self.name)
        saved = ((doc.get("engine") or {}).get("triggers")) or {}
        for trigger, events in saved.items():
            with contextlib.suppress(KeyError):
                if not self.engine.stateful(trigger):
                    continue
                entry = st.Entry(trigger)
                for dep, evdoc in events.items():
                    entry.refs[dep] = await self._stage_ref(event_from_json(evdoc), 0, f"{trigger}/{dep}/v1")
                await self.store.put(st.entry_key(trigger), entry.dump())
        for fid, rec in (doc.get("pending") or {}).items():
            refs = {d: await self._stage_ref(event_from_json(e), 0, f"j:{fid}:{d}") for d, e in rec["events"].items()}
            record = st.JournalRecord(fid, rec["trigger"], st.NO_CORRELATION, refs, format_time(utcnow()))
            await self.store.put(st.journal_key(fid), record.dump())
        await self.store.erase("state")

    async def _stage_ref(self, event: Event, seq: int, owner: str) -> st.Ref:
        ref, blob = st.new_ref(event, seq, owner)
        if blob is not None:
            await self.store.put_raw(*blob)
        return ref

    # ------------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set (or the task is cancelled), then stop cleanly."""
        stop = stop or asyncio.Event()
        if self._store is None:
            await self.start()
        queue: asyncio.Queue[list[Delivery]] = asyncio.Queue(maxsize=4)
        fetchers = [asyncio.create_task(self._fetch(sub, queue, stop)) for sub in self._subs]
        self._stopping = False
        self._dispatcher = asyncio.create_task(self._dispatch())
        sweeper = asyncio.create_task(self._sweep_tombstones())
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    break
                batch = getter.result()
                while not queue.empty() and len(batch) < self._batch * 4:
                    batch.extend(queue.get_nowait())
                await self._handle(batch, stop)
        finally:
            self._stopping = True
            for t in (*fetchers, stopper, sweeper):
                t.cancel()
            await asyncio.wait({*fetchers, stopper, sweeper}, timeout=10)

    async def close(self, drain_timeout: float = 30.0) -> None:
        """Wait for running actions (bounded), release the consumers (they stay durable).

        Firings still in the journal (not started, or cut short) re-run at the next start.
        """
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._dispatcher
            self._dispatcher = None
        if self._actions:
            _, late = await asyncio.wait(self._actions, timeout=drain_timeout)
            for t in late:
                t.cancel()
            if late:
                await asyncio.wait(late, timeout=5)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    async def _fetch(self, sub: Subscription, queue: asyncio.Queue[list[Delivery]], stop: asyncio.Event) -> None:
        pause = 0.1
        while not stop.is_set():
            if not self._room.is_set():  # (7) back-pressure: actions are behind
                self.stats["backpressure"] += 1
                await self._room.wait()
                continue
            try:
                got = await sub.fetch(self._batch, timeout=self._idle_poll)
                pause = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as err:  # NATS away: keep trying, never give up
                self.stats["bus_errors"] += 1
                log.warning("sensor %s: fetch from %s failed (%s); retrying", self.name, sub.subject, err)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_BACKOFF)
                continue
            if got:
                await queue.put(got)

    async def _retrying(self, what: str, op: Callable[[], Awaitable[Any]],
                        give_up: asyncio.Event | None = None) -> Any:
        """Run ``op`` until it succeeds; bus errors wait with capped backoff (the bus is away).
        With ``give_up`` set, the error is raised instead of retried."""
        pause = 0.1
        while True:
            try:
                return await op()
            except EventBusError as err:
                self.stats["bus_errors"] += 1
                if (give_up is not None and give_up.is_set()) or _refused(err):
                    raise
                log.warning("sensor %s: %s failed (%s); retrying in %.1fs", self.name, what, err, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_BACKOFF)

    # ------------------------------------------------------------------ processing

    async def _handle(self, batch: list[Delivery], stop: asyncio.Event) -> None:
        pause = 0.1
        while True:
            try:
                spawn, poison, observed = await self._apply(batch)
                break
            except StateTooLarge as err:  # a bug if it happens: every value is bounded below max payload
                log.error("sensor %s: state entry too large (%s); processing messages one at a time", self.name, err)
                await self._recover_touched()
                if len(batch) == 1:
                    spawn, poison, observed = [], {id(batch[0]): f"state too large: {err}"}, []
                    break
                for d in batch:
                    await self._handle([d], stop)
                return
            except StateConflict:  # (5)
                self.stats["conflicts"] += 1
                log.info("sensor %s: state changed under us, reloading", self.name)
                await self._recover_touched()
            except EventBusError as err:
                self.stats["bus_errors"] += 1
                log.warning("sensor %s: cannot store state (%s); retrying in %.1fs", self.name, err, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_BACKOFF)
                await self._recover_touched()
        acked = [d for d in batch if id(d) not in poison]
        # Acks are confirmed (AckSync, as Argo): a confirmed message is never redelivered, so
        # its sequence can leave the entries' applied lists (4) after a grace period.
        results = await asyncio.gather(*(d.ack(wait=True) for d in acked), return_exceptions=True)
        now = time.monotonic()
        failed = 0
        for d, r in zip(acked, results, strict=True):
            if isinstance(r, BaseException):  # a lost ack means a redelivery, which (4) absorbs
                failed += 1
            else:
                self._acked[d.stream_seq] = now
        if failed:
            log.info("sensor %s: %d ack(s) failed; those messages will be redelivered and skipped", self.name, failed)
        while len(self._acked) > MAX_ACKED:
            self._acked.popitem(last=False)
        for d in batch:
            if id(d) in poison:
                await self._dead_letter(d, poison[id(d)], stop)
        if self._on_processed is not None and observed:
            self._on_processed(observed)
        for fid in spawn:
            self._ready.put_nowait(fid)
        self._update_room()

    async def _recover_touched(self) -> None:
        """After a failed batch: reload the entries it touched from KV (waiting out a bus
        outage), and forget the event ids it marked seen, so it can be processed again."""
        self.engine.rollback_seen()
        self.engine.take_dirty()
        touched = set(self._touched)

        async def reload() -> None:
            for trigger in touched:
                data, rev = await self.store.get_raw(st.entry_key(trigger))
                if data is None:
                    self._entries.pop(trigger, None)
                    self.engine.restore(trigger, {})
                    continue
                doc = st.loads_strict(data)
                entry = st.Entry(trigger, doc.get("corr") or st.NO_CORRELATION,
                                 {d: st.Ref.parse(r) for d, r in (doc.get("deps") or {}).items()},
                                 {d: list(v) for d, v in (doc.get("applied") or {}).items()}, rev, doc.get("clock"))
                self.engine.restore(trigger, {d: await st.resolve(self.store, r) for d, r in entry.refs.items()})
                self._entries[trigger] = entry

        await self._retrying("reload state", reload)

    async def _apply(self, batch: list[Delivery]) -> tuple[list[str], dict[int, str], list[Any]]:
        """Process a batch and store its effects (1)(2). Returns firings to start, poison
        messages (by id) with their reasons, and what ``on_processed`` wants to see."""
        engine = self.engine
        engine.begin()
        engine.take_dirty()
        self._touched.clear()
        blobs: dict[str, bytes] = {}
        new_journal: dict[str, st.JournalRecord] = {}
        released: list[str] = []  # blobs whose owner let go: erased after the batch is stored
        # Entries are edited on copies, so a failed batch leaves the committed ones untouched.
        work: dict[str, st.Entry] = {}
        poison: dict[int, str] = {}
        observed: list[Any] = []
        counts = {"events": 0, "skipped": 0, "malformed": 0, "firings": 0}
        built: dict[str, Firing] = {}

        def entry(trigger: str) -> st.Entry:
            if trigger not in work:
                old = self._entries.get(trigger) or st.Entry(trigger)
                work[trigger] = st.Entry(old.trigger, old.corr, dict(old.refs),
                                         {d: list(v) for d, v in old.applied.items()}, old.revision, old.clock)
                self._touched.add(trigger)
            return work[trigger]

        for d in batch:
            ev = d.event
            if ev is None:
                counts["malformed"] += 1
                poison[id(d)] = f"not a CloudEvent: {d.error}"
                continue
            seq = d.stream_seq
            skip: set[str] = set()
            if d.num_delivered > 1:  # (4) a redelivery: which triggers already applied it?
                for trigger, deps in engine.triggers_for(ev.source, ev.subject):
                    if engine.stateful(trigger) and entry(trigger).already_applied(deps, seq):
                        skip.add(trigger)
            if engine.explain is not None:
                engine.explain.clear()
            dup_before = engine.duplicates
            try:
                fired = engine.process(ev, self._clock(), skip)
                elsewhere: set[str] = set()
                if d.num_delivered > 1:  # did another process run these firings already? (4)
                    for f in fired:
                        if not self._known(f.id) and await self.store.seen(st.journal_key(f.id)):
                            elsewhere.add(f.id)
                staged = self._stage(ev, seq, fired, entry, blobs, new_journal, released, elsewhere)
                built.update((f.id, f) for f in fired if f.id in staged)
            except EventBusError:
                raise
            except Exception as err:  # (6) this message only
                poison[id(d)] = f"{type(err).__name__}: {err}"
                continue
            counts["events"] += 1
            if skip or engine.duplicates != dup_before:
                counts["skipped"] += 1
            counts["firings"] += len(staged)
            if self._on_processed is not None:
                observed.append((ev, list(engine.explain or []), [f for f in fired if f.id in staged]))
        # Resets (conditionsReset) clear triggers without a message: bring their entries along.
        for trigger in engine.take_dirty():
            if engine.stateful(trigger):
                e = entry(trigger)
                for dep in [dep for dep in e.refs if dep not in engine.saved(trigger)]:
                    ref = e.refs.pop(dep)
                    if ref.blob:
                        released.append(ref.blob)
        clock = format_time(engine.clock) if engine.clock else None
        store = self.store
        # (2) blobs, then journal, then entries.
        await _gather_raising([store.put_raw(k, v) for k, v in blobs.items()])
        journal_writes = []
        for fid, rec in new_journal.items():
            journal_writes.append(self._journal_create(fid, rec))
        await _gather_raising(journal_writes)
        changed = [(t, e) for t, e in work.items() if self._entry_changed(t, e)]
        settled_before = time.monotonic() - st.ACKED_GRACE

        def settled(seq: int) -> bool:
            at = self._acked.get(seq)
            return at is not None and at < settled_before

        for _, e in changed:
            e.clock = clock
            e.prune(settled)  # only entries written anyway: pruning never costs a write
        revs = await asyncio.gather(*(store.put_raw(st.entry_key(t), st.dumps_compact(e.dump()), e.revision)
                                      for t, e in changed), return_exceptions=True)
        failed: BaseException | None = None
        for (t, e), rev in zip(changed, revs, strict=True):
            if isinstance(rev, BaseException):
                failed = failed or rev
            else:
                e.revision = rev
                self._entries[t] = e
        if failed is not None:
            raise failed
        for t, e in work.items():
            self._entries[t] = e
        # (1) stored: from here on the batch counts.
        spawn = []
        for fid, rec in new_journal.items():
            inline = True
            for ref in rec.refs.values():
                if ref.blob:
                    ref.event = None  # the journal keeps refs; the event is read back when the firing runs
                    inline = False
            if inline and fid in built:  # small events: keep the firing built, not built twice
                self._built[fid] = built[fid]
            self._journal[fid] = rec
            spawn.append(fid)
        for k, v in counts.items():
            self.stats[k] += v
        for key in released:
            asyncio.ensure_future(self._erase_quietly(key))
        for d in batch:
            if id(d) in poison:
                self.stats["poison"] += 1
        return spawn, poison, observed

    def _stage(self, ev: Event, seq: int, fired: list[Firing], entry: Callable[[str], st.Entry],
               blobs: dict[str, bytes], new_journal: dict[str, st.JournalRecord], released: list[str],
               elsewhere: set[str]) -> set[str]:
        """Record in the working copies what one processed event changed; returns new firing ids."""
        engine = self.engine
        staged: set[str] = set()
        for trigger, dep, firing in engine.applied:
            stateful = engine.stateful(trigger)
            e = entry(trigger) if stateful else None
            if e is not None:
                e.saw(dep, seq)
            if firing is None:
                assert e is not None
                saved = engine.saved(trigger)[dep]
                old = e.refs.get(dep)
                ref, blob = st.new_ref(saved, seq, f"{trigger}/{e.corr}/{dep}")
                if blob:
                    blobs[blob[0]] = blob[1]
                if old is not None and old.blob and old.blob != ref.blob:
                    released.append(old.blob)
                e.refs[dep] = ref
                continue
            refs: dict[str, st.Ref] = {}
            for d, fev in firing.events.items():
                old = e.refs.pop(d, None) if e is not None else None
                if old is not None and old.id == fev.id and d != dep:
                    refs[d] = old  # the saved event moves from the trigger's entry to the journal
                    continue
                if old is not None and old.blob:
                    released.append(old.blob)
                ref, blob = st.new_ref(fev, seq, f"j:{firing.id}:{d}")
                if blob:
                    blobs[blob[0]] = blob[1]
                refs[d] = ref
            if e is not None:
                for d in list(e.refs):  # the engine fired with every saved event; nothing stays
                    old = e.refs.pop(d)
                    if old.blob:
                        released.append(old.blob)
            if self._known(firing.id) or firing.id in new_journal or firing.id in elsewhere:
                log.info("sensor %s trigger %s: firing %s is already journaled or done; not run again",
                         self.name, trigger, firing.id)
                continue
            new_journal[firing.id] = st.JournalRecord(firing.id, trigger, st.NO_CORRELATION, refs,
                                                      format_time(utcnow()))
            staged.add(firing.id)
        return staged

    def _known(self, fid: str) -> bool:
        return fid in self._journal or fid in self._finished or fid in self._running

    def _entry_changed(self, trigger: str, e: st.Entry) -> bool:
        old = self._entries.get(trigger)
        return old is None or old.refs != e.refs or old.applied != e.applied or old.revision == 0

    async def _journal_create(self, fid: str, rec: st.JournalRecord) -> None:
        data = st.dumps_compact(rec.dump())
        try:
            await self.store.put_raw(st.journal_key(fid), data, revision=0)
        except StateConflict:
            # Already there: our own earlier attempt at this batch, or a replica's.
            if fid not in self._created:
                existing, _ = await self.store.get_raw(st.journal_key(fid))
                if existing is not None:
                    log.info("sensor %s: firing %s is journaled by another process", self.name, fid)
                    self._finished[fid] = None
                return
        self._created.add(fid)

    async def _erase_quietly(self, key: str) -> None:
        try:
            await self.store.erase(key)
        except EventBusError as err:  # an orphan blob is collected at the next start
            log.debug("sensor %s: could not erase %s (%s)", self.name, key, err)

    async def _dead_letter(self, d: Delivery, reason: str, stop: asyncio.Event) -> None:
        """(6) Log once, publish the message to ``<stream>.dlq.<sensor>`` with the reason, terminate it."""
        ev_id = d.event.id if d.event is not None else f"seq {d.stream_seq}"
        log.error("sensor %s: event %s on %s set aside: %s", self.name, ev_id, d.msg.subject, _one_line(reason))
        subject = self.bus.stream.subject("dlq", _subject_token(self.name))
        headers = {"Nats-Msg-Id": f"dlq-{self.bucket}-{d.stream_seq}", "Argo-Events-Error": _one_line(reason)[:1024],
                   "Argo-Events-Sensor": self.name, "Argo-Events-Subject": d.msg.subject,
                   "Argo-Events-Stream-Seq": str(d.stream_seq)}

        async def publish() -> None:
            try:
                await self.bus.publish_raw(subject, d.msg.data, headers)
            except StateTooLarge:  # the message with headers no longer fits: keep the headers
                await self.bus.publish_raw(subject, b"", {**headers, "Argo-Events-Truncated": "true"})

        try:
            await self._retrying("dead-letter publish", publish, stop)
            self.stats["dead_lettered"] += 1
        except EventBusError:
            return  # stopping with the bus away: not terminated, so it comes back after restart
        with contextlib.suppress(Exception):
            await d.term()

    # ------------------------------------------------------------------ actions

    def _update_room(self) -> None:
        if len(self._journal) >= self._max_pending:
            self._room.clear()
        else:
            self._room.set()

    async def _dispatch(self) -> None:
        """Start journaled firings as action slots free up, oldest first."""
        while True:
            fid = await self._ready.get()
            rec = self._journal.get(fid)
            if rec is None or fid in self._running:
                continue
            await self._action_slots.acquire()
            self._running.add(fid)
            task = asyncio.create_task(self._act(rec))
            self._actions.add(task)
            task.add_done_callback(self._actions.discard)

    async def _act(self, rec: st.JournalRecord) -> None:
        try:
            try:
                firing = self._built.pop(rec.firing_id, None)
                if firing is None:
                    events = {d: await self._retrying("read firing events", lambda r=r: st.resolve(self.store, r))
                              for d, r in rec.refs.items()}
                    firing = self.engine.build_firing(rec.trigger, events)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the spec changed under the journal, or a template fails now
                log.error("sensor %s trigger %s: journal firing %s cannot be rebuilt (%s); dropped", self.name,
                          rec.trigger, rec.firing_id, _one_line(f"{type(err).__name__}: {err}"))
                firing = None
            if firing is not None:
                if firing.id != rec.firing_id:  # the spec changed under the journal: keep the recorded id
                    import dataclasses

                    firing = dataclasses.replace(firing, id=rec.firing_id)
                try:
                    await self._execute(firing)
                except asyncio.CancelledError:
                    raise  # stays in the journal (3)
                except Exception:
                    log.exception("sensor %s trigger %s firing %s: executor crashed", self.name, rec.trigger,
                                  rec.firing_id)
        finally:
            self._action_slots.release()
            self._running.discard(rec.firing_id)
        self.stats["actions_done"] += 1
        await self._finish(rec)

    async def _finish(self, rec: st.JournalRecord) -> None:
        """(3) The action is over: its journal entry becomes a tombstone, its blobs go."""
        self._finished[rec.firing_id] = None
        while len(self._finished) > RECENT_FINISHED:
            self._finished.popitem(last=False)
        await self._retrying("clear journal entry", lambda: self.store.delete(st.journal_key(rec.firing_id)))
        self._tombstones.append((time.time(), st.journal_key(rec.firing_id)))
        self._journal.pop(rec.firing_id, None)
        self._built.pop(rec.firing_id, None)
        self._created.discard(rec.firing_id)
        self._update_room()
        await self._forget(rec, tombstone=False)

    async def _forget(self, rec: st.JournalRecord, tombstone: bool = True) -> None:
        for ref in rec.refs.values():
            if ref.blob:
                await self._erase_quietly(ref.blob)
        if tombstone:
            await self._erase_quietly(st.journal_key(rec.firing_id))

    async def _sweep_tombstones(self, every: float = 5.0) -> None:
        while True:
            await asyncio.sleep(every)
            horizon = time.time() - st.TOMBSTONE_AGE
            # Past MAX_TOMBSTONES (a very busy sensor) the oldest go early: KV and memory stay bounded.
            old = []
            while self._tombstones and (self._tombstones[0][0] < horizon or len(self._tombstones) > MAX_TOMBSTONES):
                old.append(self._tombstones.popleft()[1])
            for i in range(0, len(old), 64):
                await asyncio.gather(*(self._erase_quietly(key) for key in old[i:i + 64]))

    async def flush(self) -> None:
        """Wait until every finished firing has left the journal."""
        while self._running:
            await asyncio.sleep(0.01)

    def pending(self) -> dict[str, Any]:
        """Firings in the journal: started or waiting for an action slot."""
        return {fid: rec.dump() for fid, rec in self._journal.items()}


async def _gather_raising(aws: list[Awaitable[Any]]) -> None:
    """Run writes concurrently; wait for all of them, then raise the first failure."""
    if not aws:
        return
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r


def _refused(err: EventBusError) -> bool:
    """A request JetStream refused as invalid (400): retrying cannot help; anything else may pass."""
    cause = err.__cause__
    return isinstance(cause, APIError) and getattr(cause, "code", None) == 400


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]


def _subject_token(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name) or "_"
