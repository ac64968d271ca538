"""The live sensor: bus -> engine -> actions, with no lost and no duplicate firing.

Invariants (numbered as the code refers to them):

1. A message is acked only after the state that includes it is stored in the sensor's KV
   bucket (one document, written with compare-and-set on its revision).
2. Firings are written to the same document (the journal) in that same write, so a
   firing exists durably before its triggering message is acked.
3. A firing leaves the journal only after its action finished (success, or failure after
   retries and the dead-letter action). A crash in between re-runs it after restart
   with the same firing id, which every action passes on as an idempotency key.
4. Ids of recently processed events are kept in the document; a message redelivered
   after a crash between "stored" and "acked" is recognised and only acked.
5. A compare-and-set conflict (another replica wrote first) reloads the state and
   processes the same batch again on top of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from airflow_argo_events.core.bus import (
    Delivery,
    EventBus,
    StateConflict,
    StateStore,
    Subscription,
    durable_name,
)
from airflow_argo_events.core.bus.consumer import DeliverFrom
from airflow_argo_events.core.events import event_from_json
from airflow_argo_events.core.exceptions import EventBusError
from airflow_argo_events.core.sensor.engine import Engine, Firing
from airflow_argo_events.core.spec.sensor import Sensor

log = logging.getLogger("airflow_argo_events.sensor")

STATE_KEY = "state"
RECENT_IDS = 512
Execute = Callable[[Firing], Awaitable[Any]]


def _events(rec: dict[str, Any]) -> dict[str, Any]:
    return {d: event_from_json(e) for d, e in rec["events"].items()}


def bucket_name(sensor: str, prefix: str = "sensor") -> str:
    """A KV bucket name for a sensor (``[A-Za-z0-9_-]`` only)."""
    return f"{prefix}-" + re.sub(r"[^A-Za-z0-9_-]", "_", sensor)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


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
        self._store: StateStore | None = None
        self._doc: dict[str, Any] = {"engine": {}, "pending": {}, "recent": []}
        self._rev = 0
        self._lock = asyncio.Lock()
        self._subs: list[Subscription] = []
        self._actions: set[asyncio.Task[None]] = set()
        self._action_slots = asyncio.Semaphore(max_concurrent_actions)
        self._finished: set[str] = set()
        self._stopping = False
        self._flush = asyncio.Event()
        self.instance = uuid.uuid4().hex[:12]
        self._running: set[str] = set()
        self.stats = {"events": 0, "skipped": 0, "firings": 0, "malformed": 0, "conflicts": 0}

    # ------------------------------------------------------------------ state

    async def _load(self) -> None:
        assert self._store is not None
        doc, rev = await self._store.get(STATE_KEY)
        self._doc = doc or {"engine": {}, "pending": {}, "recent": []}
        self._rev = rev
        self.engine.load(self._doc.get("engine") or {})

    async def _write(self, doc: dict[str, Any]) -> None:
        assert self._store is not None
        self._rev = await self._store.put(STATE_KEY, doc, revision=self._rev)
        self._doc = doc

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._store = await self.bus.state(self.bucket)
        await self._load()
        for source, event in self.engine.listens_to():
            durable = durable_name(self._consumer_prefix, source, event)
            # max_ack_pending bounds what is in flight: after a crash those unacked messages
            # are redelivered (after ack_wait) before anything newer, so events keep their order.
            self._subs.append(await self.bus.subscribe(
                durable, source, event, deliver=self._deliver, batch=self._batch,
                ack_wait=self._ack_wait, max_ack_pending=self._batch * 2))
        pending = self._doc.get("pending") or {}
        if pending:
            log.warning("sensor %s: re-running %d firing(s) left in the journal", self.name, len(pending))
        for fid, rec in list(pending.items()):
            firing = self.engine.build_firing(rec["trigger"], _events(rec))
            if firing.id != fid:  # the spec changed under the journal: keep the recorded id
                log.warning("sensor %s: journal firing %s resolves to %s now", self.name, fid, firing.id)
            self._spawn(firing)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set (or the task is cancelled), then stop cleanly."""
        stop = stop or asyncio.Event()
        if self._store is None:
            await self.start()
        queue: asyncio.Queue[list[Delivery]] = asyncio.Queue(maxsize=4)
        fetchers = [asyncio.create_task(self._fetch(sub, queue, stop)) for sub in self._subs]
        self._stopping = False
        flusher = asyncio.create_task(self._flusher())
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
                await self._handle(batch)
        finally:
            for t in (*fetchers, stopper):
                t.cancel()
            # The flusher stores what finished, then returns: it is told, not cancelled.
            self._stopping = True
            self._flush.set()
            _, late = await asyncio.wait({*fetchers, stopper, flusher}, timeout=10)
            for t in late:
                t.cancel()

    async def close(self, drain_timeout: float = 30.0) -> None:
        """Wait for running actions (bounded), store the journal, release the consumers (they stay durable)."""
        if self._actions:
            _, late = await asyncio.wait(self._actions, timeout=drain_timeout)
            for t in late:
                t.cancel()
        if self._finished:
            self._stopping = True
            flusher = asyncio.create_task(self._flusher())
            self._flush.set()
            try:
                await asyncio.wait_for(self.flush(), timeout=drain_timeout)
            except asyncio.TimeoutError:
                log.warning("sensor %s: journal not stored before stop; firings will re-run", self.name)
            finally:
                flusher.cancel()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    async def _fetch(self, sub: Subscription, queue: asyncio.Queue[list[Delivery]], stop: asyncio.Event) -> None:
        pause = 0.1
        while not stop.is_set():
            try:
                got = await sub.fetch(self._batch, timeout=self._idle_poll)
                pause = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as err:  # NATS away: keep trying, never give up
                log.warning("sensor %s: fetch from %s failed (%s); retrying", self.name, sub.subject, err)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            if got:
                await queue.put(got)

    # ------------------------------------------------------------------ processing

    async def _handle(self, batch: list[Delivery]) -> None:
        pause = 0.1
        while True:
            async with self._lock:
                try:
                    firings, to_ack = await self._apply(batch)
                    break
                except StateConflict:  # (5)
                    self.stats["conflicts"] += 1
                    log.info("sensor %s: state changed under us, reloading", self.name)
                    await self._reload_or_wait()
                except EventBusError as err:
                    log.warning("sensor %s: cannot store state (%s); retrying", self.name, err)
                    self.engine.load(self._doc.get("engine") or {})  # undo the unsaved batch
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 5.0)
        for d in to_ack:  # (1) only now
            try:
                await d.ack(wait=False)
            except Exception as err:  # a lost ack means a redelivery, which (4) absorbs
                log.info("sensor %s: ack failed (%s); the message will be redelivered and skipped", self.name, err)
        for f in firings:
            self._spawn(f)

    async def _reload_or_wait(self) -> None:
        try:
            await self._load()
        except EventBusError:
            self.engine.load(self._doc.get("engine") or {})
            await asyncio.sleep(0.5)
            return
        # A write whose reply was lost may have stored our firings: run the ones that are ours.
        for fid, rec in (self._doc.get("pending") or {}).items():
            if rec.get("owner") == self.instance and fid not in self._running and fid not in self._finished:
                self._spawn(self.engine.build_firing(rec["trigger"], _events(rec)))

    async def _apply(self, batch: list[Delivery]) -> tuple[list[Firing], list[Delivery]]:
        recent = list(self._doc.get("recent") or [])
        recent_set = set(recent)
        done = set(self._finished)
        pending = {k: v for k, v in (self._doc.get("pending") or {}).items() if k not in done}
        firings: list[Firing] = []
        observed: list[tuple[Any, list[str], list[Firing]]] = []
        for d in batch:
            ev = d.event
            if ev is None:
                self.stats["malformed"] += 1
                log.error("sensor %s: dropped malformed message seq %s on %s: %s", self.name, d.stream_seq,
                          d.msg.subject, d.error)
                continue
            if ev.id in recent_set:  # (4)
                self.stats["skipped"] += 1
                continue
            recent.append(ev.id)
            recent_set.add(ev.id)
            self.stats["events"] += 1
            if self.engine.explain is not None:
                self.engine.explain.clear()
            fired = self.engine.process(ev, self._clock())
            for f in fired:
                pending[f.id] = {"trigger": f.trigger, "owner": self.instance,
                                 "events": {k: e.to_json() for k, e in f.events.items()}}
                firings.append(f)
            if self._on_processed is not None:
                observed.append((ev, list(self.engine.explain or []), fired))
        doc = {"engine": self.engine.snapshot(), "pending": pending, "recent": recent[-RECENT_IDS:]}
        await self._write(doc)  # (1)(2)
        self._finished -= done
        if self._on_processed is not None:
            self._on_processed(observed)
        self.stats["firings"] += len(firings)
        return firings, batch

    # ------------------------------------------------------------------ actions

    def _spawn(self, firing: Firing) -> None:
        self._running.add(firing.id)
        task = asyncio.create_task(self._act(firing))
        self._actions.add(task)
        task.add_done_callback(self._actions.discard)

    async def _act(self, firing: Firing) -> None:
        async with self._action_slots:
            try:
                await self._execute(firing)
            except asyncio.CancelledError:
                raise  # stays in the journal (3)
            except Exception:
                log.exception("sensor %s trigger %s firing %s: executor crashed", self.name, firing.trigger, firing.id)
        self._running.discard(firing.id)
        await self._done(firing.id)

    async def _done(self, firing_id: str) -> None:
        """Mark a firing finished; the journal entry goes in the next write (3), coalesced."""
        self._finished.add(firing_id)
        self._flush.set()

    async def _flusher(self) -> None:
        pause = 0.1
        while True:
            if self._stopping and not self._finished:
                return
            await self._flush.wait()
            self._flush.clear()
            while self._finished:
                async with self._lock:
                    done = set(self._finished)
                    pending = {k: v for k, v in (self._doc.get("pending") or {}).items() if k not in done}
                    try:
                        if len(pending) != len(self._doc.get("pending") or {}):
                            await self._write({**self._doc, "pending": pending})  # (3)
                        self._finished -= done
                        pause = 0.1
                        continue
                    except StateConflict:
                        await self._reload_or_wait()
                        continue
                    except EventBusError as err:
                        log.warning("sensor %s: cannot clear %d firing(s) from the journal (%s)", self.name,
                                    len(done), err)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def flush(self) -> None:
        """Wait until finished firings have left the stored journal."""
        while self._finished:
            self._flush.set()
            await asyncio.sleep(0.01)

    def pending(self) -> dict[str, Any]:
        return dict(self._doc.get("pending") or {})
