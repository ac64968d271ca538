"""Runs an EventSource: every event's source -> CloudEvent -> bus, with retry while NATS is away.

Nothing is dropped silently: published events go through a bounded buffer; when it is
full the sources wait (a webhook caller waits for its 200), and while NATS is away the
publisher retries with backoff. Each event is logged with a running count.

Two lanes: events of ordered sources (queues, files, schedules) are published one at a
time, in the order read; events of concurrent sources (webhooks: each request its own
caller) are published up to ``CONCURRENT_PUBLISHES`` at once, so callers wait for their
own ack rather than for everyone's before them.

Each event has its own error boundary: an event that cannot be published (too large for
the bus, a bug) is logged once, counted in ``failed`` and its source told, and the
publisher goes on; if the publisher task itself ever ends, ``run`` restarts it.
``health()`` says whether events can be published now (a webhook's ``/health``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors

from airflow_argo_events.core.bus import EventBus, PublishResult
from airflow_argo_events.core.events import Event
from airflow_argo_events.core.exceptions import EventBusError, SpecError
from airflow_argo_events.core.limits import InputLimitError, RecentIds
from airflow_argo_events.core.observe.metrics import NO_METRICS, Metrics
from airflow_argo_events.core.secrets import Secrets
from airflow_argo_events.core.sources.adaptor import event_filter, to_event
from airflow_argo_events.core.sources.base import Source, SourceContext, SourceEvent, source_class
from airflow_argo_events.core.spec.eventsource import EventConfig, EventSource

log = logging.getLogger("airflow_argo_events.eventsource")

OnEvent = Callable[[Event], Awaitable[None]]
EMITTED_IDS = 10_000
"""How many recent event ids ``on_event`` remembers, so a retried delivery is emitted once."""
CONCURRENT_PUBLISHES = 64
"""Publishes in flight at once for concurrent sources (webhooks); each waits for its own ack."""


class EventSourceRuntime:
    """Publishes the events of one EventSource manifest (all its events, or ``only`` some).

    >>> rt = EventSourceRuntime(es, bus)          # doctest: +SKIP
    >>> await rt.run(stop)                        # doctest: +SKIP
    """

    def __init__(self, es: EventSource, bus: EventBus | None, *, only: list[str] | None = None,
                 buffer: int = 1000, secrets: Secrets | None = None, on_event: OnEvent | None = None,
                 sources: list[Source] | None = None, metrics: Metrics | None = None) -> None:
        self.es = es
        self.metrics = metrics or NO_METRICS
        """Argo's EventSource metrics (events sent, failed, processing duration, running services)."""
        self.bus = bus
        self.on_event = on_event
        self.queue: asyncio.Queue[tuple[EventConfig, SourceEvent]] = asyncio.Queue(maxsize=buffer)
        """The ordered lane: published one at a time."""
        self.concurrent: asyncio.Queue[tuple[EventConfig, SourceEvent]] = asyncio.Queue(maxsize=buffer)
        """The concurrent lane (sources with ``concurrent``): up to CONCURRENT_PUBLISHES at once."""
        self.count = 0
        self.filtered = 0
        self.failed = 0
        self.duplicates = 0
        self._publisher: asyncio.Task[None] | None = None
        self._bus_problem: str | None = None
        self._emitted = RecentIds(EMITTED_IDS)  # a retried delivery is handed to on_event once
        self._counted = RecentIds(EMITTED_IDS)  # ids stored on the bus as far as this process knows
        self.sources: list[Source] = sources or []
        self._state: Any = None
        ctx = SourceContext(secrets=secrets or Secrets(), state_get=self._state_get, state_put=self._state_put,
                            health=self.health)
        if not self.sources:
            for cfg in es.events():
                if only and cfg.name not in only:
                    continue
                if not cfg.supported:
                    log.error("eventsource %s: event %s of type %s is not supported; skipped", es.metadata.name,
                              cfg.name, cfg.type)
                    continue
                self.sources.append(source_class(cfg.type)(cfg, ctx))
        for s in self.sources:
            self.metrics.init_event(s.cfg.source, s.cfg.name)

    async def _state_get(self, key: str) -> Any:
        if self.bus is None:
            return None
        store = await self._store()
        value, _ = await store.get(key)
        return value

    async def _state_put(self, key: str, value: Any) -> None:
        if self.bus is not None:
            await (await self._store()).put(key, value)

    async def _store(self) -> Any:
        if self._state is None:
            assert self.bus is not None
            self._state = await self.bus.state(f"eventsource-{self.es.metadata.name}".replace(".", "_"))
        return self._state

    def health(self) -> str | None:
        """None while events can be published, else why not (one line; a webhook's ``/health`` shows it)."""
        if self._publisher is None or self._publisher.done():
            return "the publisher is not running"
        if self._bus_problem is not None:
            return self._bus_problem
        if self.bus is not None:
            try:
                connected = bool(self.bus.nc.is_connected)
            except (AttributeError, EventBusError):
                connected = True  # a bus without a NATS client (tests, other buses): judged by its publishes
            if not connected:
                return "not connected to NATS"
        return None

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Publish until ``stop`` is set. A source's ``SpecError`` (e.g. unusable TLS secrets) ends the run."""
        stop = stop or asyncio.Event()
        pumps = [asyncio.create_task(self._pump(s)) for s in self.sources]
        self._publisher = asyncio.create_task(self._publish_loop())
        stopping = asyncio.create_task(stop.wait())
        fatal: BaseException | None = None
        restarts = 0
        running = set(pumps)
        try:
            while not stop.is_set() and fatal is None:
                done, _ = await asyncio.wait({stopping, self._publisher, *running},
                                             return_when=asyncio.FIRST_COMPLETED)
                for task in done & running:
                    running.discard(task)
                    if not task.cancelled():
                        fatal = task.exception()
                if self._publisher in done and not stop.is_set():
                    # Never expected: every event has its own error boundary in _publish_loop.
                    # Restart rather than leave every caller waiting on a dead publisher.
                    restarts += 1
                    err = None if self._publisher.cancelled() else self._publisher.exception()
                    log.error("eventsource %s: the publisher stopped (%s); restarting it", self.es.metadata.name,
                              f"{type(err).__name__}: {err}" if err else "cancelled", exc_info=err)
                    await asyncio.sleep(min(0.1 * restarts, 5.0))
                    self._publisher = asyncio.create_task(self._publish_loop())
        finally:
            stopping.cancel()
            await _cancel_all(pumps, f"eventsource {self.es.metadata.name}")
            # flush what the sources already handed over, then stop
            if not self._publisher.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.gather(self.queue.join(), self.concurrent.join()), timeout=10)
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
            for lane in (self.queue, self.concurrent):
                while not lane.empty():  # not published: their callers hear so now
                    _, raw = lane.get_nowait()
                    _resolve(raw, False)
            for s in self.sources:
                with contextlib.suppress(Exception):
                    await s.close()
        if fatal is not None:
            raise fatal

    async def _pump(self, source: Source) -> None:
        self.metrics.running(source.cfg.source, 1)
        try:
            await self._pump_events(source)
        finally:
            self.metrics.running(source.cfg.source, -1)

    async def _pump_events(self, source: Source) -> None:
        flt = event_filter(source.cfg)
        lane = self.concurrent if source.concurrent else self.queue
        while True:
            try:
                async for raw in source.events():
                    if flt is not None and not flt.passes(raw.payload):
                        self.filtered += 1
                        _resolve(raw, True)
                        continue
                    await lane.put((source.cfg, raw))
            except asyncio.CancelledError:
                raise
            except SpecError:  # a configuration the source cannot run with: run() ends with it (one line)
                raise
            except Exception:
                log.exception("eventsource %s: source %s failed; restarting it in 1s", self.es.metadata.name,
                              source.label)
                await asyncio.sleep(1.0)

    async def _publish_loop(self) -> None:
        """The ordered lane's publisher, and the concurrent lane's when a source uses it."""
        lanes = [asyncio.create_task(self._publish_lane(self.queue))]
        if any(s.concurrent for s in self.sources):
            lanes += [asyncio.create_task(self._publish_lane(self.concurrent)) for _ in range(CONCURRENT_PUBLISHES)]
        try:
            done, _ = await asyncio.wait(lanes, return_when=asyncio.FIRST_COMPLETED)
            for task in done:  # never expected (each event has its own error boundary): run() restarts us
                task.result()
        finally:
            for task in lanes:
                task.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)

    async def _publish_lane(self, queue: asyncio.Queue[tuple[EventConfig, SourceEvent]]) -> None:
        while True:
            cfg, raw = await queue.get()
            try:
                await self._publish_one(cfg, raw)
            except asyncio.CancelledError:
                _resolve(raw, False)
                raise
            except Exception as err:  # one error boundary per event: log once, answer, go on
                self.failed += 1
                # Argo: a failed publish counts in both; any other failure in the second only.
                if isinstance(err, (EventBusError, InputLimitError)):
                    self.metrics.event_sent_failed(cfg.source, cfg.name)
                self.metrics.event_processing_failed(cfg.source, cfg.name)
                log.error("eventsource %s: event %s/%s%s could not be published: %s: %s", self.es.metadata.name,
                          cfg.source, cfg.name, f" id={raw.id}" if raw.id else "", type(err).__name__, err)
                _fail(raw, err)
            finally:
                queue.task_done()

    async def _publish_one(self, cfg: EventConfig, raw: SourceEvent) -> None:
        started = time.perf_counter()
        event = to_event(cfg, raw)
        result, unsure = await self._publish(event)
        self.metrics.event_sent(cfg.source, cfg.name)
        self.metrics.event_processing_duration(cfg.source, cfg.name, (time.perf_counter() - started) * 1000)
        duplicate = result is not None and result.duplicate
        # "Already there" after an attempt that may have been stored (its reply lost) is that
        # attempt's copy: this delivery published it, unless another one was counted for it.
        if duplicate and not (unsure and self._counted.first(event.id)):
            self.duplicates += 1
            log.info("eventsource %s: event %s/%s id=%s is already on the bus (a redelivery); not stored again",
                     self.es.metadata.name, cfg.source, cfg.name, event.id)
        else:
            if not duplicate:
                self._counted.first(event.id)
            self.count += 1
            log.info("eventsource %s: event %s/%s id=%s published (#%d)%s", self.es.metadata.name, cfg.source,
                     cfg.name, event.id, self.count, " by an earlier attempt whose reply was lost" if duplicate else "")
        _resolve(raw, True)
        if self.on_event is not None and self._emitted.first(event.id):
            await self.on_event(event)

    async def _publish(self, event: Event) -> tuple[PublishResult | None, bool]:
        """The bus's answer, and whether an earlier attempt failed in a way that may have
        stored the event all the same (a timeout: the request may have reached the server)."""
        if self.bus is None:
            return None, False
        pause = 0.2
        unsure = False
        while True:
            try:
                result = await self.bus.publish(event)
                self._bus_problem = None
                return result, unsure
            except EventBusError as err:
                unsure = True
                if isinstance(err.__cause__, nats.errors.MaxPayloadError):  # retrying cannot help
                    raise InputLimitError(f"event {event.id} is larger than the bus's max payload "
                                          f"({getattr(self.bus.nc, 'max_payload', '?')} bytes)") from None
                self._bus_problem = f"bus unavailable: {err}"
                log.warning("eventsource %s: bus unavailable (%s); retrying event %s in %.1fs", self.es.metadata.name,
                            err, event.id, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)


def _resolve(raw: SourceEvent, stored: bool) -> None:
    if raw.published is not None and not raw.published.done():
        raw.published.set_result(stored)


def _fail(raw: SourceEvent, err: Exception) -> None:
    fut = raw.published
    if fut is not None and not fut.done():
        fut.set_exception(err)
        # The caller may have stopped waiting (it answered 503 already): mark it retrieved.
        fut.add_done_callback(lambda f: f.exception())


async def _cancel_all(tasks: list[asyncio.Task[Any]], what: str, rounds: int = 10) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again each second those still running.

    A client library may swallow a cancellation (redis-py's blocking XREADGROUP did: the source
    read on, and stopping waited for ever); the next cancel lands at its next await. After
    ``rounds`` seconds the stragglers are left behind with a warning rather than hang the stop.
    """
    pending = {t for t in tasks if not t.done()}
    for _ in range(rounds):
        if not pending:
            break
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
    if pending:
        log.warning("%s: %d source(s) did not stop within %ds of being cancelled; left behind", what,
                    len(pending), rounds)
    for t in tasks:  # retrieve their outcomes: a cancelled task's error is no longer news
        if t.done() and not t.cancelled():
            t.exception()
