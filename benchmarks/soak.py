"""Soak: a million events through a live sensor whose action is slow; memory and KV must stay flat.

    python benchmarks/soak.py [--events 1000000] [--quick] [--action-ms 50] [--concurrency 16]

A pair sensor (``a && b``: one firing per two events) runs as a SensorRuntime on a private
``nats-server`` (``--nats URL`` to use another). Its executor sleeps ``--action-ms`` per
firing, at most ``--concurrency`` at a time, so actions fall behind the bus on purpose. The
publisher keeps at most ``--backlog`` events ahead of the sensor's ack floor (the stream keeps
50,000 events and discards the oldest: an unbounded publisher would lose events, not test
the sensor). Every ``--every`` seconds one line shows events published and acked, firings
done, process RSS, the sensor's KV bucket bytes and the consumer's pending counts.

The baseline is the same run's first sample after warm-up: the summary prints RSS and KV
bytes at the end against it (flat, about 1.0x, is the goal; the bound of the design is
that neither grows with the number of events or the backlog of firings).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import ratio  # noqa: E402

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings  # noqa: E402
from airflow_argo_events.core.bus.embedded import EmbeddedNats  # noqa: E402
from airflow_argo_events.core.events import new_event  # noqa: E402
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime  # noqa: E402
from airflow_argo_events.core.spec.sensor import Sensor  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Resident set size of this process (second field of /proc/self/statm, in pages)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def pair_sensor(name: str) -> Sensor:
    def kind(k: str) -> dict[str, object]:
        return {"data": [{"path": "kind", "type": "string", "value": [k]}]}

    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "soak", "eventName": "ev", "filters": kind("a")},
                         {"name": "b", "eventSourceName": "soak", "eventName": "ev", "filters": kind("b")}],
        "triggers": [{"template": {"name": "slow", "conditions": "a && b", "log": {}}}]}})


@dataclass
class Sample:
    t: float
    published: int
    acked: int
    firings: int
    running: int
    rss: int
    kv_bytes: int
    kv_msgs: int
    num_pending: int
    ack_pending: int


@dataclass
class Soak:
    events: int
    action_s: float
    concurrency: int
    backlog: int
    published: int = 0
    firings_started: int = 0
    firings_done: int = 0
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.concurrency)

    async def execute(self, _firing: object) -> None:
        async with self.slots:
            self.firings_started += 1
            await asyncio.sleep(self.action_s)
            self.firings_done += 1


async def sample(soak: Soak, bus: EventBus, bucket: str, t0: float) -> Sample:
    kv = await bus.js.stream_info(f"KV_{bucket}")
    infos = await bus.js.consumers_info(bus.stream.name)
    acked = min((i.ack_floor.stream_seq or 0 for i in infos if i.ack_floor), default=0)
    return Sample(time.monotonic() - t0, soak.published, acked, soak.firings_done,
                  soak.firings_started - soak.firings_done, rss_bytes(), kv.state.bytes, kv.state.messages,
                  sum(i.num_pending or 0 for i in infos), sum(i.num_ack_pending or 0 for i in infos))


def line(s: Sample) -> str:
    return (f"{s.t:8.1f}s published {s.published:>9,} acked {s.acked:>9,} firings {s.firings:>8,} "
            f"(running {s.running:>5,})  RSS {mib(s.rss):>11}  KV {s.kv_bytes:>11,} B / {s.kv_msgs} msgs  "
            f"pending {s.num_pending:>6,} ack-pending {s.ack_pending:>5,}")


async def publish_all(soak: Soak, bus: EventBus, run_id: str, window: int = 64) -> None:
    """Publish ``a0, b0, a1, b1, ...`` (``window`` in flight at once, so the bus outruns the
    actions), staying at most ``backlog`` events ahead of the sensor's ack floor."""

    async def one(n: int) -> None:
        ev = new_event(source="soak", subject="ev", type="webhook", data={"kind": "ab"[n % 2], "i": n // 2},
                       id=f"{run_id}-{n}")
        while True:
            try:
                await bus.publish(ev, timeout=5)
                return
            except Exception as err:  # retry the same id: the stream de-duplicates it
                print(f"publish {n} failed ({err}); retrying", flush=True)
                await asyncio.sleep(0.5)

    acked = 0
    while soak.published < soak.events:
        if soak.published - acked >= soak.backlog:
            infos = await bus.js.consumers_info(bus.stream.name)
            acked = min((i.ack_floor.stream_seq or 0 for i in infos if i.ack_floor), default=0)
            if soak.published - acked >= soak.backlog:
                await asyncio.sleep(0.05)
            continue
        n = soak.published
        size = min(window, soak.events - n, soak.backlog - (n - acked))
        await asyncio.gather(*(one(i) for i in range(n, n + size)))
        soak.published += size


async def soak_run(url: str, args: argparse.Namespace) -> int:
    run_id = uuid.uuid4().hex[:8]
    name = f"soak-{run_id}"
    bucket = f"sensor-{name}"
    # max_msgs above the backlog, so "discard old" never drops an event the sensor has not read
    stream = StreamSettings(name=f"soak{run_id}", replicas=1, max_msgs=max(50_000, 4 * args.backlog))
    soak = Soak(args.events, args.action_ms / 1000, args.concurrency, args.backlog)
    expected = args.events // 2
    print(f"soak: {args.events:,} events -> {expected:,} firings; action {args.action_ms} ms x {args.concurrency} "
          f"concurrent (at most ~{1000 * args.concurrency / max(args.action_ms, 1):,.0f} firings/s); "
          f"backlog <= {args.backlog:,}; NATS {url}", flush=True)
    code = 0
    async with EventBus(NatsSettings.from_url(url), stream) as bus, \
            EventBus(NatsSettings.from_url(url, name="soak-publisher"), stream, ensure=False) as pub:
        runtime = SensorRuntime(pair_sensor(name), bus, soak.execute, deliver="all", bucket=bucket,
                                consumer_prefix=name)
        await runtime.start()
        stop = asyncio.Event()
        t0 = time.monotonic()
        run = asyncio.create_task(runtime.run(stop))
        publisher = asyncio.create_task(publish_all(soak, pub, run_id))
        warm = max(2_000, args.events // 100)
        baseline: Sample | None = None
        last_progress, last_done = time.monotonic(), -1
        try:
            while True:
                await asyncio.wait({run}, timeout=args.every)
                s = await sample(soak, bus, bucket, t0)
                soak.samples.append(s)
                print(line(s), flush=True)
                if baseline is None and s.acked >= warm:
                    baseline = s
                    print(f"  baseline (after {s.acked:,} events acked): RSS {mib(s.rss)}, KV {s.kv_bytes:,} B",
                          flush=True)
                if run.done():
                    err = run.exception()
                    print(f"SensorRuntime.run ended early: {err!r}", flush=True)
                    code = 1
                    break
                if soak.firings_done >= expected and publisher.done():
                    break
                if soak.firings_done != last_done:
                    last_progress, last_done = time.monotonic(), soak.firings_done
                elif time.monotonic() - last_progress > args.stall:
                    print(f"no firing finished for {args.stall:.0f} s: giving up", flush=True)
                    code = 1
                    break
        except (KeyboardInterrupt, asyncio.CancelledError):
            print("interrupted", flush=True)
            code = 130
        finally:
            publisher.cancel()
            stop.set()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(run, 30)
            with contextlib.suppress(BaseException):
                await runtime.close(drain_timeout=10)
            end = await sample(soak, bus, bucket, t0)
            for cleanup in (bus.js.delete_stream(stream.name), bus.js.delete_key_value(bucket)):
                with contextlib.suppress(Exception):
                    await cleanup
    last = soak.samples[-1] if soak.samples else end  # the last sample while running
    base = baseline or (soak.samples[0] if soak.samples else end)
    rss_max = max(s.rss for s in soak.samples or [end])
    kv_max = max(s.kv_bytes for s in soak.samples or [end])
    elapsed = max(last.t, 1e-9)
    print(f"summary: {last.published:,} events published, {last.acked:,} acked, {last.firings:,}/{expected:,} "
          f"firings in {elapsed:,.0f} s ({last.firings / elapsed:,.0f} firings/s); "
          f"RSS {mib(base.rss)} -> {mib(last.rss)}, growth {ratio(last.rss, base.rss)} "
          f"(max {mib(rss_max)}, {ratio(rss_max, base.rss)}); "
          f"KV {base.kv_bytes:,} -> {last.kv_bytes:,} B, growth {ratio(last.kv_bytes, base.kv_bytes)} "
          f"(max {kv_max:,} B, {ratio(kv_max, base.kv_bytes)}); goal: all ~1.00x; "
          f"after stop: {end.firings:,} firings, KV {end.kv_bytes:,} B; exit {code}", flush=True)
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20,000 events, a line every 2 s")
    parser.add_argument("--action-ms", type=float, default=50.0, help="how long each firing's action takes")
    parser.add_argument("--concurrency", type=int, default=16, help="actions running at once")
    parser.add_argument("--backlog", type=int, default=10_000, help="most events published ahead of the acks")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between lines")
    parser.add_argument("--stall", type=float, default=120.0, help="give up after this long without a firing")
    parser.add_argument("--nats", help="NATS URL (default: a private nats-server in a temp dir)")
    args = parser.parse_args()
    if args.quick:
        args.events, args.every = 20_000, 2.0
    if args.nats:
        return asyncio.run(soak_run(args.nats, args))
    with EmbeddedNats.start() as server:
        return asyncio.run(soak_run(server.url, args))


if __name__ == "__main__":
    sys.exit(main())
