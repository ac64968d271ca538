"""Runs an EventSource: every event's source -> CloudEvent -> bus, with retry while NATS is away.

Nothing is dropped silently: published events go through a bounded buffer; when it is
full the sources wait (a webhook caller waits for its 200), and while NATS is away the
publisher retries with backoff. Each event is logged with a running count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from airflow_argo_events.core.bus import EventBus
from airflow_argo_events.core.events import Event
from airflow_argo_events.core.exceptions import EventBusError
from airflow_argo_events.core.secrets import Secrets
from airflow_argo_events.core.sources.adaptor import event_filter, to_event
from airflow_argo_events.core.sources.base import Source, SourceContext, SourceEvent, source_class
from airflow_argo_events.core.spec.eventsource import EventConfig, EventSource

log = logging.getLogger("airflow_argo_events.eventsource")

OnEvent = Callable[[Event], Awaitable[None]]


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
        self.sources: list[Source] = sources or []
        self._state: Any = None
        ctx = SourceContext(secrets=secrets or Secrets(), state_get=self._state_get, state_put=self._state_put)
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

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        tasks = [asyncio.create_task(self._pump(s)) for s in self.sources]
        publisher = asyncio.create_task(self._publish_loop())
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # flush what the sources already handed over, then stop
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.queue.join(), timeout=10)
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)
            for s in self.sources:
                with contextlib.suppress(Exception):
                    await s.close()

    async def _pump(self, source: Source) -> None:
        flt = event_filter(source.cfg)
        while True:
            try:
                async for raw in source.events():
                    if flt is not None and not flt.passes(raw.payload):
                        self.filtered += 1
                        if raw.published is not None and not raw.published.done():
                            raw.published.set_result(True)
                        continue
                    await self.queue.put((source.cfg, raw))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("eventsource %s: source %s failed; restarting it in 1s", self.es.metadata.name,
                              source.label)
                await asyncio.sleep(1.0)

    async def _publish_loop(self) -> None:
        while True:
            cfg, raw = await self.queue.get()
            try:
                event = to_event(cfg, raw)
                await self._publish(event)
                self.count += 1
                log.info("eventsource %s: event %s/%s id=%s published (#%d)", cfg.source, cfg.source, cfg.name,
                         event.id, self.count)
                if raw.published is not None and not raw.published.done():
                    raw.published.set_result(True)
                if self.on_event is not None:
                    await self.on_event(event)
            except asyncio.CancelledError:
                if raw.published is not None and not raw.published.done():
                    raw.published.set_result(False)
                raise
            finally:
                self.queue.task_done()

    async def _publish(self, event: Event) -> None:
        if self.bus is None:
            return
        pause = 0.2
        while True:
            try:
                await self.bus.publish(event)
                return
            except EventBusError as err:
                log.warning("eventsource %s: bus unavailable (%s); retrying event %s in %.1fs", self.es.metadata.name,
                            err, event.id, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)
