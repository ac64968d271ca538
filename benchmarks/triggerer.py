"""Capacity: many SensorTriggers in one process (as in one triggerer) on one NATS connection.

    python benchmarks/triggerer.py [--n 1000]

Starts N SensorTriggers the way the triggerer runs them (``run()`` as tasks in one event
loop), each with its own dependency, then reports: NATS connections used, memory per
trigger (RSS growth / N), idle CPU over 10 s, and publish->TriggerEvent latency of firings
while all N are live, next to a single trigger alone measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp())
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def consume(trigger, queue: asyncio.Queue) -> None:
    """What the triggerer does with a trigger: iterate run() in a task, cancel it to stop."""
    async for event in trigger.run():
        queue.put_nowait(event)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    from airflow_argo_events.core.bus.embedded import EmbeddedNats, usable_local_jetstream

    server = None if os.environ.get("ARGO_EVENTS_NATS_URL") or usable_local_jetstream() else EmbeddedNats.start()
    url = os.environ.get("ARGO_EVENTS_NATS_URL") or (server.url if server else "nats://127.0.0.1:4222")
    try:
        stream = "trig" + uuid.uuid4().hex[:8]
        os.environ["AIRFLOW_CONN_NATS_DEFAULT"] = f"{url}?stream={stream}"
        from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
        from airflow_argo_events.core.bus.connection import pool_size
        from airflow_argo_events.triggers import SensorTrigger

        async with EventBus(NatsSettings.from_url(url), StreamSettings(name=stream, replicas=1)) as bus:
            # baseline: one trigger alone
            from airflow_argo_events.core.events import new_event

            solo_q: asyncio.Queue = asyncio.Queue()
            solo = asyncio.create_task(consume(SensorTrigger(name="solo", dependencies=[
                {"name": "d", "eventSourceName": "bench", "eventName": "solo"}]), solo_q))
            while (await bus.js.stream_info(stream)).state.consumer_count < 1:  # DeliverNew: wait for it
                if solo.done():
                    raise RuntimeError(f"the trigger stopped: {solo.exception()!r}")
                await asyncio.sleep(0.1)
            solo_lat = []
            for _ in range(20):
                t0 = time.perf_counter()
                await bus.publish(new_event(source="bench", subject="solo", type="webhook", data={}))
                await asyncio.wait_for(solo_q.get(), 30)
                solo_lat.append(time.perf_counter() - t0)
            solo.cancel()
            await asyncio.gather(solo, return_exceptions=True)

            rss0 = rss_mb()
            queues = [asyncio.Queue() for _ in range(args.n)]
            t0 = time.perf_counter()
            tasks = [asyncio.create_task(consume(SensorTrigger(name=f"t{i}", dependencies=[
                {"name": "d", "eventSourceName": "bench", "eventName": f"e{i}"}]), queues[i])) for i in range(args.n)]
            while True:
                info = await bus.js.stream_info(stream)
                if info.state.consumer_count >= args.n + 1:  # + the solo trigger's durable
                    break
                await asyncio.sleep(0.5)
            started = time.perf_counter() - t0
            await asyncio.sleep(2)
            rss1 = rss_mb()
            c0, w0 = cpu_seconds(), time.perf_counter()
            await asyncio.sleep(10)
            idle_cpu = (cpu_seconds() - c0) / (time.perf_counter() - w0)
            lat = []
            for i in range(0, args.n, max(1, args.n // 50)):
                t1 = time.perf_counter()
                await bus.publish(new_event(source="bench", subject=f"e{i}", type="webhook", data={"i": i}))
                try:
                    await asyncio.wait_for(queues[i].get(), 30)
                except asyncio.TimeoutError:
                    dead = [t for t in tasks if t.done()]
                    print(f"no firing for trigger {i}; {len(dead)} trigger tasks ended:",
                          [repr(t.exception()) for t in dead[:3]], file=sys.stderr)
                    raise
                lat.append(time.perf_counter() - t1)
            conns = pool_size()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await bus.js.delete_stream(stream)
            for name in [i.config.name for i in await bus.js.streams_info()]:
                if name.startswith("KV_airflow-"):
                    await bus.js.delete_stream(name)
    finally:
        if server is not None:
            server.stop()
    print(f"{args.n} SensorTriggers in one process: all consuming after {started:.1f}s")
    print(f"shared NATS connections in the process: {conns} (the bench's own EventBus included)")
    print(f"memory: +{rss1 - rss0:.0f} MB RSS for {args.n} triggers = {1024 * (rss1 - rss0) / args.n:.0f} KB/trigger")
    print(f"idle CPU with {args.n} triggers waiting: {100 * idle_cpu:.1f}% of one core")
    print(f"publish->TriggerEvent: alone p50 {1e3 * statistics.median(solo_lat):.1f} ms; "
          f"with {args.n} live p50 {1e3 * statistics.median(lat):.1f} ms, p95 {1e3 * pct(lat, 0.95):.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())
