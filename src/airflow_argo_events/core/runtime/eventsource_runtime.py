"""Runs an EventSource: every event's source -> CloudEvent -> bus, with retry while NATS is away.

Nothing is dropped silently: published events go through a bounded buffer; when it is
full the sources wait (a webhook caller waits for its 200), and while NATS is away the
publisher retries with backoff. Each event is logged with a running count.

Each event has its own error boundary: an event that cannot be published (too large for
the bus, a bug) is logged once, counted in ``failed`` and its source told, and the
publisher goes on; if the publisher task itself ever ends, ``run`` restarts it.
``health()`` says whether events can be published now (a webhook's ``/health``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors

from airflow_argo_events.core.bus import EventBus, PublishResult
from airflow_argo_events.core.events import Event
from airflow_argo_events.core.exceptions import EventBusError, SpecError
from airflow_argo_events.core.limits import InputLimitError
from airflow_argo_events.core.secrets import Secrets
from airflow_argo_events.core.sources.adaptor import event_filter, to_event
from airflow_argo_events.core.sources.base import Source, SourceContext, SourceEvent, source_class
from airflow_argo_events.core.spec.eventsource import EventConfig, EventSource

log = logging.getLogger("airflow_argo_events.eventsource")

OnEvent = Callable[[Event], Awaitable[None]]
EMITTED_IDS = 10_000
"""How many recent event ids ``on_event`` remembers, so a retried delivery is emitted once."""


class EventSourceRuntime:
    """Publishes the events of one EventSource manifest (all its events, or ``only`` some).

    >>> rt = EventSourceRuntime(es, bus)          # doctest: +SKIP
    >>> await rt.run(stop)                        # doctest: +SKIP
    """

    def __init__(self, es: EventSource, bus: EventBus | None, *, only: list[str] | None = None,
                 buffer: int = 1000, secrets: Secrets | None = None, on_event: OnEvent | None = None,
                 sources: list[Source] | None = None) -> None:
        self.es = es
        self.bus = bus
        self.on_event = on_event
        self.queue: asyncio.Queue[tuple[EventConfig, SourceEvent]] = asyncio.Queue(maxsize=buffer)
        self.count = 0
        self.filtered = 0
        self.failed = 0
        self.duplicates = 0
        self._publisher: asyncio.Task[None] | None = None
        self._bus_problem: str | None = None
        self._emitted: OrderedDict[str, None] = OrderedDict()
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
            for t in pumps:
                t.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            # flush what the sources already handed over, then stop
            if not self._publisher.done():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.queue.join(), timeout=10)
            self._publisher.cancel()
            await asyncio.gather(self._publisher, return_exceptions=True)
            while not self.queue.empty():  # not published: their callers hear so now
                _, raw = self.queue.get_nowait()
                _resolve(raw, False)
            for s in self.sources:
                with contextlib.suppress(Exception):
                    await s.close()
        if fatal is not None:
            raise fatal

    async def _pump(self, source: Source) -> None:
        flt = event_filter(source.cfg)
        while True:
            try:
                async for raw in source.events():
                    if flt is not None and not flt.passes(raw.payload):
                        self.filtered += 1
                        _resolve(raw, True)
                        continue
                    await self.queue.put((source.cfg, raw))
            except asyncio.CancelledError:
                raise
            except SpecError:  # a configuration the source cannot run with: run() ends with it (one line)
                raise
            except Exception:
                log.exception("eventsource %s: source %s failed; restarting it in 1s", self.es.metadata.name,
                              source.label)
                await asyncio.sleep(1.0)

    async def _publish_loop(self) -> None:
        while True:
            cfg, raw = await self.queue.get()
            try:
                await self._publish_one(cfg, raw)
            except asyncio.CancelledError:
                _resolve(raw, False)
                raise
            except Exception as err:  # one error boundary per event: log once, answer, go on
                self.failed += 1
                log.error("eventsource %s: event %s/%s%s could not be published: %s: %s", self.es.metadata.name,
                          cfg.source, cfg.name, f" id={raw.id}" if raw.id else "", type(err).__name__, err)
                _fail(raw, err)
            finally:
                self.queue.task_done()

    async def _publish_one(self, cfg: EventConfig, raw: SourceEvent) -> None:
        event = to_event(cfg, raw)
        result = await self._publish(event)
        if result is not None and result.duplicate:
            self.duplicates += 1
            log.info("eventsource %s: event %s/%s id=%s is already on the bus (a redelivery); not stored again",
                     cfg.source, cfg.source, cfg.name, event.id)
        else:
            self.count += 1
            log.info("eventsource %s: event %s/%s id=%s published (#%d)", cfg.source, cfg.source, cfg.name,
                     event.id, self.count)
        _resolve(raw, True)
        if self.on_event is not None and self._first_emit(event.id):
            await self.on_event(event)

    def _first_emit(self, event_id: str) -> bool:
        """True the first time an id is handed to ``on_event`` (a retried delivery fires once)."""
        if event_id in self._emitted:
            return False
        self._emitted[event_id] = None
        if len(self._emitted) > EMITTED_IDS:
            self._emitted.popitem(last=False)
        return True

    async def _publish(self, event: Event) -> PublishResult | None:
        if self.bus is None:
            return None
        pause = 0.2
        while True:
            try:
                result = await self.bus.publish(event)
                self._bus_problem = None
                return result
            except EventBusError as err:
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
