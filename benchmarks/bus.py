"""Bus benchmark: raw nats-py JetStream against our EventBus with CloudEvents, in one run.

    python benchmarks/bus.py [--n 3000]

Prints publish rate (with acks), pull consume+ack rate, and publish->consume round-trip
latency for both, and the ratio ours/raw (rates: higher is better; latency: lower).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import nats  # noqa: E402
from _common import bench_nats, ratio, summary_ms  # noqa: E402

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings  # noqa: E402
from airflow_argo_events.core.events import new_event  # noqa: E402

PAYLOAD = {"header": {"Content-Type": ["application/json"]}, "body": {"order": 42, "items": ["a", "b"]}}


async def raw(url: str, n: int, rtt_n: int) -> dict[str, object]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    name = "braw" + uuid.uuid4().hex[:8]
    await js.add_stream(name=name, subjects=[f"{name}.>"])
    body = json.dumps(PAYLOAD).encode()
    try:
        psub = await js.pull_subscribe(f"{name}.s.e", durable="d", stream=name)
        t0 = time.perf_counter()
        for i in range(n):
            await js.publish(f"{name}.s.e", body, headers={"Nats-Msg-Id": str(i)})
        pub = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = 0
        while got < n:
            for m in await psub.fetch(100, timeout=5):
                json.loads(m.data)
                await m.ack()
                got += 1
        cons = n / (time.perf_counter() - t0)
        lat = []
        for i in range(rtt_n):
            t0 = time.perf_counter()
            await js.publish(f"{name}.s.e", body, headers={"Nats-Msg-Id": f"r{i}"})
            (m,) = await psub.fetch(1, timeout=5)
            json.loads(m.data)
            await m.ack()
            lat.append(time.perf_counter() - t0)
        return {"publish/s": pub, "consume+ack/s": cons, "rtt": lat}
    finally:
        await js.delete_stream(name)
        await nc.close()


async def ours(url: str, n: int, rtt_n: int, ack_wait: bool) -> dict[str, object]:
    stream = StreamSettings(name="bours" + uuid.uuid4().hex[:8], replicas=1)
    async with EventBus(NatsSettings.from_url(url), stream) as bus:
        try:
            sub = await bus.subscribe("d", "s", "e", batch=100)
            events = [new_event(source="s", subject="e", type="webhook", data=PAYLOAD) for _ in range(n)]
            t0 = time.perf_counter()
            for ev in events:
                await bus.publish(ev)
            pub = n / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            got = 0
            while got < n:
                for d in await sub.fetch(100, timeout=5):
                    await d.ack(wait=ack_wait)
                    got += 1
            cons = n / (time.perf_counter() - t0)
            lat = []
            for _ in range(rtt_n):
                t0 = time.perf_counter()
                await bus.publish(new_event(source="s", subject="e", type="webhook", data=PAYLOAD))
                (d,) = await sub.fetch(1, timeout=5)
                await d.ack(wait=ack_wait)
                lat.append(time.perf_counter() - t0)
            return {"publish/s": pub, "consume+ack/s": cons, "rtt": lat}
        finally:
            await bus.js.delete_stream(stream.name)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rtt", type=int, default=300)
    args = parser.parse_args()
    with bench_nats() as url:
        base = await raw(url, args.n, args.rtt)
        fast = await ours(url, args.n, args.rtt, ack_wait=False)
        safe = await ours(url, args.n, args.rtt, ack_wait=True)
    print(f"NATS {url}, {args.n} messages, {args.rtt} round trips")
    print(f"{'':28}{'raw nats-py':>16}{'ours (ack)':>16}{'ratio':>8}{'ours (ack_sync)':>18}{'ratio':>8}")
    for key in ("publish/s", "consume+ack/s"):
        b, f, s = base[key], fast[key], safe[key]
        print(f"{key:28}{b:16.0f}{f:16.0f}{ratio(f, b):>8}{s:18.0f}{ratio(s, b):>8}")
    print(f"{'round trip':28}{summary_ms(base['rtt'])}")
    print(f"{'  ours (ack)':28}{summary_ms(fast['rtt'])}")
    print(f"{'  ours (ack_sync)':28}{summary_ms(safe['rtt'])}")
    import statistics

    b50 = statistics.median(base["rtt"])
    print(f"round-trip p50 ratio ours/raw: {ratio(statistics.median(fast['rtt']), b50)} (ack), "
          f"{ratio(statistics.median(safe['rtt']), b50)} (ack_sync)")


if __name__ == "__main__":
    asyncio.run(main())
