"""Live sensor: publish->firing latency and sustained firings/s, against raw nats-py in the same run.

    python benchmarks/sensor_live.py [--n 5000] [--rtt 300]

Raw baseline: JetStream publish -> pull fetch -> ack (round trip), and pull consume+ack
rate. Ours: the same events through SensorRuntime (decode, engine, KV state write with
compare-and-set, ack, firing handed to the executor). DESIGN.md targets: median latency
within 2 ms of raw, throughput at least half of raw.
"""

from __future__ import annotations

import argparse
import asyncio
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
        t0 = time.perf_counter()
        got = 0
        while got < n:
            for m in await psub.fetch(64, timeout=5):
                await m.ack()
                got += 1
        return {"rtt": lat, "rate": n / (time.perf_counter() - t0)}
    finally:
        await js.delete_stream(name)
        await nc.close()


async def ours(url: str, n: int, rtt_n: int) -> dict:
    stream = StreamSettings(name="lours" + uuid.uuid4().hex[:8], replicas=1)
    async with EventBus(NatsSettings.from_url(url), stream) as bus:
        fired: asyncio.Queue[float] = asyncio.Queue()

        async def execute(_firing) -> None:
            fired.put_nowait(time.perf_counter())

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
            rt2 = SensorRuntime(rt.sensor, bus, execute)
            await rt2.start()
            stop2 = asyncio.Event()
            t0 = time.perf_counter()
            task2 = asyncio.create_task(rt2.run(stop2))
            for _ in range(n):
                await asyncio.wait_for(fired.get(), 30)
            rate = n / (time.perf_counter() - t0)
            stop2.set()
            await task2
            await rt2.close()
            return {"rtt": lat, "rate": rate}
        finally:
            await bus.js.delete_stream(stream.name)
            await bus.js.delete_key_value(rt.bucket)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--rtt", type=int, default=300)
    args = parser.parse_args()
    with bench_nats() as url:
        base = await raw(url, args.n, args.rtt)
        mine = await ours(url, args.n, args.rtt)
    b50, o50 = statistics.median(base["rtt"]), statistics.median(mine["rtt"])
    print(f"NATS {url}; {args.rtt} round trips, {args.n} events for throughput")
    print(f"raw nats-py publish->fetch->ack   {summary_ms(base['rtt'])}")
    print(f"live sensor publish->firing       {summary_ms(mine['rtt'])}")
    print(f"median difference {1e3 * (o50 - b50):+.3f} ms (target: within +2 ms)")
    print(f"raw consume+ack {base['rate']:,.0f}/s; live sensor {mine['rate']:,.0f} firings/s; "
          f"ratio {ratio(mine['rate'], base['rate'])} (target >= 0.50x)")


if __name__ == "__main__":
    asyncio.run(main())
