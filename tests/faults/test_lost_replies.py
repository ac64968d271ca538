"""Every bus call of the live sensor failing at random, before or after the server acted.

A request to NATS can fail two ways that look the same to the client: the server never got
it, or it did what was asked and the reply was lost (a stall, a dropped connection). The
sensor must treat both alike and still make each expected firing exactly once. This test
injects both kinds into every state write, read, erase, journal delete and ack, at random
(seeded), under a stream of pairs (an ``a && b`` trigger and an ``a || b`` one), and
compares the firings with an offline engine's. It found a firing lost until restart: a
trigger entry stored with its reply lost made the retried batch see its messages as
applied and stage nothing (see ``SensorRuntime._stored_earlier``).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

import airflow_argo_events.core.runtime.sensor_runtime as runtime_module
from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.bus.kv import StateStore
from airflow_argo_events.core.exceptions import EventBusError
from airflow_argo_events.core.runtime import state as state_module
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name
from tests.support import expected_firings, pair_events, pair_sensor_doc, running_sensor, wait_until

pytestmark = pytest.mark.timeout(240)

PAIRS = 120


class Faults:
    """Decides, per call, whether the server acts and whether the client hears back."""

    def __init__(self, seed: int, rate: float) -> None:
        self.rng = random.Random(seed)
        self.rate = rate
        self.armed = False
        self.injected: Counter[str] = Counter()

    def pick(self, what: str) -> str:
        """"ok", "before" (nothing reaches the server) or "after" (done, reply lost)."""
        if not self.armed or self.rng.random() >= self.rate:
            return "ok"
        kind = self.rng.choice(("before", "after"))
        self.injected[f"{what} {kind}"] += 1
        return kind


def lost(what: str) -> EventBusError:
    return EventBusError(f"{what}: no reply within 5s")


def inject(monkeypatch: pytest.MonkeyPatch, faults: Faults) -> None:
    put_many, delete_many, erase, get_raw = (StateStore.put_many, StateStore.delete_many, StateStore.erase,
                                             StateStore.get_raw)
    erase_many = StateStore.erase_many
    send_acks = runtime_module.send_acks_unconfirmed

    async def faulty_put_many(self, items):
        kind = faults.pick("put")
        if kind == "before":
            return [lost("put") for _ in items]
        results = await put_many(self, items)
        if kind == "after":  # all stored; some or all replies lost
            cut = faults.rng.randrange(len(items)) if items else 0
            return [*results[:cut], *(lost("put") for _ in results[cut:])]
        return results

    async def faulty_delete_many(self, keys, confirm_each=True, ttl=None):
        kind = faults.pick("delete")
        if kind == "before":
            return [lost("delete") for _ in keys]
        results = await delete_many(self, keys, confirm_each, ttl)
        return [lost("delete") for _ in keys] if kind == "after" else results

    async def faulty_erase(self, key, revision=None):
        kind = faults.pick("erase")
        if kind == "before":
            raise lost("erase")
        await erase(self, key, revision)
        if kind == "after":
            raise lost("erase")

    async def faulty_erase_many(self, keys):
        kind = faults.pick("erase")
        if kind == "before":
            return [lost("erase") for _ in keys]
        results = await erase_many(self, keys)
        return [lost("erase") for _ in keys] if kind == "after" else results

    async def faulty_get_raw(self, key):
        if faults.pick("get") != "ok":  # a read changes nothing: both kinds are one
            raise lost("get")
        return await get_raw(self, key)

    async def faulty_send_acks(deliveries, pipeline):
        # Acks are not confirmed: a lost one is a redelivery after ack_wait, and only the
        # server's ack floor may let an entry forget a sequence. So lose some outright.
        kind = faults.pick("ack")
        if kind == "before":  # none sent
            return lost("ack")
        if kind == "after":  # the connection dropped mid-batch: the first ones went out
            await send_acks(deliveries[:faults.rng.randrange(len(deliveries) + 1)], pipeline)
            return lost("ack")
        return await send_acks(deliveries, pipeline)

    monkeypatch.setattr(StateStore, "put_many", faulty_put_many)
    monkeypatch.setattr(StateStore, "delete_many", faulty_delete_many)
    monkeypatch.setattr(StateStore, "erase", faulty_erase)
    monkeypatch.setattr(StateStore, "erase_many", faulty_erase_many)
    monkeypatch.setattr(StateStore, "get_raw", faulty_get_raw)
    monkeypatch.setattr(runtime_module, "send_acks_unconfirmed", faulty_send_acks)


@pytest.mark.parametrize(("correlated", "seed", "own_server"),
                         [(False, 1, False), (False, 2, False), (True, 3, False), (False, 4, True)],
                         ids=["plain-1", "plain-2", "correlated-3", "plain-4-own-server"])
async def test_every_pair_fires_once_when_bus_calls_fail_before_or_after_the_server_acted(
        nats_settings, stream, private_nats, monkeypatch, correlated, seed, own_server):
    if own_server:  # the wheel's nats-server (2.11+): finished firings' markers expire on the server
        nats_settings = NatsSettings.from_url(private_nats().url)
        stream = StreamSettings(name=unique_name("s"), replicas=1)
    doc = pair_sensor_doc("http://unused.invalid/fired", name=unique_name("lost"), correlated=correlated)
    # beside the pairs, a trigger every event fires on its own (Argo's `||`: one firing per event)
    doc["spec"]["triggers"].append({"template": {"name": "either", "conditions": "a || b", "log": {}}})
    events = pair_events(PAIRS, prefix=f"{seed}-", interleave=10 if correlated else 0)
    for ev in events:  # the doc listens on src/ev
        assert ev.source == "src"
    expected = expected_firings(doc, events)
    assert len(expected) == PAIRS + len(events)
    faults = Faults(seed, rate=0.2)
    inject(monkeypatch, faults)
    # Entries forget applied sequences once the sampled ack floor has passed them for this
    # long (30 s in production): short here, so that forgetting happens during the faults, and
    # a floor taken for settled too early shows as a pair applied twice. Longer than a batch's
    # retries (backoff from 0.1 s), which may hold a redelivered copy behind them.
    monkeypatch.setattr(state_module, "ACKED_GRACE", 1.5)
    monkeypatch.setattr(runtime_module, "SWEEP_EVERY", 0.25)  # the floors sampled four times a second
    monkeypatch.setattr(runtime_module, "PRUNE_AT", 4)  # as soon as an entry holds a few
    fired: Counter[str] = Counter()
    mismatched: list[str] = []

    async def action(firing) -> None:
        fired[firing.id] += 1
        if firing.trigger != "pair":
            return
        a, b = firing.events["a"].data["i"], firing.events["b"].data["i"]
        if a != b:
            mismatched.append(f"{firing.id}: a{a} b{b}")

    async with EventBus(nats_settings, stream) as bus:
        rt = SensorRuntime(Sensor.model_validate(doc), bus, action, idle_poll=0.5, batch=16, ack_wait=2.0)
        await rt.start()
        assert not own_server or rt.store.expiring_markers or not bus.msg_ttl
        faults.armed = True
        async with running_sensor(rt, quiet=True, start=False):
            pace = random.Random(seed)
            for ev in events:  # batches of one to many, so a pair's events often meet in separate batches
                await bus.publish(ev)
                if pace.random() < 0.5:
                    await asyncio.sleep(0.01)
            # faults while most of the pairs are processed, then none, so the rest can settle
            await wait_until(lambda: len(fired) >= 0.8 * len(expected), 90)
            faults.armed = False
            done = await wait_until(lambda: set(fired) >= expected, 90)
            await asyncio.sleep(3)  # redeliveries after ack_wait would show up here
        report = (f"injected {dict(faults.injected)}; fired {len(fired)} of {len(expected)}; "
                  f"stats {({k: v for k, v in rt.stats.items() if v})}; "
                  f"missing {sorted(expected - set(fired))[:5]} journal {sorted(rt._journal)[:5]} running "
                  f"{sorted(rt._running)[:5]} ready {rt._ready.qsize()} finished-missing "
                  f"{[f for f in expected - set(fired) if f in rt._finished][:5]}")
        assert done, report
        # the floors are sampled (a fast run may end before one is 1.5 s old, or with every sample
        # taken while a lost ack held the floor at 0: nothing asks for one once entries are idle)
        rt._sample_due.set()
        assert await wait_until(lambda: rt._settled_floor() > 0, 10), f"no ack floor sampled; {report}"
        assert sum(faults.injected.values()) >= 10, report  # the faults really happened
        assert not expected - set(fired), f"lost {sorted(expected - set(fired))[:5]}; {report}"
        assert not set(fired) - expected, f"unexpected {sorted(set(fired) - expected)[:5]}; {report}"
        assert not mismatched, f"{mismatched[:5]}; {report}"
        repeated = {k: n for k, n in fired.items() if n > 1}
        assert not repeated, f"ran twice in one process: {list(repeated)[:5]}; {report}"
