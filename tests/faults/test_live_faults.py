"""The live sensor under what production sends it (issue 11, findings 1-5 and the error boundary).

Each test reproduces a way the first state model (one KV document) took the process down,
often on every restart, and checks the sensor now stays up, sets the one bad message aside
(dead-letter subject, error in headers) and loses or repeats nothing else.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import string
from collections import Counter

import pytest

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.runtime import state as st
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.sensor.engine import Engine
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name

from ..integration.test_sensor_runtime import Collector, running, until

pytestmark = pytest.mark.timeout(180)


def pair_sensor(name: str, **dep_extra: object) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "shop", "eventName": "order", **dep_extra},
                         {"name": "b", "eventSourceName": "shop", "eventName": "pay"}],
        "triggers": [{"template": {"name": "both", "conditions": "a && b", "log": {}}}]}})


def any_sensor(name: str) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "shop", "eventName": "order"}],
        "triggers": [{"template": {"name": "each", "log": {}}}]}})


def ev(subject: str, data: object = None, id: str | None = None, **kw: object):
    return new_event(source="shop", subject=subject, type="webhook", data=data if data is not None else {}, id=id, **kw)


async def kv_bytes(bus: EventBus, bucket: str) -> int:
    info = await bus.js.stream_info(f"KV_{bucket}")
    return info.state.bytes


async def dead_letters(bus: EventBus, sensor: str) -> list:
    """Messages on ``<stream>.dlq.<sensor>``, read with an ephemeral consumer."""
    sub = await bus.js.pull_subscribe(bus.stream.subject("dlq", sensor), stream=bus.stream.name)
    try:
        return await sub.fetch(100, timeout=1)
    except Exception:
        return []
    finally:
        await sub.unsubscribe()


def noise(n: int, seed: int = 1) -> str:
    """Text that compresses poorly (random printable characters)."""
    rng = random.Random(seed)
    return "".join(rng.choices(string.ascii_letters + string.digits + string.punctuation, k=n))


async def test_large_event_is_stored_once_and_fires_with_its_data(bus: EventBus):
    """Finding 1: a 600 KB event was stored twice in one document past max_payload; the process exited."""
    sensor = pair_sensor(unique_name("s"))
    got = Collector()
    big = noise(600_000)
    async with running(sensor, bus, got) as rt:
        await bus.publish(ev("order", {"blob": big}, id="big"))
        await until(lambda: rt.stats["events"] == 1)
        saved_bytes = await kv_bytes(bus, rt.bucket)
        assert saved_bytes < 700_000, f"the saved event is stored more than once ({saved_bytes} bytes)"
        await bus.publish(ev("pay", id="p"))
        await until(lambda: len(got.firings) == 1)
        await until(lambda: not rt.pending())
    assert got.firings[0].events["a"].data["blob"] == big
    # the blob left with its firing: the bucket is back to small entries
    store = await bus.state(rt.bucket)
    assert [k for k in await store.keys() if k.startswith("e.")] == []


async def test_large_event_survives_a_restart_from_its_blob(bus: EventBus):
    sensor = pair_sensor(unique_name("s"))
    got = Collector()
    big = noise(300_000, seed=2)
    async with running(sensor, bus, got) as rt:
        await bus.publish(ev("order", {"blob": big}, id="big"))
        await until(lambda: rt.stats["events"] == 1)
    async with running(sensor, bus, got):
        await bus.publish(ev("pay", id="p"))
        await until(lambda: len(got.firings) == 1)
    assert got.firings[0].events["a"].data["blob"] == big


async def test_deeply_nested_event_is_dead_lettered_and_the_next_one_fires(bus: EventBus):
    """Finding 2: data nested ~975 deep decoded, then RecursionError while writing state."""
    sensor = any_sensor(unique_name("s"))
    got = Collector()
    deep = '{"a":' * 975 + "1" + "}" * 975
    raw = ('{"specversion":"1.0","id":"deep","source":"shop","subject":"order","type":"webhook",'
           '"datacontenttype":"application/json","data":' + deep + "}").encode()
    async with running(sensor, bus, got) as rt:
        await bus.js.publish(bus.stream.subject("shop", "order"), raw)
        await bus.publish(ev("order", {"n": 1}, id="fine"))
        await until(lambda: len(got.firings) == 1)
        await until(lambda: rt.stats["dead_lettered"] == 1)
        assert rt.stats["poison"] == 1
    assert [f.events["a"].id for f in got.firings] == ["fine"]
    dlq = await dead_letters(bus, sensor.metadata.name)
    assert len(dlq) == 1
    assert "nested deeper than 128" in dlq[0].headers["Argo-Events-Error"]
    assert dlq[0].headers["Argo-Events-Subject"] == bus.stream.subject("shop", "order")
    assert dlq[0].data == raw  # the message itself, for replay after a fix


async def test_far_future_event_time_with_a_time_filter_does_not_stop_the_sensor(bus: EventBus):
    """Finding 3: time 9999-12-31T23:00Z against a time filter in a far-east zone -> OverflowError."""
    from datetime import datetime, timezone

    sensor = pair_sensor(unique_name("s"), filters={"time": {"start": "00:00:00", "stop": "23:59:59",
                                                             "timezone": "Pacific/Kiritimati"}})
    got = Collector()
    async with running(sensor, bus, got) as rt:
        await bus.publish(ev("order", id="future", time=datetime(9999, 12, 31, 23, 0, tzinfo=timezone.utc)))
        await bus.publish(ev("order", id="now"))
        await bus.publish(ev("pay", id="p"))
        await until(lambda: len(got.firings) == 1)
        assert rt.stats["events"] + rt.stats["poison"] == 3
    assert got.firings[0].events["a"].id == "now"


class Exploding(Engine):
    """An engine whose processing raises for one event id (a stand-in for any bug or hostile input)."""

    def process(self, event, now=None, skip=()):  # type: ignore[override]
        if event.id == "boom":
            raise RecursionError("maximum recursion depth exceeded")
        return super().process(event, now, skip)


async def test_any_exception_for_one_event_is_contained(bus: EventBus):
    sensor = any_sensor(unique_name("s"))
    got = Collector()
    async with running(sensor, bus, got, engine=Exploding(sensor)) as rt:
        for i in range(3):
            await bus.publish(ev("order", id=f"e{i}"))
        await bus.publish(ev("order", id="boom"))
        for i in range(3, 6):
            await bus.publish(ev("order", id=f"e{i}"))
        await until(lambda: len(got.firings) == 6)
        await until(lambda: rt.stats["dead_lettered"] == 1)
    assert sorted(f.events["a"].id for f in got.firings) == [f"e{i}" for i in range(6)]
    (letter,) = await dead_letters(bus, sensor.metadata.name)
    assert letter.headers["Argo-Events-Error"].startswith("RecursionError")
    # terminated, not redelivered: a new process sees nothing of it
    again = Collector()
    async with running(sensor, bus, again, engine=Exploding(sensor)) as rt2:
        await asyncio.sleep(1.0)
        assert rt2.stats["poison"] == 0 and again.firings == []


class Blocked:
    """An action that hangs until released (an HTTP endpoint that accepts and never answers)."""

    def __init__(self):
        self.release = asyncio.Event()
        self.started = 0
        self.done: list[str] = []

    async def __call__(self, firing):
        self.started += 1
        await self.release.wait()
        self.done.append(firing.id)


async def test_slow_action_applies_back_pressure_and_state_stays_small(bus: EventBus):
    """Finding 4: with an action that never answers, every pending firing went into the one
    document; at ~780 it passed 1 MB and the process exited, again after every restart."""
    sensor = any_sensor(unique_name("s"))
    slow = Blocked()
    n = 5000
    async with running(sensor, bus, slow, max_concurrent_actions=4, max_pending_firings=100) as rt:
        for i in range(n):
            await bus.publish(ev("order", {"i": i, "pad": "x" * 200}, id=f"e{i}"))
        await until(lambda: rt.stats["backpressure"] > 0, timeout=30)
        await asyncio.sleep(1.0)
        pending = len(rt.pending())
        assert pending <= 100 + 2 * rt._batch, pending
        size = await kv_bytes(bus, rt.bucket)
        assert size < 400_000, f"KV holds {size} bytes for {pending} pending firings"
        assert slow.started == 4
        slow.release.set()
        await until(lambda: len(slow.done) == n, timeout=150)
    assert len(set(slow.done)) == n


async def test_nats_paused_during_state_writes_is_waited_out(private_nats):
    """Finding 5: NATS stalled 12 s during a state write; nats' TimeoutError escaped and the process exited."""
    server = private_nats()
    settings = NatsSettings.from_url(server.url)
    stream = StreamSettings(name="stall", replicas=1)
    sensor = pair_sensor("stall")
    got = Collector()
    loop = asyncio.get_running_loop()

    class StallsTheBus(Engine):
        """Stops NATS while processing one event, so the state write that follows meets a stalled server."""

        def process(self, event, now=None, skip=()):  # type: ignore[override]
            if event.id == "order10" and not stalled:
                stalled.append(True)
                os.kill(server.process.pid, signal.SIGSTOP)
                loop.call_later(12, os.kill, server.process.pid, signal.SIGCONT)
            return super().process(event, now, skip)

    stalled: list[bool] = []
    try:
        async with EventBus(settings, stream) as bus:
            async with running(sensor, bus, got, ack_wait=2.0, engine=StallsTheBus(sensor)) as rt:
                task_errors: list[BaseException] = []
                await _publish_pairs(bus, 60, task_errors)
                await until(lambda: len(got.firings) >= 60, timeout=90)
                await asyncio.sleep(1.0)
                assert stalled and rt.stats["bus_errors"] > 0
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
    ids = Counter(f.id for f in got.firings)
    assert len(ids) == 60 and max(ids.values()) == 1, ids.most_common(3)
    assert not task_errors


async def _publish_pairs(bus: EventBus, n: int, errors: list[BaseException]) -> None:
    for i in range(n):
        for subject in ("order", "pay"):
            e = ev(subject, {"i": i}, id=f"{subject}{i}")
            for _ in range(200):  # a stalled server: retry the same id (de-duplicated by Nats-Msg-Id)
                try:
                    await bus.publish(e, timeout=1)
                    break
                except Exception:
                    await asyncio.sleep(0.2)
            else:
                errors.append(RuntimeError(f"could not publish {e.id}"))
        await asyncio.sleep(0.1)


async def test_state_layout_v1_is_converted(bus: EventBus):
    """A bucket written by the first release (one ``state`` document) keeps its saved events and journal."""
    sensor = pair_sensor(unique_name("s"))
    rt = SensorRuntime(sensor, bus, Collector())
    store = await bus.state(rt.bucket)
    saved = ev("order", {"k": 1}, id="old-a").to_json()
    pend = {"trigger": "both", "owner": "x", "events": {"a": ev("order", id="pa").to_json(),
                                                          "b": ev("pay", id="pb").to_json()}}
    await store.put("state", {"engine": {"clock": None, "triggers": {"both": {"a": saved}}},
                              "pending": {"f1": pend}, "recent": []})
    got = Collector()
    async with running(sensor, bus, got) as rt:
        await until(lambda: len(got.firings) == 1)  # the journal firing re-ran
        assert got.firings[0].id == "f1"
        await bus.publish(ev("pay", id="new-b"))
        await until(lambda: len(got.firings) == 2)
    assert got.firings[1].events["a"].id == "old-a"
    assert (await store.get("state"))[0] is None


def test_inline_and_blob_refs_round_trip():
    small = ev("order", {"x": 1}, id="s")
    ref, blob = st.new_ref(small, 7, "owner")
    assert blob is None and st.Ref.parse(json.loads(json.dumps(ref.dump()))).event == small
    large = ev("order", {"x": noise(50_000)}, id="l")
    ref, blob = st.new_ref(large, 8, "owner")
    assert blob is not None and ref.blob == blob[0] and blob[1][:1] == b"z"
    assert st.decode_blob(blob[1]) == large
    assert "event" not in ref.dump() and ref.dump()["blob"] == blob[0]


@pytest.mark.parametrize("name, token", [("trigger-1", "trigger-1"), ("a.b", None), ("x y", None), ("", None)])
def test_key_tokens_are_key_safe(name: str, token: str | None):
    got = st.key_token(name)
    assert got == token if token else (got.startswith("=") and len(got) == 25)


def test_applied_sequences_detect_redelivery_exactly():
    e = st.Entry("t")
    for seq in range(1, 200):
        e.saw("a", seq)
    assert e.already_applied(["a"], 199) and e.already_applied(["a"], 3)
    # never inferred from order: a restarted sensor sees newer messages before the redelivered
    # ones, and an older message that was never applied must not be skipped
    assert not e.already_applied(["a"], 200) and not e.already_applied(["a"], 0)
    assert not e.already_applied(["b"], 5)
    e.prune(149)
    assert e.applied["a"] == list(range(150, 200))
    e.saw("a", 199)  # the same message again (a retried batch): recorded once
    assert e.applied["a"] == list(range(150, 200))


def test_a_busy_entry_forgets_only_what_the_newest_ack_floor_passed(monkeypatch):
    """Past APPLIED_CAP an entry drops the sequences at or below the newest floor sample
    (before its grace ran out), never one the server has not seen acked: a lost ack's
    message, redelivered after thousands of newer ones, is still recognised."""
    monkeypatch.setattr(st, "APPLIED_HARD_CAP", 2_000)
    e = st.Entry("t")
    e.saw("a", 5)  # its ack was lost: the floor stays below it
    for seq in range(10, 10 + st.APPLIED_CAP):
        e.saw("a", seq)
    assert e.bound(latest=4) == (True, 0)  # over the cap, nothing acked: all kept, floors asked sooner
    assert e.already_applied(["a"], 5) and len(e.applied["a"]) == st.APPLIED_CAP + 1
    assert e.bound(latest=100) == (False, 0)  # what the floor passed goes, the lost ack's included
    assert e.applied["a"][0] == 101 and len(e.applied["a"]) == st.APPLIED_CAP - 91
    for seq in range(1_000, 1_000 + st.APPLIED_CAP):
        e.saw("a", seq)
    assert e.bound(latest=10**9) == (False, 0) and e.applied == {}
    for seq in range(1, 3_001):  # the floors cannot be asked: the oldest go past the hard cap, counted
        e.saw("a", seq)
    assert e.bound(latest=0) == (True, 1_000) and e.applied["a"][0] == 1_001


async def test_a_restart_applies_what_a_dead_process_left_unacked_in_stream_order(bus: EventBus):
    """A sensor killed with a batch in hand: its replacement waits until those messages are
    due again, so they are applied (not skipped, not overtaken by newer ones)."""
    sensor = pair_sensor(unique_name("s"))
    got = Collector()
    async with running(sensor, bus, got, ack_wait=2.0) as rt:
        durable = next(s.durable for s in rt._subs if s.subject.endswith(".order"))
    victim = await bus.subscribe(durable, "shop", "order", ack_wait=2.0)
    for i in range(20):
        await bus.publish(ev("order", {"i": i}, id=f"o{i}"))
    taken = []
    while len(taken) < 20:  # a pull may hand over what arrived first (the rest come in later reads)
        more = await victim.fetch(20 - len(taken), timeout=5)
        assert more, f"only {len(taken)} of 20 messages fetched"
        taken += more
    assert len(taken) == 20
    await victim.unsubscribe()  # dies without acking
    async with running(sensor, bus, got, ack_wait=2.0) as rt:
        await until(lambda: rt.stats["events"] == 20, timeout=20)
        await bus.publish(ev("pay", id="p1"))
        await until(lambda: len(got.firings) == 1, timeout=20)
        for i in range(100):
            await bus.publish(ev("order", {"i": 100 + i}, id=f"n{i}"))
        await until(lambda: rt.stats["events"] == 121, timeout=20)
        await bus.publish(ev("pay", id="p2"))
        await until(lambda: len(got.firings) == 2, timeout=20)
        assert rt.stats["skipped"] == 0
    assert [f.events["a"].id for f in got.firings] == ["o19", "n99"]
