"""Lost replies in the SensorTrigger configuration: shared waiting (``shared_wait.py``).

``test_lost_replies.py`` attacks the live sensor of ``sensor run``. A ``SensorTrigger`` runs the
same ``SensorRuntime`` on another path: a ``SensorBus`` whose subscriptions wait for the
``WaitHub``'s doorbell while cold and long-poll only while hot, no idle heartbeats, the runtime's
defaults (ack_wait 5 s, idle_poll 10 s, batch 64), and a journal entry that stays until the
triggerer has taken the event. Here ``SensorTrigger.run()`` itself is driven, as the triggerer
drives it, while the state writes, reads, erases, journal deletes and acks fail before the server
acted or after it (reply lost), and so does the subscription's fetch: a pull that never reached
the server, a pull whose messages the server delivered but the client lost (it raised, or dropped
the batch's tail without a word, as a slow consumer does). The TriggerEvents must be exactly the
offline engine's firings, for an ``a && b`` pair trigger, an ``a || b`` one and a correlated pair.

The second test found a wake-up lost by a failed pull (fixed): see its docstring.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import nats.errors
import pytest

import airflow_argo_events.triggers.sensor as trigger_module
from airflow_argo_events.core.bus import EventBus
from airflow_argo_events.core.bus.consumer import Subscription
from airflow_argo_events.core.bus.kv import StateStore
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.exceptions import EventBusError
from airflow_argo_events.core.runtime import shared_wait
from airflow_argo_events.core.runtime import state as state_module
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.runtime.shared_wait import SharedWaitSubscription
from airflow_argo_events.testing.plugin import unique_name
from airflow_argo_events.triggers import SensorTrigger
from tests.faults.test_lost_replies import Faults, inject, lost
from tests.support import expected_firings, pair_events, pair_sensor_doc, wait_until

pytestmark = pytest.mark.timeout(120)  # a hang detector: each case takes 15-35 s

PAIRS = 80
FETCH_FAULTS = ("after", "after", "dropped", "before", "before")
"""The fetch faults of one case: few, because each lost delivery holds the sensor's order gate
until the server gives it out again (ack_wait, 5 s)."""


@pytest.fixture
def nats_conn(monkeypatch, nats_url, stream):
    monkeypatch.setenv("AIRFLOW_CONN_NATS_DEFAULT", f"{nats_url}?stream={stream.name}")
    monkeypatch.delenv(shared_wait.ENV, raising=False)  # shared waiting on, as in a triggerer


@pytest.fixture
def runtimes(monkeypatch) -> list[SensorRuntime]:
    """The runtimes SensorTrigger builds (for the report and for the test to see their config)."""
    made: list[SensorRuntime] = []

    class Recorded(SensorRuntime):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(trigger_module, "SensorRuntime", Recorded)
    return made


class FetchFaults:
    """Fetch failures of the sensor's shared-wait subscription, due when the test says so.

    ``due(kind)``: "before" fails the next fetch call; "after" and "dropped" the next fetch
    that brings messages (one already waiting on the server included)."""

    def __init__(self) -> None:
        self.before_due = 0
        self.deferred: list[str] = []
        self.calls = 0
        self.injected: Counter[str] = Counter()
        self.lost_messages = 0

    def due(self, kind: str) -> None:
        if kind == "before":
            self.before_due += 1
        else:
            self.deferred.append(kind)

    def before(self) -> bool:
        """At the start of a fetch: does its pull fail before reaching the server?"""
        self.calls += 1
        if not self.before_due:
            return False
        self.before_due -= 1
        self.injected["fetch before"] += 1
        return True

    def after(self, got: list) -> str:
        """When a fetch returns ``got``: "after", "dropped" or "ok"."""
        if not self.deferred or len(got) < (2 if self.deferred[0] == "dropped" else 1):
            return "ok"
        return self.deferred.pop(0)

    def lost(self, kind: str, n: int) -> None:
        self.injected[f"fetch {kind}"] += 1
        self.lost_messages += n


def pull_failed(sub: Subscription) -> EventBusError:
    err = EventBusError(f"fetch from {sub.subject} ({sub.durable}): TimeoutError: nats: timeout")
    err.__cause__ = nats.errors.TimeoutError()
    return err


def inject_fetch(monkeypatch: pytest.MonkeyPatch, faults: FetchFaults) -> None:
    """Faults in ``Subscription.fetch`` as ``SharedWaitSubscription.fetch`` calls it (after the
    doorbell and the hot window are dealt with: the pull itself fails)."""
    fetch = Subscription.fetch

    async def faulty_fetch(self, batch=None, timeout=5.0):
        if not isinstance(self, SharedWaitSubscription):
            return await fetch(self, batch, timeout)
        if faults.before():  # the pull request never reached the server
            raise pull_failed(self)
        got = await fetch(self, batch, timeout)
        kind = faults.after(got)
        if kind == "after":  # delivered (pending on the server until ack_wait), lost here
            faults.lost(kind, len(got))
            raise pull_failed(self)
        if kind == "dropped":  # the batch's tail lost without an error
            keep = random.Random(len(got)).randrange(1, len(got))
            faults.lost(kind, len(got) - keep)
            return got[:keep]
        return got

    monkeypatch.setattr(Subscription, "fetch", faulty_fetch)


def inject_seen(monkeypatch: pytest.MonkeyPatch, faults: Faults) -> None:
    """``StateStore.seen`` (read for every firing of a redelivered message) fails too. At its own,
    lower rate: a batch of 128 redelivered messages makes 128 reads, all of which must pass for
    the batch to be stored, so at 20% a batch would never get through while the faults last."""
    seen = StateStore.seen

    async def faulty_seen(self, key):
        if faults.pick("seen") != "ok":  # a read changes nothing: both kinds are one
            raise lost("seen")
        return await seen(self, key)

    monkeypatch.setattr(StateStore, "seen", faulty_seen)


async def take_events(trigger: SensorTrigger, fired: Counter[str], mismatched: list[str]) -> None:
    """Iterate ``run()`` as the triggerer does: each event is taken at once."""
    async for event in trigger.run():
        p = event.payload
        fired[p["firing_id"]] += 1
        if p["trigger"] == "pair":
            a, b = p["events"]["a"]["data"]["i"], p["events"]["b"]["data"]["i"]
            if a != b:
                mismatched.append(f"{p['firing_id']}: a{a} b{b}")


async def listening(runtimes: list[SensorRuntime], task: asyncio.Task) -> SensorRuntime:
    """The trigger's runtime, once it consumes (its consumers exist: ``deliver=new`` sees what follows)."""
    def ready() -> bool:
        assert not task.done(), task.exception()
        return bool(runtimes) and runtimes[0]._dispatcher is not None

    assert await wait_until(ready, 60), "the trigger never started"
    rt = runtimes[0]
    assert [type(s) for s in rt._subs] == [SharedWaitSubscription], "not the shared-wait path"
    return rt


async def stop_trigger(task: asyncio.Task) -> None:
    task.cancel()  # as the triggerer cancels a trigger: run()'s finally stops and closes the runtime
    done, _ = await asyncio.wait({task}, timeout=30)
    assert done, "the trigger did not stop within 30 s"


@pytest.mark.parametrize(("correlated", "seed"), [(False, 1), (True, 2)], ids=["plain-1", "correlated-2"])
async def test_every_firing_is_yielded_once_when_shared_wait_pulls_and_state_calls_fail(
        nats_settings, stream, nats_conn, runtimes, monkeypatch, correlated, seed):
    doc = pair_sensor_doc("http://unused.invalid/fired", name=unique_name("lostshared"), correlated=correlated)
    # beside the pairs, a trigger every event fires on its own (Argo's `||`: one firing per event)
    doc["spec"]["triggers"].append({"template": {"name": "either", "conditions": "a || b", "log": {}}})
    events = pair_events(PAIRS, prefix=f"{seed}-", interleave=10 if correlated else 0)
    expected = expected_firings(doc, events)
    assert len(expected) == PAIRS + len(events)

    faults = Faults(seed, rate=0.2)
    inject(monkeypatch, faults)
    seen_faults = Faults(seed, rate=0.02)
    inject_seen(monkeypatch, seen_faults)
    # Entries forget applied sequences once they are settled for this long (30 s in
    # production): short here, so that forgetting happens while the faults last.
    monkeypatch.setattr(state_module, "ACKED_GRACE", 3.0)
    fetch_faults = FetchFaults()
    inject_fetch(monkeypatch, fetch_faults)
    plan = random.Random(seed)
    # The fetch faults close together at a seeded point of the publishing, four events apart (a
    # fetch that works in between resets the runtime's backoff: a run of failed fetches is the
    # other test's subject). The order gate holds what comes meanwhile in one or two big
    # batches; before and after, batches are small, and the state calls many.
    start = plan.randrange(10, len(events) // 2)
    points = {start + 4 * k: kind for k, kind in enumerate(plan.sample(FETCH_FAULTS, len(FETCH_FAULTS)))}

    fired: Counter[str] = Counter()
    mismatched: list[str] = []
    trigger = SensorTrigger(sensor=doc)
    task = asyncio.create_task(take_events(trigger, fired, mismatched))
    try:
        rt = await listening(runtimes, task)
        assert (rt._ack_wait, rt._idle_poll, rt._batch) == (5.0, 10.0, 64)  # SensorTrigger's configuration
        faults.armed = seen_faults.armed = True
        async with EventBus(nats_settings, stream) as bus:
            pace = random.Random(seed)
            for i, ev in enumerate(events):  # batches of one to many: a pair's events often meet in separate batches
                if i in points:
                    fetch_faults.due(points[i])
                await bus.publish(ev)
                if pace.random() < 0.5:
                    await asyncio.sleep(0.05)
        # Faults while most of the pairs are processed, then none, so the rest can settle. At
        # most 12 s: a batch the order gate released whole (up to 256 messages) may not get
        # through while every request fails at random (a retry reads the journal entry of each
        # of its firings whose create conflicted, one by one), and waits for the faults to end.
        await wait_until(lambda: len(fired) >= 0.8 * len(expected) or task.done(), 12)
        faults.armed = seen_faults.armed = False
        done = await wait_until(lambda: set(fired) >= expected or task.done(), 60)
        await asyncio.sleep(rt._ack_wait + 1.5)  # redeliveries after ack_wait would show up here
        assert not task.done(), task.exception()
    finally:
        await stop_trigger(task)
    injected = {**faults.injected, **seen_faults.injected, **fetch_faults.injected}
    report = (f"injected {injected} ({fetch_faults.lost_messages} fetched messages lost); fired {len(fired)} of "
              f"{len(expected)}; stats {({k: v for k, v in rt.stats.items() if v})}; gate {rt._gate.stats}; "
              f"missing {sorted(expected - set(fired))[:5]} journal {sorted(rt._journal)[:5]}")
    assert done, report
    # the faults really happened (fewer than test_lost_replies.py sees: the order gate's holds
    # merge many messages into few batches, hence few state calls, and a batch firing one
    # trigger journals in its entry's write: one call where a chunk took three)
    assert sum(faults.injected.values()) >= 3, report
    # every planned fetch fault happened (none waits for messages that never came)
    assert sum(fetch_faults.injected.values()) == len(FETCH_FAULTS) and fetch_faults.lost_messages, report
    assert not expected - set(fired), f"lost {sorted(expected - set(fired))[:5]}; {report}"
    assert not set(fired) - expected, f"unexpected {sorted(set(fired) - expected)[:5]}; {report}"
    assert not mismatched, f"{mismatched[:5]}; {report}"
    repeated = {k: n for k, n in fired.items() if n > 1}
    assert not repeated, f"yielded twice: {list(repeated)[:5]}; {report}"


async def test_a_run_of_failed_pulls_does_not_strand_an_event_it_was_rung_for(
        nats_settings, stream, nats_conn, runtimes, monkeypatch):
    """Found by this test, fixed since: ``SharedWaitSubscription.fetch`` cleared the doorbell
    before the pull and extended the hot window only when a pull returned messages. A pull that
    raised (JetStream answering 503 for a while, a consumer leader election: no reconnect) ate
    the ring. The runtime retries with doubling pauses (0.1 s ... 5 s); after seven failures in
    a row (about 11 s) the hot window (2 * ack_wait + 1 = 11 s) was over, the doorbell quiet,
    and the next fetch waited for a new publish or the safety pull (SAFETY_POLL, 240-360 s)
    while the event sat on the consumer: delivered once, lost by the client, redelivered to
    nobody. Now a failed pull leaves the next one hot for the whole window.

    Here: one event is published; the pull that got it loses it (delivered, reply lost), the
    next six pulls never reach the server, then the bus is fine again. The event's firing must
    come in the seconds after that (ack_wait), not minutes later.
    """
    faults = FetchFaults()
    inject_fetch(monkeypatch, faults)
    fired: Counter[str] = Counter()
    trigger = SensorTrigger(name=unique_name("stranded"),
                            dependencies=[{"name": "d", "eventSourceName": "src", "eventName": "ev"}])
    task = asyncio.create_task(take_events(trigger, fired, []))
    try:
        rt = await listening(runtimes, task)
        sub = rt._subs[0]
        await asyncio.sleep(0.5)  # the first (hot) pull is open on the server
        # the fetch open when the event comes loses it; the next six fail before reaching the server
        faults.due("after")
        for _ in range(6):
            faults.due("before")
        async with EventBus(nats_settings, stream) as bus:
            await bus.publish(new_event(source="src", subject="ev", type="webhook", data={}, id="stranded-1"))
        # the failures run their course: seven fetches in about 6 s of the runtime's backoff, and
        # its next pause (5 s) outlasts the hot window
        assert await wait_until(lambda: faults.injected["fetch before"] == 6 or task.done(), 30), faults.injected
        assert dict(faults.injected) == {"fetch after": 1, "fetch before": 6}
        # Hang detector, not a timing assertion: ack_wait (5 s) is when the server gives the
        # event out again; 20 s is far from both that and the safety pull (240 s at the least).
        fetched = await wait_until(lambda: bool(fired) or task.done(), 20)
        assert not task.done(), task.exception()
        report = (f"stats {({k: v for k, v in rt.stats.items() if v})}; subscription hot {sub.hot}, doorbell "
                  f"rung {sub._bell.rang}, pulls {sub.pulls}; consumer ack pending "
                  f"{(await sub.info()).num_ack_pending}")
    finally:
        await stop_trigger(task)
    assert fetched, f"the event waits for the safety pull (up to {shared_wait.SAFETY_POLL * 1.2:.0f} s): {report}"
    assert sum(fired.values()) == 1, report
