"""The EventSource runtime's two lanes: events of ordered sources reach the bus one at a time
and in order; events of concurrent sources (webhooks) are published several at once, so one
slow ack does not hold the callers behind it. A recording bus, no network."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from airflow_argo_events.core.bus import PublishResult
from airflow_argo_events.core.runtime import eventsource_runtime
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime
from airflow_argo_events.core.sources.base import Source, SourceEvent
from airflow_argo_events.core.sources.webhook import WebhookSource
from airflow_argo_events.core.spec.eventsource import EventConfig, EventSource

pytestmark = pytest.mark.timeout(30)

ES = EventSource.model_validate({"metadata": {"name": "lanes"}, "spec": {"calendar": {"c": {"interval": "1h"}}}})


class GatedBus:
    """Publishes wait for ``gate``; records the order of publishes and the most in flight at once."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.order: list[int] = []
        self.in_flight = 0
        self.most = 0
        self.waiting = asyncio.Event()

    async def publish(self, event: Any, timeout: float = 5.0) -> PublishResult:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        self.waiting.set()
        try:
            await self.gate.wait()
            self.order.append(event.data["n"])
            return PublishResult(len(self.order), False)
        finally:
            self.in_flight -= 1


class Feed(Source):
    """``n`` events handed over at once, each awaiting its ack like a webhook caller."""

    type = "test"

    def __init__(self, n: int, concurrent: bool) -> None:
        super().__init__(EventConfig("lanes", "test", "feed", None))
        self.concurrent = concurrent
        self.n = n
        self.acks: list[asyncio.Future[bool]] = []

    async def events(self) -> AsyncIterator[SourceEvent]:
        for i in range(self.n):
            ev = SourceEvent({"n": i}).expect_ack()
            assert ev.published is not None
            self.acks.append(ev.published)
            yield ev
        await asyncio.Event().wait()


async def _run(source: Feed) -> tuple[GatedBus, int]:
    """Run until every event is acked; returns the bus and how many publishes were in flight
    while the bus held the first one."""
    bus = GatedBus()
    rt = EventSourceRuntime(ES, bus, sources=[source])  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    await asyncio.wait_for(bus.waiting.wait(), 10)
    for _ in range(50):  # let the lanes take what they can while the gate is shut
        await asyncio.sleep(0)
    held = bus.in_flight
    bus.gate.set()
    assert await asyncio.wait_for(asyncio.gather(*source.acks), 10) == [True] * source.n
    stop.set()
    await asyncio.wait_for(task, 10)
    return bus, held


async def test_an_ordered_source_is_published_one_at_a_time_in_order():
    bus, held = await _run(Feed(20, concurrent=False))
    assert held == 1 and bus.most == 1
    assert bus.order == list(range(20))


async def test_a_concurrent_source_has_several_publishes_in_flight(monkeypatch):
    monkeypatch.setattr(eventsource_runtime, "CONCURRENT_PUBLISHES", 8)
    bus, held = await _run(Feed(20, concurrent=True))
    assert held == 8 and bus.most == 8  # one slow ack holds only its own caller
    assert sorted(bus.order) == list(range(20))


def test_webhooks_are_concurrent_and_other_sources_are_not():
    from airflow_argo_events.core.sources.base import source_class

    assert WebhookSource.concurrent and source_class("github").concurrent
    assert not any(source_class(t).concurrent for t in ("calendar", "file", "kafka", "nats", "amqp", "sqs"))
