"""Shared waiting (core/runtime/shared_wait.py) on real NATS: many SensorTriggers of one process
wait through one subscription and still each get every event exactly once, through cancellation,
a killed and restarted process, and a NATS restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.bus.consumer import Subscription
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.runtime import shared_wait
from airflow_argo_events.core.runtime.shared_wait import SensorBus, SharedWaitSubscription, WaitHub
from airflow_argo_events.core.runtime.state import journal_firings

from ..support import wait_until
from .trigger_host import trigger_of

pytestmark = pytest.mark.timeout(300)
HOST = Path(__file__).with_name("trigger_host.py")


async def _consume(trigger, queue):
    async for event in trigger.run():
        queue.put_nowait(event.payload)


async def _returns(aw, within: float) -> bool:
    """Did ``aw`` finish within ``within`` seconds (else it is cancelled)? A cold fetch that
    heard nothing keeps waiting (a hang detector's answer, not a timing assertion)."""
    try:
        await asyncio.wait_for(aw, within)
    except asyncio.TimeoutError:
        return False
    return True


def _hubs() -> list[WaitHub]:
    return [hub for hub in list(shared_wait._HUBS.values()) if hub.subscriptions]


async def _consumers(bus: EventBus, at_least: int, tasks=()) -> None:
    async def enough() -> bool:
        return (await bus.js.stream_info(bus.stream.name)).state.consumer_count >= at_least

    for _ in range(1200):
        if await enough():
            return
        for t in tasks:
            assert not t.done(), t.exception()
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {at_least} consumers on {bus.stream.name}")


async def test_a_cold_subscription_pulls_only_when_its_doorbell_rings(nats_settings, stream, monkeypatch):
    """Cold, a fetch sends no pull request until a message is published on its subject (another
    subject of the same event source rings the hub, not it); the first fetch and those after a
    delivery are hot (long polls, as without sharing)."""
    monkeypatch.setattr(shared_wait, "HOT_MIN", 0.0)
    async with SensorBus(nats_settings, stream, shared_wait=True) as bus:
        sub = await bus.subscribe("d-cold", "src", "ev", ack_wait=0.2)  # hot for 2 * 0.2 + 1 s
        assert isinstance(sub, SharedWaitSubscription) and sub.hot
        assert await sub.fetch(timeout=0.3) == [] and sub.pulls == 1
        assert bus.hub.subscriptions == 1
        assert await wait_until(lambda: not sub.hot, 10)

        for _ in range(3):  # nothing published: the fetch waits, and sends no pull at all
            assert not await _returns(sub.fetch(timeout=0.2), 0.5)
        assert sub.pulls == 1

        rings = bus.hub.rings
        await bus.publish(new_event(source="src", subject="other", type="webhook", data={}))
        assert await wait_until(lambda: bus.hub.rings > rings, 10)  # heard by the hub ...
        assert not await _returns(sub.fetch(timeout=0.2), 0.5)  # ... but not this subscription's bell
        assert sub.pulls == 1

        sent = new_event(source="src", subject="ev", type="webhook", data={})
        await bus.publish(sent)
        got = await sub.fetch(timeout=5)
        assert [d.event.id for d in got] == [sent.id] and sub.pulls == 2 and sub.hot
        await got[0].ack()
    assert not _hubs()  # the last member unsubscribed


async def test_a_backlog_is_read_to_the_end_without_doorbells(nats_settings, stream, monkeypatch):
    """Events stored before the subscription listened rang nothing; a pull that reports more
    pending keeps pulling, even after the hot window (as after a long back-pressure)."""
    monkeypatch.setattr(shared_wait, "HOT_MIN", 0.0)
    async with SensorBus(nats_settings, stream, shared_wait=True) as bus:
        sent = [new_event(source="src", subject="ev", type="webhook", data={"i": i}) for i in range(5)]
        for ev in sent:
            await bus.publish(ev)
        # ack_wait above the test's pauses: a message that arrives after its fetch returned waits
        # in the subscription's buffer for the next one, and must not be redelivered meanwhile
        sub = await bus.subscribe("d-backlog", "src", "ev", deliver="all", ack_wait=2.0, batch=2)
        got = await sub.fetch(timeout=2)
        assert 1 <= len(got) <= 2  # at most the batch; under load a pull may hand over the first one alone
        for d in got:
            await d.ack()
        assert await wait_until(lambda: not sub.hot, 10)
        while len(got) < len(sent):
            more = await asyncio.wait_for(sub.fetch(timeout=0.2), 10)  # cold, nothing rings: its pending count does
            assert more, f"stuck after {len(got)} of {len(sent)}"
            for d in more:
                await d.ack()
            got += more
        assert [d.event.id for d in got] == [e.id for e in sent]


async def test_a_cold_subscription_that_hears_nothing_still_pulls_now_and_then(nats_settings, stream, monkeypatch):
    """A message the doorbell cannot announce (here: the hub does not ring this subscription; in
    life a mirrored or sourced stream, or a lost connection) is fetched by the safety pull."""
    monkeypatch.setattr(shared_wait, "HOT_MIN", 0.0)
    monkeypatch.setattr(shared_wait, "SAFETY_POLL", 1.0)
    async with SensorBus(nats_settings, stream, shared_wait=True) as bus:
        sub = await bus.subscribe("d-safety", "src", "ev", ack_wait=0.2)
        assert await sub.fetch(timeout=0.3) == []
        assert await wait_until(lambda: not sub.hot, 10)
        bus.hub.leave(sub.subject, sub._bell)  # deaf: no doorbell reaches it any more
        sent = new_event(source="src", subject="ev", type="webhook", data={})
        await bus.publish(sent)
        got = await asyncio.wait_for(sub.fetch(timeout=0.5), 30)  # returns at the safety pull
        assert [d.event.id for d in got] == [sent.id]
        await got[0].ack()


async def test_a_reconnect_rings_every_cold_subscription(nats_settings, stream, monkeypatch):
    """Events published while the connection was down rang nobody: once nats-py reports a
    reconnect, every subscription pulls (simulated: the hub is made deaf, then a reconnect counted)."""
    monkeypatch.setattr(shared_wait, "HOT_MIN", 0.0)
    monkeypatch.setattr(shared_wait, "RECONNECT_CHECK", 0.05)
    async with SensorBus(nats_settings, stream, shared_wait=True) as bus:
        subs = [await bus.subscribe(f"d-rc{i}", "src", f"ev{i}", ack_wait=0.2) for i in range(3)]
        for sub in subs:
            assert await sub.fetch(timeout=0.3) == []
        assert await wait_until(lambda: not any(s.hot for s in subs), 10)
        group = next(iter(bus.hub._groups.values()))
        await group.sub.unsubscribe()  # what the server delivers meanwhile rings nobody
        await bus.nc.flush()
        sent = [new_event(source="src", subject=f"ev{i}", type="webhook", data={}) for i in range(3)]
        for ev in sent:
            await bus.publish(ev)
        for sub in subs:
            assert not await _returns(sub.fetch(timeout=0.2), 0.5)
        bus.nc.stats["reconnects"] += 1
        for sub, ev in zip(subs, sent, strict=True):
            got = await asyncio.wait_for(sub.fetch(timeout=0.2), 10)
            assert [d.event.id for d in got] == [ev.id]
            await got[0].ack()


async def test_after_a_reconnect_a_cold_subscription_waits_out_what_was_in_flight(nats_settings, stream,
                                                                                 monkeypatch):
    """A message in flight when the connection dropped comes back after ack_wait and rings
    nobody. Before, a cold subscription pulled once (2 s) at the reconnect and then slept until
    the safety pull; now a reconnect makes it hot, and its long poll brings the redelivery."""
    monkeypatch.setattr(shared_wait, "RECONNECT_CHECK", 0.05)
    async with SensorBus(nats_settings, stream, shared_wait=True) as bus:
        sub = await bus.subscribe("d-inflight", "src", "ev", ack_wait=4)
        assert isinstance(sub, shared_wait.SharedWaitSubscription)
        sent = new_event(source="src", subject="ev", type="webhook", data={})
        await bus.publish(sent)
        lost = await sub.fetch(timeout=5)  # delivered, never acked: as if lost with the connection
        assert [d.event.id for d in lost] == [sent.id]
        sub._hot_until = 0.0  # cold, as after a quiet spell
        bus.nc.stats["reconnects"] += 1
        got = await asyncio.wait_for(sub.fetch(timeout=8), 15)
        assert [(d.event.id, d.num_delivered) for d in got] == [(sent.id, 2)]
        await got[0].ack()


async def test_a_ring_the_server_is_slow_to_answer_is_waited_for(nats_settings, stream, monkeypatch):
    """10,000 triggers rung at once: the server answers their pulls late, after a short pull
    has given up. Before, the subscription went back to sleep until the safety pull (minutes),
    though its event was on the stream; now a ring makes it hot, and its next pull gets it.
    (The server's slowness is simulated: the pull after the ring is never sent.)"""
    from airflow_argo_events.core.bus.consumer import Subscription

    real_request = Subscription._request
    dropped: list[int] = []

    async def late(self, n: int, timeout: float) -> None:
        if ringing and not dropped:
            dropped.append(n)
            return  # the server never answers this one in time
        await real_request(self, n, timeout)

    ringing = False
    monkeypatch.setattr(Subscription, "_request", late)
    async with SensorBus(nats_settings, stream, shared_wait=True) as bus:
        sub = await bus.subscribe("d-slow", "src", "ev", ack_wait=0.2)
        assert await sub.fetch(timeout=0.3) == []
        assert await wait_until(lambda: not sub.hot, 10)
        ringing = True
        sent = new_event(source="src", subject="ev", type="webhook", data={})
        await bus.publish(sent)
        assert await asyncio.wait_for(sub.fetch(timeout=2), 10) == []  # rung; its pull is lost
        assert dropped and sub.hot
        got = await asyncio.wait_for(sub.fetch(timeout=2), 10)  # before: asleep until the safety pull
        assert [d.event.id for d in got] == [sent.id]
        await got[0].ack()


async def test_shared_wait_off_gives_plain_long_polling_subscriptions(nats_settings, stream):
    async with SensorBus(nats_settings, stream, shared_wait=False) as bus:
        sub = await bus.subscribe("d-plain", "src", "ev")
        assert type(sub) is Subscription and bus.hub.subscriptions == 0


def test_subject_matching_and_grouping():
    m = shared_wait.subject_matches
    assert m("s.a.b", "s.a.b") and not m("s.a.b", "s.a.c") and not m("s.a.b", "s.a.b.c")
    assert m("s.*.b", "s.x.b") and not m("s.*.b", "s.x.y.b")
    assert m("s.a.>", "s.a.b.c") and not m("s.a.>", "s.a")
    g = shared_wait.group_subject
    assert g("default.shop.order") == "default.shop.>" == g("default.shop.*")
    assert g("default.*.order") == "default.>" == g("default.>")


@pytest.fixture
def nats_conn(monkeypatch, nats_url, stream):
    monkeypatch.setenv("AIRFLOW_CONN_NATS_DEFAULT", f"{nats_url}?stream={stream.name}")


async def test_many_triggers_share_one_subscription_and_each_gets_every_event(bus, stream, nats_conn):
    """Nine triggers on one subject and three on another of the same event source: one hub
    subscription for all twelve; each trigger yields each of its events once, in order."""
    specs = [f"many{i}:s.e" for i in range(9)] + [f"many{i}:s.f" for i in range(9, 12)]
    queues = [asyncio.Queue() for _ in specs]
    tasks = [asyncio.create_task(_consume(trigger_of(spec), q)) for spec, q in zip(specs, queues, strict=True)]
    try:
        await _consumers(bus, len(specs), tasks)
        assert [h.subscriptions for h in _hubs()] == [1]
        sent = {"e": [], "f": []}
        for i in range(10):
            subject = "e" if i % 3 else "f"
            ev = new_event(source="s", subject=subject, type="webhook", data={"i": i})
            sent[subject].append(ev.id)
            await bus.publish(ev)
        for spec, q in zip(specs, queues, strict=True):
            want = sent[spec[-1]]
            got = [(await asyncio.wait_for(q.get(), 30))["events"]["d"]["id"] for _ in want]
            assert got == want, spec
        await asyncio.sleep(1)  # nothing more comes
        assert all(q.empty() for q in queues)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=20)
    assert not _hubs()  # the last trigger to go unsubscribed


async def test_a_trigger_cancelled_mid_stream_loses_nothing_and_holds_nobody_up(bus, stream, nats_conn):
    """Six triggers share a subject; one is cancelled (as the triggerer does on reassignment)
    while events flow, the others go on meanwhile, and the cancelled one started again gets the
    rest: every trigger yields every event exactly once."""
    specs = [f"cut{i}:s.e" for i in range(6)]
    queues = [asyncio.Queue() for _ in specs]
    tasks = [asyncio.create_task(_consume(trigger_of(spec), q)) for spec, q in zip(specs, queues, strict=True)]
    got: list[list[str]] = [[] for _ in specs]

    async def drain(i: int) -> None:
        while True:
            got[i].append((await queues[i].get())["events"]["d"]["id"])

    drains = [asyncio.create_task(drain(i)) for i in range(len(specs))]
    sent: list[str] = []
    try:
        await _consumers(bus, len(specs), tasks)
        for i in range(30):
            ev = new_event(source="s", subject="e", type="webhook", data={"i": i})
            await bus.publish(ev)
            sent.append(ev.id)
            if i == 9:
                assert await wait_until(lambda: len(got[0]) >= 5, 30)
                tasks[0].cancel()  # mid-stream: some of its events are in flight
                await asyncio.wait({tasks[0]}, timeout=20)
                assert tasks[0].cancelled()
            await asyncio.sleep(0.02)
        # the others do not wait for the cancelled one
        assert await wait_until(lambda: all(len(g) >= len(sent) for g in got[1:]), 60)
        tasks[0] = asyncio.create_task(_consume(trigger_of(specs[0]), queues[0]))
        assert await wait_until(lambda: len(got[0]) >= len(sent), 60), f"{len(got[0])} of {len(sent)}"
        await asyncio.sleep(1)
    finally:
        for t in (*tasks, *drains):
            t.cancel()
        await asyncio.wait({*tasks, *drains}, timeout=20)
    for spec, g in zip(specs, got, strict=True):
        assert Counter(g) == Counter(sent), f"{spec}: lost {set(sent) - set(g)}, repeated " \
                                            f"{[e for e, n in Counter(g).items() if n > 1]}"


def _lines(path: Path) -> list[tuple[str, str, str]]:
    if not path.exists():
        return []
    return [tuple(line.split()) for line in path.read_text().splitlines() if line.strip()]  # type: ignore[misc]


class _Host:
    def __init__(self, url: str, stream: str, out: Path, specs: list[str], log: Path) -> None:
        self.args = [sys.executable, str(HOST), url, stream, str(out), *specs]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


async def test_a_killed_and_restarted_triggerer_process_loses_and_repeats_nothing(private_nats, tmp_path):
    """Eight triggers sharing a subject (four on another) in a stand-in triggerer process that is
    killed with SIGKILL twice while events flow, and started again each time. Every trigger yields
    every event; the only repeats are the hand-over window the journal documents (a firing the
    process took, killed before its journal entry was cleared): exactly the ones found in the
    journal after each kill, re-yielded once, with the same firing id."""
    server = private_nats()
    stream = StreamSettings(name="hostcrash", replicas=1)
    out = tmp_path / "events.txt"
    specs = [f"host{i}:s.e" for i in range(8)] + [f"host{i}:s.f" for i in range(8, 12)]
    host = _Host(server.url, stream.name, out, specs, tmp_path / "host.log")
    buckets = {spec.split(":")[0]: trigger_of(spec).state_for(stream.name) for spec in specs}
    sent: dict[str, list[str]] = {"e": [], "f": []}
    predicted: set[tuple[str, str]] = set()  # (trigger, firing id) to be yielded twice
    kills = 0
    async with EventBus(NatsSettings.from_url(server.url), stream) as bus:

        async def journaled(name: str) -> set[str]:
            firings, _ = await journal_firings(await bus.state(buckets[name]))
            return {str(f.get("id")) for f in firings}

        host.start()
        try:
            await _consumers(bus, len(specs))
            for i in range(60):
                subject = "e" if i % 3 else "f"
                ev = new_event(source="s", subject=subject, type="webhook", data={"i": i})
                await bus.publish(ev)
                sent[subject].append(ev.id)
                await asyncio.sleep(0.03)
                if i in (20, 40):
                    assert host.alive(), (tmp_path / "host.log").read_text()[-2000:]
                    host.kill()
                    kills += 1
                    taken = {(name, fid) for name, fid, _ in _lines(out)}
                    for name in buckets:
                        left = await journaled(name)
                        predicted |= {(n, f) for n, f in taken if n == name and f in left}
                    host.start()
            want = {spec.split(":")[0]: sent[spec[-1]] for spec in specs}

            def complete() -> bool:
                seen: dict[str, set[str]] = {}
                for name, _, ev_id in _lines(out):
                    seen.setdefault(name, set()).add(ev_id)
                return all(seen.get(n, set()) >= set(w) for n, w in want.items())

            assert await wait_until(complete, 180), (tmp_path / "host.log").read_text()[-3000:]
            await asyncio.sleep(2)  # a late repeat would show now
        finally:
            host.stop()
    lines = _lines(out)
    by_pair = Counter((name, ev_id) for name, _, ev_id in lines)
    fids = {(name, ev_id): {f for n, f, e in lines if (n, e) == (name, ev_id)} for name, ev_id in by_pair}
    lost = [(n, e) for n, w in want.items() for e in w if (n, e) not in by_pair]
    repeated = {(n, f) for (n, e), c in by_pair.items() if c > 1 for f in fids[(n, e)]}
    print(f"\n{len(specs)} triggers, {kills} kills: {len(lines)} TriggerEvents for "
          f"{sum(len(w) for w in want.values())} expected, lost {len(lost)}, repeated {len(repeated)} "
          f"(predicted from the journal after the kills: {len(predicted)})")
    assert not lost, f"lost: {lost[:10]}"
    assert all(len(f) == 1 for f in fids.values()), "an event fired twice under different firing ids"
    assert all(c <= 2 for c in by_pair.values())
    assert repeated == predicted, f"repeats not explained by the journal: {sorted(repeated - predicted)[:5]}; " \
                                  f"journaled but not repeated: {sorted(predicted - repeated)[:5]}"


async def test_triggers_waiting_cold_survive_a_nats_restart(private_nats, monkeypatch, tmp_path):
    """Triggers gone cold, NATS killed and started again on the same store: events published
    after the restart reach every trigger (the hub's subscription is restored by the client;
    a reconnect makes every subscription pull once)."""
    server = private_nats()
    stream = StreamSettings(name="coldrestart", replicas=1)
    monkeypatch.setenv("AIRFLOW_CONN_NATS_DEFAULT", f"{server.url}?stream={stream.name}")
    specs = [f"cold{i}:s.e" for i in range(4)]
    queues = [asyncio.Queue() for _ in specs]
    tasks = [asyncio.create_task(_consume(trigger_of(spec), q)) for spec, q in zip(specs, queues, strict=True)]
    try:
        async with EventBus(NatsSettings.from_url(server.url), stream) as bus:
            await _consumers(bus, len(specs), tasks)
        await asyncio.sleep(12)  # past the hot window (2 * ack_wait + 1): every trigger waits cold
        server.kill()
        server.respawn()
        async with EventBus(NatsSettings.from_url(server.url), stream) as bus:
            sent = []
            for i in range(3):
                ev = new_event(source="s", subject="e", type="webhook", data={"i": i})
                await bus.publish(ev, timeout=10)
                sent.append(ev.id)
            for q in queues:
                got = [(await asyncio.wait_for(q.get(), 60))["events"]["d"]["id"] for _ in sent]
                assert got == sent
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=20)
