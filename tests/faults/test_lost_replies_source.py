"""Lost publish replies in the EventSource runtime: every event on the stream exactly once.

The runtime publishes each event with ``Nats-Msg-Id`` = its id and, while the bus fails,
retries the same event (backoff from 0.2 s, doubling). A publish can fail three ways that
look the same to the client: the server never got it; it stored the event and the reply was
lost; or the request is still on its way when the client gives up, and the server stores it
later, perhaps after the retry. JetStream's de-duplication (same id within the stream's
duplicate window) must absorb the copies, provided every retry carries the id of the first
try. This test injects the three into ``EventBus.publish``, seeded per event and attempt
(so the faults an event meets do not depend on timing), with a few events failing five times
in a row (their last retry comes 6 s after the first try), for two real sources:

- calendar, the ordered lane (one publish at a time, in the order read): driven by a clock of
  the test's own, so its ticks and their ids are known; the stream must hold each tick once,
  in tick order, and the runtime's own count of duplicates must match the faults;
- webhook, the concurrent lane (up to 64 publishes at once): real HTTP requests, with and
  without a delivery id; a caller with one retries on 503 (its event is not stored within the
  ack timeout, but stays queued), as GitHub does, so two copies of one event may be in flight.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import aiohttp
import nats.errors
import pytest
import yaml

from airflow_argo_events.core.bus import EventBus
from airflow_argo_events.core.bus.embedded import free_port
from airflow_argo_events.core.events import Event
from airflow_argo_events.core.exceptions import EventBusError
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime
from airflow_argo_events.core.sources.calendar import CalendarSource
from airflow_argo_events.core.sources.webhook import event_id
from airflow_argo_events.core.spec.loader import load_text
from airflow_argo_events.testing.plugin import unique_name
from tests.support import wait_answering, wait_until

pytestmark = pytest.mark.timeout(120)  # a hang detector: each case takes 10-20 s

KINDS = ("before", "after", "late")
STALL = 5
"""Failed attempts in a row of a stalled event: retried after 0.2 + 0.4 + 0.8 + 1.6 + 3.2 s."""


class PublishFaults:
    """What each attempt to publish an event meets: a plan per event label (fixed up front)."""

    def __init__(self, plans: dict[str, list[str]], seed: int) -> None:
        self.plans = plans
        self.attempts: Counter[str] = Counter()
        self.injected: Counter[str] = Counter()
        self.rng = random.Random(seed)
        self.late: set[asyncio.Task] = set()
        self.late_duplicates = 0  # late first tries the server dropped: the retry was stored first

    def kind(self, label: str) -> str:
        n = self.attempts[label]
        self.attempts[label] += 1
        plan = self.plans.get(label, [])
        kind = plan[n] if n < len(plan) else "ok"
        if kind != "ok":
            self.injected[kind] += 1
        return kind

    async def settle(self) -> None:
        """Wait for the requests still on their way."""
        if self.late:
            await asyncio.wait(self.late, timeout=30)


def make_plans(labels: list[str], seed: int, stalled: int, max_faults: int) -> dict[str, list[str]]:
    """About a third of the events meet 1..max_faults faults; ``stalled`` of them STALL in a row
    (the first stored with its reply lost, so the retries 6 s later must be recognised)."""
    rng = random.Random(seed)
    plans: dict[str, list[str]] = {}
    for label in labels:
        if rng.random() < 0.35:
            plans[label] = [rng.choice(KINDS) for _ in range(rng.randint(1, max_faults))]
    for label in rng.sample(labels, stalled):
        plans[label] = ["after"] + [rng.choice(KINDS) for _ in range(STALL - 1)]
    return plans


def timed_out(event: Event) -> EventBusError:
    err = EventBusError(f"publish of event {event.id} failed: nats: timeout")
    err.__cause__ = nats.errors.TimeoutError()
    return err


def inject(monkeypatch: pytest.MonkeyPatch, faults: PublishFaults, label) -> None:
    publish = EventBus.publish

    async def late(bus: EventBus, event: Event, delay: float) -> None:
        await asyncio.sleep(delay)
        result = await publish(bus, event)
        faults.late_duplicates += result.duplicate

    async def faulty_publish(self, event, timeout=5.0):
        kind = faults.kind(label(event))
        if kind == "before":  # never reached the server
            raise timed_out(event)
        if kind == "after":  # stored, the reply lost
            await publish(self, event, timeout)
            raise timed_out(event)
        if kind == "late":  # stored later: before the retry, or after it
            task = asyncio.create_task(late(self, event, faults.rng.uniform(0.05, 1.0)))
            faults.late.add(task)
            raise timed_out(event)
        return await publish(self, event, timeout)

    monkeypatch.setattr(EventBus, "publish", faulty_publish)


async def on_stream(bus: EventBus, source: str, name: str) -> list[tuple[str, Event]]:
    """(Nats-Msg-Id, event) of every message of ``source``/``name`` on the stream, in stream order."""
    sub = await bus.subscribe(unique_name("count-"), source, name, deliver="all")
    out = []
    try:
        while True:
            batch = await sub.fetch(100, timeout=1.0)
            if not batch:
                return out
            for d in batch:
                out.append(((d.msg.headers or {}).get("Nats-Msg-Id", ""), d.event))
                await d.ack()
    finally:
        await sub.delete()


class Clock:
    """The calendar's ``now`` and ``sleep``: a sleep moves the clock on at once; after ``ticks``
    sleeps the source waits for ever (so it emits exactly ``ticks`` events)."""

    def __init__(self, start: datetime, ticks: int) -> None:
        self.now = start
        self.left = ticks

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if not self.left:
            await asyncio.Event().wait()
        self.left -= 1
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


def manifest(name: str, spec: dict) -> object:
    (es,) = load_text(yaml.safe_dump({"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource",
                                      "metadata": {"name": name}, "spec": spec}))
    return es


@pytest.mark.parametrize("seed", [1, 2])
async def test_every_calendar_tick_is_on_the_stream_once_and_in_order_when_publishes_fail(
        nats_settings, stream, monkeypatch, seed):
    ticks = 40
    es = manifest(unique_name("cal"), {"calendar": {"tick": {"interval": "10s"}}})
    (cfg,) = es.events()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    clock = Clock(start, ticks)
    source = CalendarSource(cfg, now=clock, sleep=clock.sleep)
    expected = [source.event_for(start + timedelta(seconds=10 * (k + 1))).id for k in range(ticks)]
    plans = make_plans(expected, seed, stalled=1, max_faults=2)
    faults = PublishFaults(plans, seed)
    inject(monkeypatch, faults, lambda ev: ev.id)

    async with EventBus(nats_settings, stream) as bus:
        rt = EventSourceRuntime(es, bus, sources=[source])
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run(stop))
        published = await wait_until(lambda: rt.count + rt.duplicates + rt.failed >= ticks or task.done(), 60)
        healthy = rt.health()  # the bus works again: the last publish cleared the problem
        stop.set()
        await asyncio.wait_for(task, 30)
        await faults.settle()
        seen = await on_stream(bus, cfg.source, cfg.name)

    after = sum("after" in p for p in plans.values())
    late_only = sum("late" in p and "after" not in p for p in plans.values())
    report = (f"injected {dict(faults.injected)} over {len(plans)} of {ticks} events; published {rt.count}, "
              f"duplicates {rt.duplicates}, failed {rt.failed}; late first tries dropped {faults.late_duplicates}; "
              f"on the stream {len(seen)}")
    assert published, report
    assert set(faults.injected) == set(KINDS) and max(faults.attempts.values()) == STALL + 1, report
    ids = [ev.id for _, ev in seen]
    assert all(msg_id == ev.id for msg_id, ev in seen), report
    assert [i for i in expected if i not in ids] == [], f"lost; {report}"
    assert [i for i, n in Counter(ids).items() if n > 1] == [], f"duplicated; {report}"
    assert ids == expected, f"out of tick order; {report}"  # the ordered lane: one at a time, in order
    assert rt.failed == 0 and healthy is None, report
    # The runtime's own accounting: a retry told "duplicate" after a try that may have been
    # stored (its reply lost, or late) found that try's copy: published, not a redelivery.
    assert (rt.count, rt.duplicates) == (ticks, 0), report
    assert after + late_only > 0, report  # such retries happened


async def send_until_stored(http: aiohttp.ClientSession, url: str, i: int, delivery: str | None,
                            give_up: float) -> int:
    """POST request ``i``; a sender with a delivery id retries on 503 (its copies share the
    event id), one without sends once. Returns the attempts it took."""
    headers = {"X-GitHub-Delivery": delivery} if delivery else {}
    attempts = 0
    while True:
        attempts += 1
        async with http.post(url, json={"i": i}, headers=headers) as resp:
            if resp.status == 200:
                return attempts
            assert resp.status == 503, (resp.status, await resp.text())
            assert delivery is not None, f"request {i} without a delivery id was answered 503: it would be sent twice"
        assert time.monotonic() < give_up, f"request {i} never stored"
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("seed", [1, 2])
async def test_every_webhook_request_is_on_the_stream_once_when_publishes_fail(
        nats_settings, stream, monkeypatch, seed):
    requests = 60
    # A stalled event is not stored within the ack timeout: its caller gets 503 and retries
    # (with its delivery id). Without one, a caller must never see 503, so those events meet
    # two faults at most (retried after 0.2 + 0.4 s, far within the ack timeout).
    monkeypatch.setenv("ARGO_EVENTS_WEBHOOK_ACK_TIMEOUT", "5")
    port = free_port()
    es = manifest(unique_name("hook"), {"webhook": {"ex": {"port": str(port), "endpoint": "/ex",
                                                           "method": "POST"}}})
    (cfg,) = es.events()
    rng = random.Random(seed)
    deliveries = {i: f"delivery-{seed}-{i}" if rng.random() < 0.5 else None for i in range(requests)}
    with_id = [str(i) for i, d in deliveries.items() if d]
    without = [str(i) for i, d in deliveries.items() if not d]
    plans = {**make_plans(with_id, seed, stalled=3, max_faults=3), **make_plans(without, seed, stalled=0,
                                                                                   max_faults=2)}
    faults = PublishFaults(plans, seed)
    inject(monkeypatch, faults, lambda ev: str(ev.data["body"]["i"]))

    async with EventBus(nats_settings, stream) as bus:
        rt = EventSourceRuntime(es, bus)
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run(stop))
        url = f"http://127.0.0.1:{port}/ex"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            assert await wait_until(lambda: rt.health() is None or task.done(), 10)
            # the server answers once its task has bound the port
            await wait_answering(f"http://127.0.0.1:{port}/health", status=200, task=task)
            give_up = time.monotonic() + 60
            callers = []
            for i in range(requests):  # a stream of requests, several in flight at once
                callers.append(asyncio.create_task(send_until_stored(http, url, i, deliveries[i], give_up)))
                await asyncio.sleep(rng.choice((0, 0.02)))
            attempts = await asyncio.gather(*callers)
        healthy = rt.health()
        stop.set()
        await asyncio.wait_for(task, 30)
        await faults.settle()
        seen = await on_stream(bus, cfg.source, cfg.name)

    report = (f"injected {dict(faults.injected)} over {len(plans)} of {requests} events; published {rt.count}, "
              f"duplicates {rt.duplicates}, failed {rt.failed}; late first tries dropped {faults.late_duplicates}; "
              f"caller attempts {Counter(attempts)}; on the stream {len(seen)}")
    assert set(faults.injected) == set(KINDS) and max(faults.attempts.values()) >= STALL + 1, report
    assert max(attempts) > 1, f"no caller was answered 503 during a stall; {report}"
    assert all(msg_id == ev.id for msg_id, ev in seen), report
    got = Counter(ev.data["body"]["i"] for _, ev in seen)
    assert [i for i in range(requests) if not got[i]] == [], f"lost; {report}"
    assert [i for i, n in got.items() if n > 1] == [], f"duplicated; {report}"
    # a sender's delivery id names the event, whichever of its copies was stored
    assert {ev.id for _, ev in seen if deliveries[ev.data["body"]["i"]]} == {
        event_id(cfg.source, cfg.name, d) for d in deliveries.values() if d}, report
    assert rt.failed == 0 and healthy is None, report
    # each event counted as published once, whichever of its copies (a caller's retry) was stored;
    # the other copies are redeliveries
    assert rt.count == requests, report
