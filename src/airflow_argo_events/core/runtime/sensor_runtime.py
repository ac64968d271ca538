"""The live sensor: bus -> engine -> actions, with no lost and no duplicate firing.

Invariants (numbered as the code refers to them):

1. A message is acked only after everything it changed is stored: the entries of the
   triggers it touched (compare-and-set on each entry's revision; every trigger has one)
   and the journal of every firing it caused: the firings' own entry when they all belong
   to one, else a journal chunk (see ``state.py`` for the layout).
2. Write order within a batch: event blobs, then journal chunks, then trigger entries
   (each naming the chunks of its firings, or holding them), then acks. A crash at any
   point leaves either the old state (the batch is redelivered and processed again; a chunk
   no entry names is ignored) or committed entries naming stored chunks or holding firings
   (their firings run after restart).
3. A firing leaves the journal only after its action finished (success, or failure after
   retries and the dead-letter action). A crash in between re-runs it after restart with
   the same firing id, which every action passes on as an idempotency key. A firing in
   its entry leaves with the entry's next write, which only the processing loop makes (so
   no compare-and-set of this process races another of its own).
4. A redelivered message is recognised by the stream sequences each entry records in the
   same write that applied it (every trigger's, so no finished firing needs a marker).
   Acks go out unconfirmed (a lost one is such a redelivery); an entry forgets a sequence
   only once its consumer's ack floor on the server has passed it, ACKED_GRACE seconds ago
   (a busy one sooner, at the newest sample: ``state.APPLIED_CAP``). A copy that may
   predate that (a redelivery, a retried batch, one held in a buffer over half of
   ack_wait) is checked against the floors asked then: one already acked on the server is
   skipped.
5. A compare-and-set conflict (another replica wrote first) or a bus error mid-batch
   reloads the touched entries and processes the same batch again on top of them, checking
   every message against them as (4) does: a write whose reply was lost may have been
   stored. Firings the failed attempt journaled run if their trigger entry committed (it
   names their chunk) and are dropped if it did not (``_stored_earlier``).
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
from airflow_argo_events.core.bus.consumer import DeliverFrom, send_acks_unconfirmed
from airflow_argo_events.core.bus.kv import StateConflict, StateTooLarge
from airflow_argo_events.core.events import Event, event_from_json, format_time
from airflow_argo_events.core.exceptions import EventBusError
from airflow_argo_events.core.limits import dumps_compact
from airflow_argo_events.core.observe.decisions import DecisionLog, event_head
from airflow_argo_events.core.observe.metrics import NO_METRICS, Metrics
from airflow_argo_events.core.observe.record import FLUSH_EVERY, OBS_KEY, Observations, outcome_of
from airflow_argo_events.core.observe.status import spec_summary
from airflow_argo_events.core.runtime import state as st
from airflow_argo_events.core.runtime.order import OrderGate
from airflow_argo_events.core.sensor.engine import Engine, Firing
from airflow_argo_events.core.spec.sensor import Sensor

log = logging.getLogger("airflow_argo_events.sensor")

Execute = Callable[[Firing], Awaitable[Any]]
RECENT_FINISHED = 10_000
REWRITE_AFTER = 0.5
"""Seconds a journal chunk with finished and unfinished firings waits for the rest before it is
rewritten without the finished ones (firings of a batch mostly finish together: one erase)."""
HOME_CLEAR_AFTER = 0.05
"""Seconds a finished firing waits in its trigger entry for the entry's next write (a busy
trigger's next batch takes it out for free) before the processing loop writes the entry."""
CHUNK_MARKER_TTL = 1
"""Seconds the server keeps the delete marker of a finished chunk (NATS 2.11+)."""
CLOSED_KEPT = 10_000
"""Names of erased journal chunks remembered, to drop from entries at their next write."""
MAX_BACKOFF = 5.0
DRAIN_IDLE = 1.0
"""Seconds without messages after which emptied correlation keys are removed (a batch does it otherwise)."""
SWEEP_EVERY = 5.0
"""Seconds between two passes of the sweeper (ack floors, old markers) while it has work."""
HOT_SAMPLE = 0.2
"""Seconds between ack floor samples while an entry holds more than APPLIED_CAP sequences."""
PRUNE_AT = 64
"""Applied sequences an entry keeps before the sweeper samples the ack floors to prune them
(one consumer-info request per consumer: 10,000 quiet triggers must not ask every few
seconds; a busy one asks at most every SWEEP_EVERY seconds). APPLIED_CAP bounds them anyway."""
IDLE_SWEEP = 60.0
"""Seconds an idle sensor's sweeper sleeps at most (it wakes sooner when something is due)."""
DRAIN_PER_BATCH = 128
DRAIN_IDLE_BATCH = 512
"""Emptied correlation keys removed beside one batch, and in one idle pass (each is one
JetStream purge request: a few hundred at once keep the server's API responsive)."""


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
        owner: dict[str, str] | None = None,
        metrics: Metrics | None = None,
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
        self._entries: dict[tuple[str, str], st.Entry] = {}  # (trigger, correlation key) -> entry
        self._draining: OrderedDict[tuple[str, str], None] = OrderedDict()  # emptied keyed entries (state.py)
        self._evictions_logged = 0.0
        self._drain_soon = False  # the last pass removed all it could take: more are due
        self._floors: deque[tuple[float, int]] = deque()  # (when, lowest consumer ack floor)
        self._journal: dict[str, st.JournalRecord] = {}
        self._chunks: dict[str, set[str]] = {}  # journal chunk -> its committed firings not yet finished
        # chunks found at start whose other firings a replica may still commit: (revision, those)
        self._keep: dict[str, tuple[int, list[st.JournalRecord]]] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()  # chunks erased (or found gone at start)
        self._chunk_n = 0
        self._to_check: set[str] = set()  # other processes' chunks an emptied key waits on: still there?
        self._built: dict[str, Firing] = {}  # journaled firings with small events, ready to run
        self._finished: OrderedDict[str, None] = OrderedDict()  # recently finished firing ids
        self._loaded_markers: deque[tuple[float, str]] = deque()  # per-firing journal markers, by age
        self._clearing: list[st.JournalRecord] = []  # finished firings to take out of the journal
        # chunks with firings still running: (since when, finished ones) (``_clear_journal``)
        self._partial: dict[str, tuple[float, list[st.JournalRecord]]] = {}
        self._clear_wake = asyncio.Event()
        self._clearer: asyncio.Task[None] | None = None
        # finished firings still in their own entry (state.py), and since when the oldest waits
        self._done_home: dict[tuple[str, str], set[str]] = {}
        self._done_since: dict[tuple[str, str], float] = {}
        self._home_timer: asyncio.TimerHandle | None = None
        self._queue: asyncio.Queue[list[Delivery]] | None = None  # run()'s: a pass of the loop is an empty batch
        self._pass_lock = asyncio.Lock()  # one processing pass at a time: the loop's, or close()'s last one
        self._subs: list[Subscription] = []
        self._gate: OrderGate | None = None  # keeps the stream's order after a crash or reconnect (order.py)
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._actions: set[asyncio.Task[None]] = set()
        self._action_slots = asyncio.Semaphore(max_concurrent_actions)
        self._room = asyncio.Event()
        self._room.set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._stopping = False
        self.instance = uuid.uuid4().hex[:12]
        self._running: set[str] = set()
        self._touched: set[tuple[str, str]] = set()  # (trigger, key) entries the current batch edits
        self._sample_due = asyncio.Event()  # entries wait for the ack floors (to prune or drain): sample them (4)
        self._hot = False  # an entry is over APPLIED_CAP: sample the floors within HOT_SAMPLE
        self._high_seq = 0  # the highest stream sequence received
        self._tops: dict[str, int] = {}  # per trigger, the highest stream sequence any of its entries applied
        self.stats = {"events": 0, "skipped": 0, "firings": 0, "malformed": 0, "conflicts": 0, "poison": 0,
                      "dead_lettered": 0, "bus_errors": 0, "backpressure": 0, "actions_done": 0,
                      "received": 0, "rejected": 0, "actions_ok": 0, "actions_failed": 0, "action_retries": 0,
                      "dlq_triggered": 0}
        """Counters. ``received`` = every message; of those ``malformed`` (not a CloudEvent) and
        ``poison`` (set aside to the dead-letter subject, malformed included); of the events
        processed (``events``), ``rejected`` by every dependency's filters and ``skipped``
        (duplicates: an id seen in the last 60 s, or a redelivered message already applied).
        ``firings`` journaled; their actions ``actions_ok`` / ``actions_failed``, with
        ``action_retries`` failed attempts retried and ``dlq_triggered`` dead-letter triggers run."""
        self.owner = dict(owner or {})
        """Who runs this sensor (``{"kind": "SensorTrigger", "dag_id": ...}``), stored in ``meta``."""
        self.metrics = metrics or NO_METRICS
        self.observations = Observations(self.instance)
        self.decisions = DecisionLog(self.name, log)
        self._notes_task: asyncio.Task[None] | None = None
        if any(self.engine.keyed(t.name) for t in self.engine.triggers):
            self.stats["evicted"] = 0  # correlation keys beyond maxPending (a plain sensor's counters stay Argo's)

    @property
    def store(self) -> StateStore:
        assert self._store is not None, "call start() first"
        return self._store

    # ------------------------------------------------------------------ start

    async def start(self) -> None:
        # retried as every bus call here: a busy JetStream API (10,000 sensors starting) times out
        self._store = await self._retrying("open state", lambda: self.bus.state(self.bucket))
        await self._retrying("load state", self._load)
        consumers = []
        by_key: dict[tuple[str, str], str] = {}
        for source, event in self.engine.listens_to():
            durable = durable_name(self._consumer_prefix, source, event)
            consumers.append(durable)
            by_key[(source, event)] = durable
            # max_ack_pending bounds what is in flight (and what the order gate may hold).
            self._subs.append(await self._retrying(f"create consumer {durable}", lambda d=durable, s=source, e=event:
                self.bus.subscribe(d, s, e, deliver=self._deliver, batch=self._batch, ack_wait=self._ack_wait,
                                   max_ack_pending=self._batch * 2, prefetch=True)))
        self._gate = OrderGate(self._subs, ack_wait=self._ack_wait, reconnects=lambda: self.bus.reconnects,
                               name=self.name)
        meta = st.meta_doc(self.name, self.bus.stream.name, self.bucket, consumers,
                           [t.name for t in self.engine.triggers], st.definition_hash(self.sensor.dump()))
        # What ``sensor status`` needs without the manifest: conditions, dependencies, consumers.
        meta["spec"] = spec_summary(self.engine, by_key)
        if self.owner:
            meta["owner"] = self.owner
        for t in self.engine.triggers:
            self.metrics.init_sensor(self.name, t.name)
        await self._retrying("store meta", lambda: self.store.put("meta", meta))
        recovered = [r for r in self._journal.values() if r.recovered]
        if recovered:
            log.warning("sensor %s: re-running %d firing(s) left in the journal", self.name, len(recovered))
        self._update_room()

    async def _load(self) -> None:
        store = self.store
        self._entries.clear()
        self._draining.clear()
        for t in self.engine.triggers:
            self.engine.clear(t.name)
        if getattr(store, "created", False):  # a bucket created by this start holds nothing: spare 7 reads
            return
        await self._migrate_v1()
        known = {t.name for t in self.engine.triggers}
        clock: str | None = None
        async for e in store.scan("s.>"):
            if e.deleted:
                continue
            doc = st.loads_strict(e.value)
            trigger = doc.get("trigger")
            if trigger not in known:
                log.info("sensor %s: dropping saved state of trigger %r (not in the spec any more)", self.name, trigger)
                await store.erase(e.key)
                continue
            entry = st.Entry.parse(doc, e.revision)
            await self._restore(entry)
            self._entries[(trigger, entry.corr)] = entry
            for rec in st.entry_records(entry):  # (3) its own journal: committed with the entry
                if rec.firing_id not in self._journal:
                    await self._recover(rec, known)
            if entry.dirty:  # a firing dropped from it: the first pass writes it without
                self._done_home.setdefault((trigger, entry.corr), set())
                self._done_since[(trigger, entry.corr)] = 0.0
            if entry.clock and (clock is None or entry.clock > clock):
                clock = entry.clock
        self.engine.clock = datetime.fromisoformat(clock.replace("Z", "+00:00")) if clock else None
        # (2) a chunk's firing counts only when its own entry names the chunk
        named: dict[str, set[tuple[str, str]]] = {}
        for slot, entry in self._entries.items():
            for name in entry.batches:
                named.setdefault(name, set()).add(slot)
        now = time.time()
        young: list[st.JournalRecord] = []  # unnamed chunks that may be a replica's, mid-batch
        async for e in store.scan("j.>"):
            name = st.chunk_name(e.key)
            age = now - e.created.timestamp() if e.created else 0.0
            if name is not None:
                if e.deleted:
                    await store.erase(e.key)
                    continue
                recs = st.parse_chunk(st.loads_strict(e.value), name)
                slots = named.pop(name, set())
                if not slots and age <= st.ORPHAN_AGE:
                    young += recs
                    continue
                for rec in recs:
                    if (rec.trigger, rec.corr) in slots and rec.firing_id not in self._journal:
                        await self._recover(rec, known)
                others = [r for r in recs if (r.trigger, r.corr) not in slots]
                if others and age <= st.ORPHAN_AGE:
                    # a replica may be between this chunk's entries' writes (one named it, another
                    # not yet): when ours are done the chunk is rewritten with these, not erased
                    self._keep[name] = (e.revision, others)
                    young += others
                if name not in self._chunks and name not in self._keep:  # nothing committed, or left
                    await store.erase(e.key)
                continue
            if e.deleted:  # a marker of the per-firing journal (before chunks)
                if age > st.TOMBSTONE_AGE:
                    await store.erase(e.key)
                else:
                    self._finished[e.key[2:]] = None
                    # erased at its age (one written with a TTL is gone by then: a purge of nothing)
                    self._loaded_markers.append((now - age, e.key))
                continue
            rec = st.JournalRecord.parse(st.loads_strict(e.value))
            if rec.firing_id not in self._journal:
                await self._recover(rec, known)
        self._closed.update(dict.fromkeys(named))  # named, but erased: dropped at the entries' next write
        owned = {r.blob for en in self._entries.values() for r in en.refs.values() if r.blob}
        owned |= {r.blob for rec in (*self._journal.values(), *young) for r in rec.refs.values() if r.blob}
        # left by a crash between a blob write and the write that referred to it; a young one
        # may be a replica's, between its blob and its chunk or entry
        orphans = [e.key async for e in store.scan("e.>", values=False)
                   if e.key not in owned and (not e.created or now - e.created.timestamp() > st.ORPHAN_AGE)]
        for key in orphans:
            await store.erase(key)

    async def _recover(self, rec: st.JournalRecord, known: set[str]) -> None:
        """A committed firing found in the journal at start: it runs again (3)."""
        if rec.trigger not in known:
            log.error("sensor %s: journal firing %s belongs to trigger %r, which is not in the spec any more; "
                      "dropped", self.name, rec.firing_id, rec.trigger)
            await self._forget(rec, journal=rec.batch is None)
            return
        self._journal[rec.firing_id] = rec
        if rec.batch is not None:
            self._chunks.setdefault(rec.batch, set()).add(rec.firing_id)
        self._ready.put_nowait(rec.firing_id)

    async def _restore(self, entry: st.Entry) -> None:
        """Put one stored entry's events back into the engine (a keyed entry left empty waits
        in ``_draining`` until what it applied is settled)."""
        trigger, corr = entry.trigger, entry.corr
        top = max((max(seqs) for seqs in entry.applied.values() if seqs), default=0)
        if top > self._tops.get(trigger, 0):
            self._tops[trigger] = top
        if not self.engine.stateful(trigger):  # its entry records what it applied, and chunks
            entry.refs = {}  # saved when its condition had an "&&" (a blob left so goes as an orphan)
            return
        events = {d: await st.resolve(self.store, r) for d, r in entry.refs.items()}
        self.engine.restore(trigger, events, corr, entry.counted_times())
        saved = self.engine.saved(trigger, corr)
        entry.refs = {d: r for d, r in entry.refs.items() if d in saved}
        if self.engine.keyed(trigger) and not entry.refs:
            self._draining[(trigger, corr)] = None
            self._sample_due.set()

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
        self._queue = queue
        if self._done_since:  # entries to write out (found so at start, or left by an earlier run)
            queue.put_nowait([])
        gate = self._gate
        assert gate is not None

        async def release(held: list[Delivery]) -> None:
            for i in range(0, len(held), self._batch):
                await queue.put(held[i:i + self._batch])

        fetchers = [asyncio.create_task(self._fetch(sub, queue, stop)) for sub in self._subs]
        fetchers.append(asyncio.create_task(self._keep_running("order gate", lambda: gate.run(release))))
        self._stopping = False
        self._dispatcher = asyncio.create_task(self._dispatch())
        sweeper = asyncio.create_task(self._keep_running("sweep", self._sweep))
        self._notes_task = asyncio.create_task(self._write_notes())
        stopper = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED,
                                             timeout=(0.01 if self._drain_soon else DRAIN_IDLE)
                                             if self._draining else None)
                if not done:  # idle, with emptied correlation keys to remove (state.py)
                    getter.cancel()
                    await self._handle([], stop)
                    continue
                if getter not in done:
                    getter.cancel()
                    break
                batch = getter.result()
                if not queue.empty():
                    while not queue.empty() and len(batch) < self._batch * 4:
                        batch.extend(queue.get_nowait())
                    # batches of several consumers: take them in the stream's order
                    batch.sort(key=lambda d: d.stream_seq)
                await self._handle(batch, stop)
        finally:
            self._queue = None
            with contextlib.suppress(Exception):  # the last batches' acks leave the client's buffer
                await asyncio.wait_for(self.bus.nc.flush(), timeout=2)
            self._stopping = True
            for t in (*fetchers, stopper, sweeper):
                t.cancel()
            await asyncio.wait({*fetchers, stopper, sweeper}, timeout=10)
            self.decisions.flush()

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
        if self._clearer is not None:  # the finished firings' journal entries (bounded: the bus may be away)
            _, late = await asyncio.wait({self._clearer}, timeout=5)
            for t in late:
                t.cancel()
            self._clearer = None
        if self._home_timer is not None:
            self._home_timer.cancel()
            self._home_timer = None
        if self._done_home and self._store is not None:
            # finished firings in their entries: one last pass writes them out (bounded: a
            # firing left in runs again after a restart, with the same id (3))
            self._done_since = dict.fromkeys(self._done_since, 0.0)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._handle([], asyncio.Event()), timeout=5)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        if self._notes_task is not None:
            self._notes_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._notes_task
            self._notes_task = None
        if self._store is not None:
            await self._store_notes()  # the last outcomes, for 'sensor status' after the stop

    # ------------------------------------------------------------------ what status reads

    async def _write_notes(self) -> None:
        """Store the observations (``obs``) at most once every FLUSH_EVERY seconds, when changed."""
        while True:
            await self.observations.changed()  # an idle sensor does not wake
            await asyncio.sleep(FLUSH_EVERY)
            await self._store_notes()

    async def _store_notes(self) -> None:
        obs = self.observations
        if not obs.dirty:
            return
        obs.dirty = False
        try:
            await self.store.put_raw(OBS_KEY, dumps_compact(obs.dump(self.stats)))
        except EventBusError as err:  # advisory: tried again with the next change
            obs.dirty = True
            log.debug("sensor %s: could not store its notes for 'sensor status' (%s)", self.name, err)

    def note_attempt(self, firing: Firing, attempt: int, ok: bool, detail: str) -> None:
        """An action attempt ended (the executor calls this): shown by ``sensor status``."""
        self.observations.attempt(firing.id, firing.trigger, attempt, ok, detail)

    def summary(self) -> str:
        """The counters in words, for the line a sensor logs when it stops."""
        s = self.stats
        return (f"received {s['received']} message(s): {s['events']} event(s) processed, {s['rejected']} rejected "
                f"by filters, {s['skipped']} duplicate(s), {s['malformed']} malformed; {s['poison']} set aside "
                f"(dead-letter subject); {s['firings']} firing(s); actions: {s['actions_ok']} succeeded, "
                f"{s['actions_failed']} failed ({s['action_retries']} attempt(s) retried, {s['dlq_triggered']} "
                f"dead-letter trigger(s) run)")

    async def _fetch(self, sub: Subscription, queue: asyncio.Queue[list[Delivery]], stop: asyncio.Event) -> None:
        pause = 0.1
        gate = self._gate
        assert gate is not None
        while not stop.is_set():
            if not self._room.is_set():  # (7) back-pressure: actions are behind
                self.stats["backpressure"] += 1
                await self._room.wait()
                continue
            epoch = gate.epoch
            try:
                got = await sub.fetch(self._batch, timeout=self._idle_poll)
                pause = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as err:  # NATS away: keep trying, never give up
                self.stats["bus_errors"] += 1
                gate.close()  # a batch in flight may be lost: what comes next waits for it (order.py)
                log.warning("sensor %s: fetch from %s failed (%s); retrying", self.name, sub.subject, err)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_BACKOFF)
                continue
            if got and not gate.took(got, epoch):
                async with gate.lock:
                    await queue.put(got)

    async def _keep_running(self, what: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a loop that should run until cancelled; restart it after an unexpected error.

        The order gate's loop holds every fetched message while it is closed: were it to die
        silently (an error nobody expected from a client library), the sensor would stop firing
        with no line in its log. One line per failure instead, and it goes on.
        """
        pause = 0.1
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self.stats["bus_errors"] += 1
                log.error("sensor %s: %s failed (%s: %s); restarting it in %.1fs", self.name, what,
                          type(err).__name__, err, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_BACKOFF)

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
        async with self._pass_lock:
            await self._process(batch, stop)

    async def _process(self, batch: list[Delivery], stop: asyncio.Event,
                       earlier: list[st.JournalRecord] | None = None) -> None:
        """Process and store one batch, retrying until it is stored; then start its firings,
        ack it and set its poison aside. ``earlier``: journal records of failed attempts at
        these messages (the one-at-a-time fallback below)."""
        pause = 0.1
        if batch:
            self._high_seq = max(self._high_seq, max(d.stream_seq for d in batch))
        # Journal records staged by failed attempts at this batch: a write whose reply was lost
        # may have been stored, and the next attempt, seeing its messages applied, stages nothing.
        attempted: list[st.JournalRecord] = list(earlier or [])
        retry = bool(attempted)
        while True:
            try:
                spawn, poison, observed = await self._apply(batch, attempted if retry else None, attempted)
                break
            except StateTooLarge as err:  # a bug if it happens: every value is bounded below max payload
                log.error("sensor %s: state entry too large (%s); processing messages one at a time", self.name, err)
                await self._recover_touched()
                if len(batch) == 1:  # a write of the failed attempt may have been stored: its firings run
                    spawn, poison, observed = self._adopt(self._stored_earlier(attempted)), \
                        {id(batch[0]): f"state too large: {err}"}, []
                    self.stats["poison"] += 1
                    break
                for i, d in enumerate(batch):  # the first pass takes up what the failed attempt stored
                    await self._process([d], stop, attempted if i == 0 else None)
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
            retry = True
        # Journaled: the firings may start now, while the acks go out (a crash before they are
        # confirmed redelivers the messages, whose firings are recognised by their journal entries (4)).
        for fid in spawn:
            if self._ready.empty() and not self._action_slots.locked() and fid in self._journal:
                await self._action_slots.acquire()  # free: returns at once
                self._launch(self._journal[fid])  # nothing waits before it: skip the dispatcher's hop
            else:
                self._ready.put_nowait(fid)
        acked = [d for d in batch if id(d) not in poison]
        if acked:
            # Acks are not confirmed one by one (no AckSync): a lost ack is a redelivery,
            # which (4) absorbs, and what counts as settled comes from the consumers' ack
            # floors on the server (_sample_ack_floor), never from an ack this process sent.
            failed = await send_acks_unconfirmed(acked, self.bus.pipeline())
            if failed is not None and not self._stopping:
                log.info("sensor %s: acks could not be sent (%s); those messages will be redelivered and "
                         "skipped", self.name, failed)
            if self._gate is not None:
                self._gate.settled(acked)
        poisoned = [d for d in batch if id(d) in poison]
        for d in poisoned:
            await self._dead_letter(d, poison[id(d)], stop)
        if self._gate is not None and poisoned:
            self._gate.settled(poisoned)
        if self._on_processed is not None and observed:
            self._on_processed(observed)
        self._update_room()

    async def _recover_touched(self) -> None:
        """After a failed batch: reload the entries it touched from KV (waiting out a bus
        outage), and forget the event ids it marked seen, so it can be processed again."""
        self.engine.rollback_seen()
        self.engine.take_dirty()
        # correlated keys the failed batch changed in the engine (evictions, expiry) come back too
        touched = set(self._touched) | self.engine.take_dirty_keys()

        done: set[tuple[str, str]] = set()  # a lost reply costs one read again, not all of them

        async def reload() -> None:
            for trigger, corr in touched:
                if (trigger, corr) in done:
                    continue
                key = st.entry_key(trigger, corr)
                data, rev = await self._retrying("reload state", lambda k=key: self.store.get_raw(k))
                self._draining.pop((trigger, corr), None)
                if data is None:
                    self._entries.pop((trigger, corr), None)
                    self.engine.restore(trigger, {}, corr)
                else:
                    entry = st.Entry.parse(st.loads_strict(data), rev)
                    await self._restore(entry)  # may read blobs: a failure retries this slot
                    self._entries[(trigger, corr)] = entry
                done.add((trigger, corr))

        await self._retrying("reload state", reload)

    async def _apply(self, batch: list[Delivery], earlier: list[st.JournalRecord] | None,
                     attempted: list[st.JournalRecord]) -> tuple[list[str], dict[int, str], list[Any]]:
        """Process a batch and store its effects (1)(2). Returns firings to start, poison
        messages (by id) with their reasons, and what ``on_processed`` wants to see.

        ``earlier`` is None on the first attempt; on a retry, the journal records that failed
        attempts staged (this one adds its own to ``attempted``). A retry checks every message
        against the reloaded entries (4), as for a redelivery: a write of the failed attempt
        may have been stored with its reply lost."""
        stored_earlier = self._stored_earlier(earlier) if earlier else {}
        # (4) A copy may be older than what the ack floors have let the entries forget:
        # held in a buffer (back-pressure) or across this batch's failed attempts past ack_wait,
        # the server sent the message again, and whoever got it may have acked it long ago. A
        # redelivery, a retry and a copy held over half of ack_wait are checked against the
        # floors asked now; one already acked on the server is skipped.
        held = time.monotonic() - self._ack_wait / 2
        stale = await self._acked_copies(batch if earlier is not None else
                                         [d for d in batch if d.num_delivered > 1 or d.received < held])
        engine = self.engine
        engine.begin()
        engine.take_dirty()
        engine.take_dirty_keys()
        self._touched.clear()
        blobs: dict[str, bytes] = {}
        new_journal: dict[str, st.JournalRecord] = {}
        released: list[str] = []  # blobs whose owner let go: erased after the batch is stored
        # Entries are edited on copies, so a failed batch leaves the committed ones untouched.
        work: dict[tuple[str, str], st.Entry] = {}
        poison: dict[int, str] = {}
        observed: list[Any] = []
        counts = {"events": 0, "skipped": 0, "malformed": 0, "firings": 0, "rejected": 0, "received": len(batch)}
        built: dict[str, Firing] = {}
        decisions = self.decisions
        decisions.refresh()
        lines: list[tuple[Any, str, list[str]]] = []  # written once the batch is stored: one per event
        notes = self.observations
        at = time.time()
        created = format_time(utcnow())  # the journal entries' time: one per batch

        def entry(trigger: str, corr: str = st.NO_CORRELATION) -> st.Entry:
            slot = (trigger, corr)
            if slot not in work:
                old = self._entries.get(slot)
                w = work[slot] = old.copy() if old is not None else st.Entry(trigger, corr)
                self._touched.add(slot)
                for fid in self._done_home.get(slot, ()):  # finished: they leave with this write
                    w.firings.pop(fid, None)
            return work[slot]

        tops = self._tops

        def applied_before(trigger: str, deps: list[str], seq: int, ev: Event) -> bool:
            """(4) Did this trigger apply the message already? A correlated trigger looks in
            the entries of the keys the event has."""
            if not engine.correlated(trigger):
                return entry(trigger).already_applied(deps, seq)
            try:
                keys = engine.keys_for(ev).get(trigger, set())
            except Exception:  # the event's own processing below meets the same error (6)
                return False
            for k in keys:
                e = work.get((trigger, k)) or self._entries.get((trigger, k))
                if e is not None and e.already_applied(deps, seq):
                    return True
            return False

        for d in batch:
            ev = d.event
            if id(d) in stale:
                counts["skipped"] += 1
                continue
            if ev is None:
                counts["malformed"] += 1
                poison[id(d)] = f"not a CloudEvent: {d.error}"
                continue
            seq = d.stream_seq
            skip: set[str] = set()
            # (4) Which triggers applied it already? Asked of every message, not only of those
            # the server counts as redelivered: a copy whose first delivery went to a process
            # that stopped may come again counted as a first one (seen on NATS 2.9).
            for trigger, deps in engine.triggers_for(ev.source, ev.subject):
                if seq <= tops.get(trigger, 0) and applied_before(trigger, deps, seq, ev):
                    skip.add(trigger)
            # One decision line per event (rate-limited): the engine words it only when asked.
            key = (ev.source, ev.subject)
            decide = decisions.wants(key) if decisions.info else False
            own_explain = decide and engine.explain is None
            if own_explain:
                engine.explain = []
            elif engine.explain is not None:
                engine.explain.clear()
            dup_before = engine.duplicates
            try:
                fired = engine.process(ev, self._clock(), skip)
                staged = self._stage(ev, seq, fired, entry, blobs, new_journal, released, created, d.raw)
                built.update((f.id, f) for f in fired if f.id in staged)
            except EventBusError:
                raise
            except Exception as err:  # (6) this message only
                poison[id(d)] = f"{type(err).__name__}: {err}"
                if own_explain:
                    engine.explain = None
                continue
            counts["events"] += 1
            verdicts = engine.verdicts
            duplicate = bool(skip) or engine.duplicates != dup_before
            if duplicate:
                counts["skipped"] += 1
                if not verdicts:
                    for _, deps in engine.triggers_for(ev.source, ev.subject):
                        for dep in deps:
                            notes.saw(dep, ev, at, "duplicate")
            if verdicts:
                passed = False
                for dep, (out, why) in verdicts.items():
                    notes.saw(dep, ev, at, why if out is None else "")
                    passed = passed or out is not None
                if not passed:
                    counts["rejected"] += 1
            if decide:
                head = event_head(ev)
                if decisions.debug:  # every event, with the details
                    head += f" type={ev.type} time={format_time(ev.time)} seq={seq} delivered={d.num_delivered}"
                lines.append((key, head, list(engine.explain or [])))
            if own_explain:
                engine.explain = None
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
        # Correlated keys: bring each changed key's entry in line with the engine (fired,
        # expired, evicted, reset, or threshold counts moved on).
        for trigger, corr in engine.take_dirty_keys():
            e = entry(trigger, corr)
            saved = engine.saved(trigger, corr)
            for dep in [d for d, r in e.refs.items() if d not in saved or saved[d].id != r.id]:
                ref = e.refs.pop(dep)
                if ref.blob:
                    released.append(ref.blob)
            e.counted = {d: [[i, format_time(t)] for i, t in q] for d, q in engine.counted(trigger, corr).items()}
        if self._done_since:  # entries whose finished firings waited long enough: written now
            due = time.monotonic() - HOME_CLEAR_AFTER
            for slot, since in list(self._done_since.items()):
                if since <= due:
                    if slot in self._entries:
                        entry(*slot)
                    else:  # the entry is gone (never stored, or erased): nothing to take out
                        self._cleared_home(slot, set())
        clock = format_time(engine.clock) if engine.clock else None
        store = self.store
        attempted.extend(new_journal.values())
        # (2) blobs, then journal, then entries; each group sent at once and confirmed together.
        if blobs:
            _raise_first(await store.put_many([(k, v, None) for k, v in blobs.items()]))
        fresh = await self._journal_create(new_journal, work) if new_journal else set()
        changed = [(t, e) for t, e in work.items() if self._entry_changed(t, e)]
        floor = self._settled_floor()
        latest = self._floors[-1][1] if self._floors else 0
        for _, e in changed:  # only entries written anyway: pruning never costs a write
            e.clock = clock
            e.prune(floor)
            if e.batches:  # erased chunks' names go; this batch's, and others' unknown to us, stay
                e.batches = [b for b in e.batches if b in fresh or self._open(b)]
            hot, dropped = e.bound(latest)
            if dropped:
                log.warning("sensor %s trigger %s: forgot %d applied message(s) unconfirmed (the ack floors "
                            "could not be asked); a redelivery of them is checked against the server", self.name,
                            e.trigger, dropped)
            if hot:
                self._hot = True
                self._sample_due.set()
            elif not self._sample_due.is_set() and any(len(seqs) >= PRUNE_AT for seqs in e.applied.values()):
                self._sample_due.set()
        # A keyed entry with nothing saved, nothing unsettled and no chunk goes (no marker
        # left); one with unsettled sequences is written empty and drained later (state.py).
        gone = [(slot, e) for slot, e in changed
                if not e.refs and not e.applied and not e.batches and not e.firings and engine.keyed(slot[0])]
        changed = [(slot, e) for slot, e in changed
                   if e.refs or e.applied or e.batches or e.firings or not engine.keyed(slot[0])]
        erase_now = [(slot, e) for slot, e in gone if e.revision]  # revision 0: never stored
        drained = self._drained(floor, work)
        writes = [(st.entry_key(*slot), e.encode(), e.revision) for slot, e in changed]
        erasing = (*erase_now, *drained)
        if erasing:
            put_results, erase_results = await asyncio.gather(
                store.put_many(writes),
                asyncio.gather(*(store.erase(st.entry_key(*slot), e.revision) for slot, e in erasing),
                               return_exceptions=True))
        else:
            put_results, erase_results = (await store.put_many(writes) if writes else []), []
        revs, erased = put_results, erase_results[:len(erase_now)]
        # an emptied key that could not be removed now stays in _draining for a later pass
        gone += [d for d, r in zip(drained, erase_results[len(erase_now):], strict=True)
                 if not isinstance(r, BaseException)]
        failed: BaseException | None = None
        for (slot, e), rev in zip(changed, revs, strict=True):
            if isinstance(rev, BaseException):
                failed = failed or rev
            else:
                e.revision = rev
                self._entries[slot] = e
        failed = failed or next((r for r in erased if isinstance(r, BaseException)), None)
        if failed is not None:
            raise failed
        for slot, e in work.items():
            self._entries[slot] = e
            if engine.keyed(slot[0]):
                if e.refs:
                    self._draining.pop(slot, None)
                else:
                    self._draining[slot] = None
                    self._sample_due.set()
        for slot, _ in gone:
            self._entries.pop(slot, None)
            self._draining.pop(slot, None)
        if self._done_home:
            for slot, e in work.items():
                if slot in self._done_home:
                    self._cleared_home(slot, e.firings.keys())
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
            if rec.batch is not None:
                self._chunks.setdefault(rec.batch, set()).add(fid)
            spawn.append(fid)
        spawn += self._adopt({f: r for f, r in stored_earlier.items() if f not in new_journal})
        if earlier:
            self._settle_earlier(earlier)
        for k, v in counts.items():
            self.stats[k] += v
        self._log_evictions()
        for key, head, said in lines:
            decisions.write(key, head, said)
        m = self.metrics
        if m is not NO_METRICS:
            processed = counts["events"] - counts["rejected"] - counts["skipped"]
            for decision, n in (("accepted", processed), ("rejected", counts["rejected"]),
                                ("duplicate", counts["skipped"]), ("malformed", counts["malformed"])):
                m.sensor_events(self.name, decision, n)
        for key in released:
            asyncio.ensure_future(self._erase_quietly(key))
        for d in batch:
            if id(d) in poison:
                self.stats["poison"] += 1
        self._arm_home()
        return spawn, poison, observed

    def _cleared_home(self, slot: tuple[str, str], kept: Any) -> None:
        """``slot``'s entry is stored holding only ``kept`` of its firings: the finished ones not
        among them have left the journal (3)."""
        done = self._done_home.get(slot, set())
        out = [fid for fid in done if fid not in kept]
        done.difference_update(out)
        if not done:
            self._done_home.pop(slot, None)
            self._done_since.pop(slot, None)
        for fid in out:
            rec = self._journal.pop(fid, None)
            self._built.pop(fid, None)
            if rec is not None and any(ref.blob for ref in rec.refs.values()):
                asyncio.ensure_future(self._forget(rec))

    def _arm_home(self) -> None:
        """Wake the processing loop when the oldest finished firing in an entry is due."""
        if self._home_timer is not None or not self._done_since:
            return
        delay = min(self._done_since.values()) + HOME_CLEAR_AFTER - time.monotonic()
        self._home_timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._poke_home)

    def _poke_home(self) -> None:
        self._home_timer = None
        if self._queue is not None and self._done_since:
            with contextlib.suppress(asyncio.QueueFull):  # full: a batch is coming, which does it
                self._queue.put_nowait([])

    async def _acked_copies(self, suspects: list[Delivery]) -> set[int]:
        """The deliveries (by id) whose message is acked on the server already: at or below its
        consumer's ack floor, asked now (one consumer-info request per consumer, only for
        batches with redelivered or retried messages). Such a copy was handled by someone, and
        the entries that recognised it may have forgotten it (4)."""
        if not suspects:
            return set()
        subs = {sub.durable: sub for sub in self._subs}
        floors: dict[str, int] = {}
        for consumer in {d.consumer for d in suspects}:
            sub = subs.get(consumer)
            if sub is not None:
                floors[consumer] = _settled_upto(await sub.info())
        return {id(d) for d in suspects if d.stream_seq <= floors.get(d.consumer, 0)}

    def _stored_earlier(self, earlier: list[st.JournalRecord]) -> dict[str, st.JournalRecord]:
        """Firings that failed attempts at this batch journaled and whose own entry, reloaded,
        names their chunk: that entry's write was stored (its reply perhaps lost), so the retry
        sees their messages applied and does not stage them again; they are returned, to run.
        The others have not committed (yet: a write whose reply was lost may still be stored
        after the reload, on a cluster); their chunks stay until this batch is stored, when
        ``_settle_earlier`` erases those no entry names."""
        out = {}
        for rec in earlier:
            name = rec.batch
            e = self._entries.get((rec.trigger, rec.corr))
            if e is None or self._known(rec.firing_id):
                continue
            if rec.home is not None:  # journaled in the entry itself: there, or not stored
                if rec.firing_id not in e.firings:
                    continue
            elif name is None or name not in e.batches:
                continue
            else:
                self._chunks.setdefault(name, set())  # the retry's writes keep naming it
            for ref in rec.refs.values():
                if ref.blob:
                    ref.event = None  # read back from its blob when the firing runs
            out[rec.firing_id] = rec
        return out

    def _adopt(self, stored: dict[str, st.JournalRecord]) -> list[str]:
        """Take up firings a failed attempt stored (``_stored_earlier``): returns those to start."""
        out = []
        for fid, rec in stored.items():
            if self._known(fid):
                continue
            self._journal[fid] = rec
            if rec.batch is not None:
                self._chunks.setdefault(rec.batch, set()).add(fid)
            self.stats["firings"] += 1
            out.append(fid)
        return out

    def _settle_earlier(self, earlier: list[st.JournalRecord]) -> None:
        """This batch is stored: erase the chunks of its failed attempts that hold nothing to
        run here. Safe now: every entry those attempts wrote was reloaded and written again
        since (or shows their write), so a late write of theirs can no longer be stored."""
        for name in {r.batch for r in earlier if r.batch is not None}:
            if self._chunks.get(name):
                continue
            self._chunks.pop(name, None)
            self._closed[name] = None
            asyncio.ensure_future(self._erase_quietly(st.chunk_key(name)))

    def _drained(self, floor: int, work: dict[tuple[str, str], st.Entry]) -> list[tuple[tuple[str, str], st.Entry]]:
        """Emptied keyed entries whose applied sequences are all settled now and whose chunks
        are erased (oldest first; a few beside each batch, more when idle). One naming another
        process's chunk waits aside, without holding up the others."""
        out: list[tuple[tuple[str, str], st.Entry]] = []
        limit = DRAIN_PER_BATCH if work else DRAIN_IDLE_BATCH
        waiting = 0
        for slot in self._draining:
            e = self._entries.get(slot)
            if slot in work or e is None:
                continue
            foreign = [b for b in e.batches if self._open(b) and not self._mine(b)]
            if foreign:  # the sweeper asks whether those chunks are still there
                if len(self._to_check) < 64:
                    self._to_check.update(foreign)
                continue
            if all(q <= floor for seqs in e.applied.values() for q in seqs) and not any(map(self._open, e.batches)) \
                    and not e.firings:
                out.append((slot, e))
            else:
                waiting += 1
            if len(out) >= limit or waiting >= 64:
                break
        self._drain_soon = len(out) >= limit
        return out

    def _log_evictions(self) -> None:
        """maxPending evictions: counted, and one warning line (then at most one a minute)."""
        evicted = self.engine.take_evictions()
        if not evicted:
            return
        total = sum(evicted.values())
        self.stats["evicted"] = self.stats.get("evicted", 0) + total
        now = time.monotonic()
        if now - self._evictions_logged >= 60.0 or not self._evictions_logged:
            self._evictions_logged = now
            log.warning("sensor %s: evicted %d pending correlation key(s) (%s) beyond maxPending; %d in all",
                        self.name, total, ", ".join(f"trigger {t}: {n}" for t, n in evicted.items()),
                        self.stats["evicted"])

    def _stage(self, ev: Event, seq: int, fired: list[Firing], entry: Callable[..., st.Entry],
               blobs: dict[str, bytes], new_journal: dict[str, st.JournalRecord], released: list[str],
               created: str, raw: bytes | None = None) -> set[str]:
        """Record in the working copies what one processed event changed; returns new firing ids.
        ``raw``: the message's payload when it reads back as ``ev`` (stored as it came)."""
        engine = self.engine
        staged: set[str] = set()
        for trigger, dep, firing, corr in engine.applied:
            e = entry(trigger, corr)  # every trigger's: its write claims the message (4)
            e.saw(dep, seq)
            if seq > self._tops.get(trigger, 0):
                self._tops[trigger] = seq
            if firing is None:
                saved = engine.saved(trigger, corr).get(dep)
                if saved is None:  # a later dependency of the same event fired with it
                    continue
                old = e.refs.get(dep)
                ref, blob = st.new_ref(saved, seq, f"{trigger}/{e.corr}/{dep}", raw if saved is ev else None)
                if blob:
                    blobs[blob[0]] = blob[1]
                if old is not None and old.blob and old.blob != ref.blob:
                    released.append(old.blob)
                e.refs[dep] = ref
                continue
            refs: dict[str, st.Ref] = {}
            for d, fev in firing.events.items():
                old = e.refs.pop(d, None)
                if old is not None and old.id == fev.id and d != dep:
                    refs[d] = old  # the saved event moves from the trigger's entry to the journal
                    continue
                if old is not None and old.blob:
                    released.append(old.blob)
                ref, blob = st.new_ref(fev, seq, f"j:{firing.id}:{d}", raw if fev is ev else None)
                if blob:
                    blobs[blob[0]] = blob[1]
                refs[d] = ref
            for d in list(e.refs):  # the engine fired with every saved event; nothing stays
                old = e.refs.pop(d)
                if old.blob:
                    released.append(old.blob)
            if self._known(firing.id) or firing.id in new_journal:
                log.info("sensor %s trigger %s: firing %s is already journaled or done; not run again",
                         self.name, trigger, firing.id)
                continue
            new_journal[firing.id] = st.JournalRecord(firing.id, trigger, corr, refs, created,
                                                      key=firing.key, counted=firing.counted)
            staged.add(firing.id)
        return staged

    def _known(self, fid: str) -> bool:
        return fid in self._journal or fid in self._finished or fid in self._running

    def _entry_changed(self, slot: tuple[str, str], e: st.Entry) -> bool:
        old = self._entries.get(slot)
        return old is None or old.refs != e.refs or old.applied != e.applied or old.revision == 0 \
            or old.counted != e.counted or old.batches != e.batches or old.firings.keys() != e.firings.keys() \
            or old.dirty

    async def _journal_create(self, new_journal: dict[str, st.JournalRecord],
                              work: dict[tuple[str, str], st.Entry]) -> set[str]:
        """Journal a batch's firings in chunks of at most CHUNK_BYTES, each created once
        (revision 0, a name never used before), and name each chunk in the entries of its
        firings' triggers (2). Returns the chunks' names. A batch whose firings all belong to
        one entry of a trigger without correlation keys goes into that entry instead, when it
        fits (state.py): no chunk at all."""
        recs = list(new_journal.values())
        datas = [r.encode() for r in recs]
        for rec, data in zip(recs, datas, strict=True):
            rec.data = data  # kept: an entry or chunk rewritten without finished firings reuses it
        slot = (recs[0].trigger, recs[0].corr)
        if slot[1] == st.NO_CORRELATION and all((r.trigger, r.corr) == slot for r in recs):
            home = work[slot]
            if sum(map(len, datas)) + sum(map(len, home.firings.values())) <= st.ENTRY_JOURNAL_MAX:
                for rec, data in zip(recs, datas, strict=True):
                    rec.home = slot
                    home.firings[rec.firing_id] = data
                return set()
        chunks: list[tuple[str, list[bytes]]] = []
        size = 0
        for rec, data in zip(recs, datas, strict=True):
            if not chunks or size + len(data) > st.CHUNK_BYTES:
                self._chunk_n += 1
                chunks.append((f"{self.instance}.{self._chunk_n}", []))
                size = 0
            name, records = chunks[-1]
            records.append(data)
            size += len(data) + 1
            rec.batch = name
            names = work[(rec.trigger, rec.corr)].batches
            if name not in names:
                names.append(name)
        _raise_first(await self.store.put_many(  # all were tried; on failure the batch is processed again (5)
            [(st.chunk_key(name), st.encode_chunk(name, records), 0) for name, records in chunks]))
        return {name for name, _ in chunks}

    def _open(self, name: str) -> bool:
        """May a chunk an entry names still hold firings to run? This process's, while it does;
        another process's, unless this one erased it (after recovering it at start)."""
        if name in self._chunks:
            return True
        if name in self._closed:
            return False
        return not self._mine(name)

    def _mine(self, name: str) -> bool:
        return name.startswith(self.instance + ".")

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
            self._launch(rec)

    def _launch(self, rec: st.JournalRecord) -> None:
        """Run one journaled firing's action (an action slot is taken)."""
        self._running.add(rec.firing_id)
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
                    firing = self.engine.build_firing(rec.trigger, events, rec.key, rec.counted)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the spec changed under the journal, or a template fails now
                log.error("sensor %s trigger %s: journal firing %s cannot be rebuilt (%s); dropped", self.name,
                          rec.trigger, rec.firing_id, _one_line(f"{type(err).__name__}: {err}"))
                firing = None
            outcome: tuple[bool, str, int, int | None, str] = (False, "not run: cannot be rebuilt", 0, None, "")
            if firing is not None:
                if firing.id != rec.firing_id:  # the spec changed under the journal: keep the recorded id
                    import dataclasses

                    firing = dataclasses.replace(firing, id=rec.firing_id)
                self.observations.started(rec.firing_id, rec.trigger)
                try:
                    result = await self._execute(firing)
                    outcome = outcome_of(result)
                    if getattr(result, "dlq", None) is not None:
                        self.stats["dlq_triggered"] += 1
                except asyncio.CancelledError:
                    raise  # stays in the journal (3)
                except Exception as err:
                    log.exception("sensor %s trigger %s firing %s: executor crashed", self.name, rec.trigger,
                                  rec.firing_id)
                    outcome = (False, f"executor crashed: {type(err).__name__}: {err}", 0, None, "")
            ok, detail, attempts, status, ref = outcome
            self.stats["actions_ok" if ok else "actions_failed"] += 1
            self.stats["action_retries"] += max(0, attempts - 1)
            self.observations.finished(rec.firing_id, rec.trigger, ok, detail, attempts, status, ref)
        finally:
            self._action_slots.release()
            self._running.discard(rec.firing_id)
        self.stats["actions_done"] += 1
        self._finish(rec)

    def _finish(self, rec: st.JournalRecord) -> None:
        """(3) The action is over: the firing leaves its journal chunk, its blobs go.

        Firings that finish close together leave the journal in one pass (``_clear_journal``);
        until it is stored a firing stays in ``_journal`` (and counts against
        ``max_pending_firings``). A crash before re-runs the firing after restart with the same
        id: idempotent, as any crash after an action (3)."""
        self._finished[rec.firing_id] = None
        while len(self._finished) > RECENT_FINISHED:
            self._finished.popitem(last=False)
        if rec.home is not None:  # in its entry: it leaves with the entry's next write (_apply)
            self._done_home.setdefault(rec.home, set()).add(rec.firing_id)
            self._done_since.setdefault(rec.home, time.monotonic())
            self._arm_home()
            return
        self._clearing.append(rec)
        self._clear_wake.set()
        if self._clearer is None or self._clearer.done():
            self._clearer = asyncio.create_task(self._clear_journal())

    async def _clear_journal(self) -> None:
        """Take finished firings out of the journal, all those waiting at once, until none is
        left: a chunk whose firings have all finished is erased (nothing stays behind: a
        redelivery of their messages is recognised by the entries (4)); one with firings still
        running waits REWRITE_AFTER for them, then is rewritten without the finished ones. A
        bus error keeps them waiting (capped backoff), as ``_retrying``."""
        pause = 0.1
        while self._clearing or self._partial:
            now = time.monotonic()
            if not self._clearing:  # only chunks with firings still running: wait for those a while
                wait = min(since for since, _ in self._partial.values()) + REWRITE_AFTER - now
                if wait > 0:
                    self._clear_wake.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._clear_wake.wait(), wait)
                    continue
            recs, self._clearing = self._clearing, []
            by_chunk: dict[str | None, list[st.JournalRecord]] = {}
            since: dict[str, float] = {}
            for rec in recs:
                by_chunk.setdefault(rec.batch, []).append(rec)
            for name, (at, group) in list(self._partial.items()):
                if name in by_chunk or at + REWRITE_AFTER <= now:
                    by_chunk.setdefault(name, [])[:0] = group
                    since[name] = at
                    del self._partial[name]
            erase: list[tuple[str, list[st.JournalRecord]]] = []
            rewrite: list[tuple[str, list[st.JournalRecord]]] = []
            for name, group in by_chunk.items():
                if name is None:  # the per-firing journal before chunks
                    erase += [(st.journal_key(r.firing_id), [r]) for r in group]
                elif not self._chunks.get(name, set()) - {r.firing_id for r in group}:
                    if name in self._keep:  # a replica's firings in it: rewritten with those only
                        rewrite.append((name, group))
                    else:
                        erase.append((st.chunk_key(name), group))
                elif since.get(name, now) + REWRITE_AFTER <= now:
                    rewrite.append((name, group))
                else:
                    self._partial[name] = (since.get(name, now), group)
            # On NATS 2.11+ a finished chunk is deleted with a marker the server drops a second
            # later (a write, not a JetStream API request); elsewhere it is purged.
            expiring = self.store.expiring_markers
            expire = [(k, g) for k, g in erase if expiring and st.chunk_name(k)]
            erase = [*(x for x in erase if not (expiring and st.chunk_name(x[0]))), *expire]
            results: list[BaseException | None] = []
            purged = len(erase) - len(expire)
            for i in range(0, purged, 64):  # 64 purges at once keep the JetStream API responsive
                results += await self.store.erase_many([k for k, _ in erase[i:min(i + 64, purged)]])
            if expire:  # the last one confirmed: a lost one leaves a chunk whose firings may re-run (3)
                results += await self.store.delete_many([k for k, _ in expire], confirm_each=False,
                                                        ttl=CHUNK_MARKER_TTL)
            writes = []
            for name, group in rewrite:
                left = self._chunks.get(name, set()) - {r.firing_id for r in group}
                records = [self._journal[f].data or self._journal[f].encode() for f in left if f in self._journal]
                revision, others = self._keep.get(name, (None, []))
                records += [r.data or r.encode() for r in others]
                writes.append((st.chunk_key(name), st.encode_chunk(name, records), revision))
            put = await self.store.put_many(writes) if writes else []
            for (name, _), res in zip(rewrite, put, strict=True):
                if name in self._keep:
                    if isinstance(res, BaseException):  # the replica changed or erased it: its business now
                        self._keep.pop(name)
                        res = None
                    else:
                        self._keep[name] = (res, self._keep[name][1])
                results.append(res if isinstance(res, BaseException) else None)
            retry: list[st.JournalRecord] = []
            cleared: list[st.JournalRecord] = []
            failure: BaseException | None = None
            for (key, group), err in zip([*erase, *((st.chunk_key(n), g) for n, g in rewrite)], results, strict=True):
                if err is not None and not (isinstance(err, EventBusError) and _refused(err)):
                    retry += group
                    failure = failure or err
                    continue
                if err is not None:
                    log.error("sensor %s: journal %s cannot be cleared (%s); firing(s) %s re-run after a restart",
                              self.name, key, err, ", ".join(r.firing_id for r in group))
                cleared += group
                name = st.chunk_name(key)
                if name is None:
                    continue
                left = self._chunks.get(name, set())
                left.difference_update(r.firing_id for r in group)
                if not left:
                    self._chunks.pop(name, None)
                    if self._keep.pop(name, None) is None:  # a kept one holds a replica's firings
                        self._closed[name] = None  # entries drop the name at their next write
            while len(self._closed) > CLOSED_KEPT:
                self._closed.popitem(last=False)
            for rec in cleared:
                self._journal.pop(rec.firing_id, None)
                self._built.pop(rec.firing_id, None)
            self._update_room()
            for rec in cleared:
                if any(ref.blob for ref in rec.refs.values()):
                    await self._forget(rec)
            if retry:
                self.stats["bus_errors"] += 1
                log.warning("sensor %s: clearing %d finished firing(s) from the journal failed (%s); retrying in "
                            "%.1fs", self.name, len(retry), failure, pause)
                self._clearing[:0] = retry
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_BACKOFF)
            else:
                pause = 0.1

    async def _forget(self, rec: st.JournalRecord, journal: bool = False) -> None:
        """Erase a firing's blobs (and, with ``journal``, its per-firing journal key)."""
        for ref in rec.refs.values():
            if ref.blob:
                await self._erase_quietly(ref.blob)
        if journal:
            await self._erase_quietly(st.journal_key(rec.firing_id))

    async def _sweep(self) -> None:
        """Sample the ack floors when entries wait for them (4), often while one is over
        APPLIED_CAP; erase the per-firing journal's old markers at their age."""
        every = SWEEP_EVERY
        while True:
            # an idle sensor sleeps long; its first batch with applied sequences wakes it (4)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._sample_due.wait(), self._sweep_pause(every))
            due = self._sample_due.is_set()
            if due:
                self._sample_due.clear()
                waited = 0.0  # one sample per ``every`` seconds at most, unless an entry is over the cap
                while waited < every and not self._hot:
                    await asyncio.sleep(HOT_SAMPLE)
                    waited += HOT_SAMPLE
                self._hot = False
            horizon = time.time() - st.TOMBSTONE_AGE
            old = []
            while self._loaded_markers and self._loaded_markers[0][0] < horizon:
                old.append(self._loaded_markers.popleft()[1])
            for i in range(0, len(old), 64):  # 64 purges at once keep the JetStream API responsive
                errors = [e for e in await self.store.erase_many(old[i:i + 64]) if e is not None]
                if errors:  # a marker left behind goes at the next start, by its age
                    log.debug("sensor %s: %d old marker(s) not erased (%s)", self.name, len(errors), errors[0])
            if self._to_check:
                await self._check_foreign()
            if self._draining or due:
                await self._sample_ack_floor()

    async def _check_foreign(self) -> None:
        """Other processes' chunks that emptied keys name: one gone is erased for good (its
        name is never used again), so the keys may drain (a stopped replica's, else never)."""
        names, self._to_check = list(self._to_check), set()
        for name in names:
            try:
                there = await self.store.seen(st.chunk_key(name))
            except EventBusError:
                continue  # asked again by the next drain pass
            if not there:
                self._closed[name] = None
                self._drain_soon = True

    def _sweep_pause(self, every: float) -> float:
        """Seconds to the next sweep: ``every`` while keys drain or the floors are due;
        otherwise when the oldest marker is due, at most IDLE_SWEEP (an idle sensor sleeps:
        10,000 of them share a triggerer)."""
        if self._draining or self._sample_due.is_set():
            return every
        if self._loaded_markers:
            return min(IDLE_SWEEP, max(every, self._loaded_markers[0][0] + st.TOMBSTONE_AGE - time.time()))
        return IDLE_SWEEP

    async def _sample_ack_floor(self) -> None:
        """Note the lowest ack floor of the sensor's consumers: every message at or below it
        is acked on the server, by this process or another, so it is never delivered again.
        Used ACKED_GRACE seconds later (a redelivery sent before the ack landed may still be
        on its way), it is what lets an entry forget the sequences it applied (4) and an
        emptied key's entry go. The acks themselves are never confirmed one by one."""
        seen = self._high_seq  # existed on the stream before the requests below
        try:
            infos = [await sub.info() for sub in self._subs]
        except EventBusError:
            return
        floor = min(_settled_upto(i, seen) for i in infos) if infos else 0
        now = time.monotonic()
        self._floors.append((now, floor))
        while len(self._floors) > 1 and self._floors[1][0] <= now - st.ACKED_GRACE:
            self._floors.popleft()

    def _settled_floor(self) -> int:
        horizon = time.monotonic() - st.ACKED_GRACE
        return max((f for at, f in self._floors if at <= horizon), default=0)

    async def flush(self) -> None:
        """Wait until every finished firing has left the journal."""
        while self._running:
            await asyncio.sleep(0.01)

    def pending(self) -> dict[str, Any]:
        """Firings in the journal: started or waiting for an action slot."""
        return {fid: rec.dump() for fid, rec in self._journal.items()}


def _raise_first(results: list[Any]) -> None:
    """After writes that were all tried: raise the first failure, if any."""
    for r in results:
        if isinstance(r, BaseException):
            raise r


def _settled_upto(info: Any, seen: int = 0) -> int:
    """The stream sequence up to which a consumer has nothing left to deliver again: its ack
    floor; or, with no ack pending at all, everything it has delivered or passed over (the
    server moves the ack floor there only at the next ack, which may never come); and with
    nothing left to deliver either, every sequence the stream held before the request
    (``seen``, the highest this process had received): a consumer of a rare subject then
    does not hold back the sequences of a busy one."""
    floor = (info.ack_floor.stream_seq or 0) if info.ack_floor else 0
    if not info.num_ack_pending and info.delivered is not None:
        floor = max(floor, info.delivered.stream_seq or 0)
        if not info.num_pending:
            floor = max(floor, seen)
    return floor


def _refused(err: EventBusError) -> bool:
    """A request JetStream refused as invalid (400): retrying cannot help; anything else may pass."""
    cause = err.__cause__
    return isinstance(cause, APIError) and getattr(cause, "code", None) == 400


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]


def _subject_token(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name) or "_"
