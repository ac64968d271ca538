"""Events -> Prefect flow runs: an argo-events sensor against a Prefect automation, same server, one run.

Both sides turn (order, payment) pairs into flow runs of a deployment on one fresh Prefect
server (``prefect server start``, SQLite, started here):

- ours: ``order && payment`` (two dependencies on one EventSource event, told apart by a data
  filter, so that one consumer keeps the stream's order), a ``prefect`` trigger: one flow run
  per firing, ``idempotency_key`` = firing id. Events are published to NATS JetStream.
- theirs: an automation with a compound trigger (``require: all`` of two event triggers,
  ``within: 60``) and a ``run-deployment`` action. Events are posted to Prefect's events API.

Measured: latency from the pair's second event to the flow run's ``created`` time (server
clock) over sequential pairs, p50/p95; then a burst of ``--pairs`` pairs sent at once:
flow runs per second (first send to last run created) and pairs lost or merged
(pairs - runs).

    python benchmarks/prefect.py [--pairs 1000] [--latency-pairs 20] [--nats URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import Any

# This file is named prefect.py: run as a script, its folder comes first on sys.path and would
# shadow the prefect package. Drop that folder before anything imports prefect.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

from airflow_argo_events.prefect.testing import PrefectApi as Api  # noqa: E402
from airflow_argo_events.prefect.testing import PrefectServer  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


def created(run: dict[str, Any]) -> float:
    return datetime.fromisoformat(run["created"].replace("Z", "+00:00")).timestamp()


async def settle(api: Api, deployment: str, want: int, quiet: float, cap: float) -> list[dict[str, Any]]:
    """Runs of ``deployment`` once ``want`` exist, or once none were added for ``quiet`` seconds (or ``cap``)."""
    start = last_change = time.monotonic()
    seen = -1
    while True:
        runs = await api.flow_runs(deployment)
        now = time.monotonic()
        if len(runs) != seen:
            seen, last_change = len(runs), now
        if len(runs) >= want or now - last_change > quiet or now - start > cap:
            return runs
        await asyncio.sleep(0.5)


async def ours(api: Api, nats_url: str, pairs: int, latency_pairs: int) -> dict[str, Any]:
    from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
    from airflow_argo_events.core.events import new_event
    from airflow_argo_events.prefect.serve import run_sensor_until

    uid = uuid.uuid4().hex[:8]
    dep = await api.deployment(f"bench-ours-{uid}", "pairs")

    def kind(k: str) -> dict[str, Any]:
        return {"data": [{"path": "kind", "type": "string", "value": [f"^{k}$"]}]}

    doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": f"bench-{uid}"}, "spec": {
        "dependencies": [{"name": "order", "eventSourceName": "shop", "eventName": "ev", "filters": kind("order")},
                         {"name": "payment", "eventSourceName": "shop", "eventName": "ev", "filters": kind("payment")}],
        "triggers": [{"template": {"name": "run", "conditions": "order && payment", "prefect": {
            "deployment": f"bench-ours-{uid}/pairs", "parameters": [
                {"src": {"dependencyName": "order", "dataKey": "i", "useRawData": True}, "dest": "order"},
                {"src": {"dependencyName": "payment", "dataKey": "i", "useRawData": True}, "dest": "payment"}]}},
            "retryStrategy": {"steps": 60, "duration": "200ms", "factor": 1.2}}]}}
    stream = f"bench{uid}"
    stop, ready = asyncio.Event(), asyncio.Event()
    sensor = asyncio.create_task(run_sensor_until(doc, stop, nats=nats_url, stream=stream, ready=ready))
    await asyncio.wait({sensor, asyncio.ensure_future(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if sensor.done():
        sensor.result()

    def ev(k: str, i: int) -> Any:
        return new_event(source="shop", subject="ev", type="webhook", data={"kind": k, "i": i}, id=f"{uid}{k}{i}")

    latencies = []
    async with EventBus(NatsSettings.from_url(nats_url), StreamSettings(name=stream, replicas=1)) as bus:
        try:
            for i in range(latency_pairs):
                await bus.publish(ev("order", -1 - i))
                t0 = time.time()
                await bus.publish(ev("payment", -1 - i))
                runs = await settle(api, dep, i + 1, quiet=30, cap=60)
                latencies.append(max(created(r) for r in runs) - t0)
            base = len(await api.flow_runs(dep))
            t0 = time.time()
            for i in range(pairs):
                await bus.publish(ev("order", i))
                await bus.publish(ev("payment", i))
            # An overloaded server answers 503 and the firings wait in the journal between retries:
            # count once no run was added for two minutes, as for the automation.
            runs = await settle(api, dep, base + pairs, quiet=120, cap=1200)
        finally:
            stop.set()
            await sensor
            await bus.js.delete_stream(stream)
            for info in await bus.js.streams_info():
                if f"bench-{uid}" in info.config.name:
                    await bus.js.delete_stream(info.config.name)
    burst = [r for r in runs if r["parameters"].get("order", -1) >= 0]
    mismatched = sum(r["parameters"]["order"] != r["parameters"]["payment"] for r in burst)
    last = max((created(r) for r in burst), default=t0)
    return {"runs": len(burst), "mismatched": mismatched, "seconds": last - t0, "latencies": latencies}


async def theirs(api: Api, pairs: int, latency_pairs: int) -> dict[str, Any]:
    uid = uuid.uuid4().hex[:8]
    dep = await api.deployment(f"bench-theirs-{uid}", "pairs")
    await api._post("/automations/", {
        "name": f"bench-{uid}", "enabled": True,
        "trigger": {"type": "compound", "require": "all", "within": 60, "triggers": [
            {"type": "event", "expect": [f"bench{uid}.order"], "match": {"prefect.resource.id": "shop.*"},
             "posture": "Reactive", "threshold": 1, "within": 0},
            {"type": "event", "expect": [f"bench{uid}.payment"], "match": {"prefect.resource.id": "shop.*"},
             "posture": "Reactive", "threshold": 1, "within": 0}]},
        "actions": [{"type": "run-deployment", "source": "selected", "deployment_id": dep, "parameters": {}}]})

    def ev(k: str, i: int) -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "event": f"bench{uid}.{k}", "occurred": datetime.now(timezone.utc).isoformat(),
                "resource": {"prefect.resource.id": f"shop.{k}.{i}"}, "payload": {"i": i}}

    # The triggers service loads a new automation shortly after it is created: wait for a first run.
    t_probe = time.monotonic()
    while not await api.flow_runs(dep):
        await api.emit([ev("order", -1), ev("payment", -1)])
        await asyncio.sleep(2)
        if time.monotonic() - t_probe > 120:
            raise RuntimeError("the automation never ran")
    await asyncio.sleep(5)
    latencies = []
    for i in range(latency_pairs):
        before = len(await api.flow_runs(dep))
        await api.emit([ev("order", i)])
        t0 = time.time()
        await api.emit([ev("payment", i)])
        runs = await settle(api, dep, before + 1, quiet=30, cap=60)
        if len(runs) > before:
            latencies.append(max(created(r) for r in runs) - t0)
    base = len(await api.flow_runs(dep))
    t0 = time.time()
    batch: list[dict[str, Any]] = []
    for i in range(pairs):
        batch += [ev("order", i), ev("payment", i)]
        if len(batch) >= 100:
            await api.emit(batch)
            batch = []
    if batch:
        await api.emit(batch)
    # The automation's actions run in a service of their own, well behind the events under a
    # burst: wait until it has added no run for two minutes before counting.
    runs = await settle(api, dep, base + pairs, quiet=120, cap=1200)
    new = sorted(runs, key=created)[base:]
    last = max((created(r) for r in new), default=t0)
    return {"runs": len(new), "mismatched": None, "seconds": last - t0, "latencies": latencies}


def line(name: str, pairs: int, r: dict[str, Any]) -> str:
    lat = r["latencies"]
    rate = r["runs"] / r["seconds"] if r["seconds"] > 0 else float("nan")
    mism = "n/a (runs carry no event)" if r["mismatched"] is None else str(r["mismatched"])
    return (f"| {name} | {rate:.1f} | {pct(lat, 0.5) * 1000:.0f} | {pct(lat, 0.95) * 1000:.0f} | "
            f"{r['runs']} / {pairs} | {pairs - r['runs']} | {mism} |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--latency-pairs", type=int, default=20)
    parser.add_argument("--nats", default=os.environ.get("ARGO_EVENTS_NATS_URL"))
    parser.add_argument("--only", choices=["ours", "theirs"], help="run one side only")
    args = parser.parse_args()
    from airflow_argo_events.cli.nats_target import nats_target

    server = PrefectServer.start()
    from airflow_argo_events.prefect.testing import server_environment

    os.environ.update(server_environment(server.home, server.port))
    import prefect

    api = Api(server.api_url)
    try:
        empty: dict[str, Any] = {"runs": 0, "mismatched": None, "seconds": 0.0, "latencies": []}
        mine = other = empty
        if args.only != "theirs":
            with nats_target(args.nats, quiet=True) as settings:
                mine = await ours(api, settings.servers[0], args.pairs, args.latency_pairs)
            print(line("argo-events sensor (`prefect` trigger)", args.pairs, mine), flush=True)
        if args.only != "ours":
            other = await theirs(api, args.pairs, args.latency_pairs)
    finally:
        await api.close()
        server.stop()
    print(f"Prefect {prefect.__version__} server (SQLite), {args.pairs}-pair burst, latency over "
          f"{args.latency_pairs} sequential pairs, python {sys.version.split()[0]}")
    print("| | flow runs/s (burst) | latency p50 ms | latency p95 ms | runs / pairs | lost or merged | mispaired |")
    print("|---|---|---|---|---|---|---|")
    print(line("argo-events sensor (`prefect` trigger)", args.pairs, mine))
    print(line("Prefect automation (compound trigger + run-deployment)", args.pairs, other))
    if mine["latencies"] and other["latencies"]:
        print(f"median latency: ours {statistics.median(mine['latencies']) * 1000:.0f} ms, "
              f"Prefect {statistics.median(other['latencies']) * 1000:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
