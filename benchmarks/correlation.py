"""Correlation keys: orders and payments in random order, against a plain ``order && payment`` sensor.

    python benchmarks/correlation.py [--orders 100000] [--unmatched 0.1] [--no-live]

The stream: ``--orders`` orders and as many payments, shuffled (fixed seed); a fraction
``--unmatched`` of the orders never get a payment and as many payments name no order.

- Engine (pure, one core): events/s and firings/s per CPU second, firings, firings that
  pair the right order and payment, memory the engine holds at the end and at its peak
  (tracemalloc, a second run).
- Live (SensorRuntime on NATS JetStream, the stream consumed from a backlog): firings/s,
  and the sensor's state entries in KV (count, and bytes of keys and values) at the end
  of the stream and once the emptied keys are removed (ACKED_GRACE later). Live, orders
  and payments come through two consumers (one per dependency, as in Argo), so the plain
  sensor sees them in another interleaving than the stream's: its firings differ from
  the engine's; the correlated sensor's do not.

The plain sensor is what Argo does: the latest event per dependency, so most firings pair
an order with someone else's payment.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import time
import tracemalloc
from datetime import datetime, timedelta, timezone

sys.path.insert(0, os.path.dirname(__file__))

from _common import bench_nats  # noqa: E402

from airflow_argo_events.core.events import Event  # noqa: E402
from airflow_argo_events.core.sensor.engine import Engine, Firing  # noqa: E402
from airflow_argo_events.core.spec.sensor import Sensor  # noqa: E402

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def sensor(correlated: bool, name: str) -> Sensor:
    template: dict = {"name": "ship", "conditions": "order && payment", "log": {}}
    if correlated:
        template["correlation"] = {"keys": {"order": "body.id", "payment": "body.orderId"}, "window": "15m",
                                   "maxPending": 1_000_000}
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "order", "eventSourceName": "shop", "eventName": "order"},
                         {"name": "payment", "eventSourceName": "shop", "eventName": "payment"}],
        "triggers": [{"template": template}]}})


def stream(orders: int, unmatched: float, seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    lonely = int(orders * unmatched)
    events = [("order", {"id": i, "total": 10 + i % 90, "customer": f"c{i % 977}"}) for i in range(orders)]
    events += [("payment", {"orderId": i, "amount": 10 + i % 90}) for i in range(orders - lonely)]
    events += [("payment", {"orderId": f"none-{i}", "amount": 1}) for i in range(lonely)]
    rng.shuffle(events)
    # 1 ms apart: the whole stream lies within the 15m window
    return [Event(id=f"{kind[0]}{n}", source="shop", subject=kind, type="webhook",
                  time=T0 + timedelta(milliseconds=n), data={"body": body})
            for n, (kind, body) in enumerate(events)]


def right_pair(f: Firing) -> bool:
    return f.events["order"].data["body"]["id"] == f.events["payment"].data["body"]["orderId"]


def engine_run(spec: Sensor, events: list[Event]) -> dict:
    eng = Engine(spec)
    fired: list[Firing] = []
    gc.collect()
    t0 = time.process_time()  # CPU time: the rate of one core, even on a shared, busy machine
    for e in events:
        fired += eng.process(e, e.time)
    took = time.process_time() - t0
    pending = len(eng.matches("ship"))
    return {"events/s": len(events) / took, "firings": len(fired), "firings/s": len(fired) / took,
            "right pairs": sum(right_pair(f) for f in fired), "pending keys": pending}


def engine_memory(spec: Sensor, events: list[Event]) -> tuple[float, float]:
    """MB the engine holds at the end of the stream, and at its peak (its events included)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    eng = Engine(spec)
    fired = 0
    for e in events:
        fired += len(eng.process(e, e.time))  # firings are dropped: only the state is measured
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del eng
    return (current - base) / 1e6, (peak - base) / 1e6


async def live_run(url: str, spec: Sensor, events: list[Event], drain_wait: float) -> dict:
    from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
    from airflow_argo_events.core.runtime import state as st
    from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime

    name = f"bench-corr-{os.getpid()}-{spec.metadata.name}"
    stream_settings = StreamSettings(name=name, replicas=1, max_msgs=len(events) + 10)
    fired = [0]

    async def execute(firing: Firing) -> None:
        fired[0] += 1

    async with EventBus(NatsSettings.from_url(url), stream_settings) as bus:
        try:
            for i in range(0, len(events), 512):
                await asyncio.gather(*(bus.publish(e) for e in events[i:i + 512]))
            rt = SensorRuntime(spec, bus, execute, deliver="all", bucket=name, consumer_prefix=name,
                               max_pending_firings=10_000)
            await rt.start()
            stop = asyncio.Event()
            t0 = time.perf_counter()
            task = asyncio.create_task(rt.run(stop))
            try:
                while rt.stats["events"] < len(events) and not task.done():
                    await asyncio.sleep(0.2)
                await rt.flush()
                while rt.pending():
                    await asyncio.sleep(0.1)
                took = time.perf_counter() - t0

                async def kv() -> tuple[int, int]:
                    """Entries and bytes of the ``s.*`` state entries (the journal's delete
                    markers, one per finished firing for an hour, are the same for both sensors)."""
                    n = size = 0
                    async for e in rt.store.scan("s.>"):
                        if not e.deleted:
                            n += 1
                            size += len(e.value) + len(e.key)
                    return n, size

                at_end = await kv()
                deadline = time.monotonic() + st.ACKED_GRACE + drain_wait
                while time.monotonic() < deadline and rt._draining:  # emptied keys go once settled
                    await asyncio.sleep(1)
            finally:
                stop.set()
                await asyncio.wait({task}, timeout=30)
                await rt.close()
            drained = await kv()
            # a new process on the same state finds every pending key again
            again = SensorRuntime(spec, bus, execute, deliver="all", bucket=name, consumer_prefix=name)
            await again.start()
            restored = len(again.engine.matches("ship"))
            await again.close()
            return {"events/s": len(events) / took, "firings": fired[0], "firings/s": fired[0] / took,
                    "pending keys": len(rt.engine.matches("ship")), "kv at end": at_end, "kv drained": drained,
                    "restored": restored}
        finally:
            for cleanup in (bus.js.delete_stream(name), bus.js.delete_key_value(name)):
                try:
                    await cleanup
                except Exception:
                    pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--unmatched", type=float, default=0.1)
    parser.add_argument("--no-live", action="store_true", help="engine only (no NATS)")
    parser.add_argument("--live-orders", type=int, default=0,
                        help="orders for the live part (default: --orders)")
    parser.add_argument("--drain-wait", type=float, default=120.0,
                        help="seconds to wait, past ACKED_GRACE, for emptied keys to be removed")
    args = parser.parse_args()
    events = stream(args.orders, args.unmatched)
    expected = args.orders - int(args.orders * args.unmatched)
    print(f"{args.orders:,} orders + {args.orders:,} payments, shuffled; {args.unmatched:.0%} unmatched: "
          f"{expected:,} right pairs to find")
    specs = {"correlated": sensor(True, "corr"), "plain (Argo)": sensor(False, "plain")}
    print("\nengine (no I/O; rates per CPU second)")
    print(f"{'sensor':14}{'events/s':>10}{'firings':>9}{'firings/s':>11}{'right pairs':>13}{'pending':>9}"
          f"{'MB end':>8}{'MB peak':>9}")
    for label, spec in specs.items():
        r = engine_run(spec, events)
        mem_end, mem_peak = engine_memory(spec, events)
        print(f"{label:14}{r['events/s']:10,.0f}{r['firings']:9,}{r['firings/s']:11,.0f}{r['right pairs']:13,}"
              f"{r['pending keys']:9,}{mem_end:8.1f}{mem_peak:9.1f}")
    if args.no_live:
        return
    if args.live_orders and args.live_orders != args.orders:
        events = stream(args.live_orders, args.unmatched)
        print(f"\n{args.live_orders:,} orders + {args.live_orders:,} payments for the live part")
    print("\nlive (SensorRuntime on NATS JetStream, from a backlog)")
    print(f"{'sensor':14}{'events/s':>10}{'firings':>9}{'firings/s':>11}{'pending':>9}"
          f"{'state entries / bytes at end':>30}{'after drain':>22}{'bytes/pending key':>19}{'restored':>10}")
    with bench_nats() as url:
        for label, spec in specs.items():
            r = asyncio.run(live_run(url, spec, events, args.drain_wait))
            (m_end, b_end), (m_dr, b_dr) = r["kv at end"], r["kv drained"]
            per_key = b_dr / r["pending keys"] if r["pending keys"] else 0
            print(f"{label:14}{r['events/s']:10,.0f}{r['firings']:9,}{r['firings/s']:11,.0f}{r['pending keys']:9,}"
                  f"{f'{m_end:,} / {b_end / 1e6:.2f} MB':>30}{f'{m_dr:,} / {b_dr / 1e6:.2f} MB':>22}"
                  f"{per_key:19,.0f}{r['restored']:10,}")


if __name__ == "__main__":
    main()
