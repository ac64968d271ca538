"""``argo-events demo``: EventSources, a Sensor and an action, live on an embedded NATS, narrated.

Runs examples/demo (a file EventSource, a webhook EventSource, a Sensor with
``(dep01 || dep02) && dep03`` and an http action to a local server), drives a short
scenario, prints every event, filter decision and firing, and ends with a summary.
Everything it starts (nats-server, servers, tasks) is stopped before it returns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from airflow_argo_events.core.actions.executor import ActionRunner
from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.bus.embedded import EmbeddedNats, free_port
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.sensor.engine import Engine
from airflow_argo_events.core.spec.loader import load_one

BOLD, DIM, GREEN, RED, CYAN, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[36m", "\033[0m"


def configure(p: argparse.ArgumentParser) -> None:
    """``demo`` (its name and one-line help are in cli/main.py)."""
    p.add_argument("--nats", help="use this NATS instead of starting an embedded one")
    p.add_argument("--examples", default=None, help="demo manifests folder (default: the shipped ones, examples/demo)")
    p.add_argument("--fast", action="store_true", help="no pauses between steps (for tests)")
    p.add_argument("--no-color", action="store_true")
    p.add_argument("--airflow", action="store_true",
                   help="run the Sensor in a real local Airflow (scheduler, triggerer, ...) and show its DAG runs")
    p.set_defaults(func=run)


def find_examples(given: str | None) -> Path:
    """``--examples``, else the manifests shipped in the package (examples/demo in the repository)."""
    return Path(given) if given else Path(__file__).with_name("demo_manifests")


class Narrator:
    def __init__(self, color: bool) -> None:
        self.color = color
        self.t0 = time.monotonic()
        self.counts = {"events": 0, "rejected": 0, "firings": 0, "actions_ok": 0}

    def c(self, code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if self.color else text

    def line(self, text: str) -> None:
        print(f"{self.c(DIM, f'[{time.monotonic() - self.t0:5.1f}s]')} {text}", flush=True)

    def progress(self) -> None:
        c = self.counts
        self.line(self.c(DIM, f"events {c['events']} | rejected {c['rejected']} | firings {c['firings']} | "
                              f"actions ok {c['actions_ok']}"))


def prepare(args: argparse.Namespace, workdir: Path, action_port: int) -> tuple[Any, Any, Any, Path, int]:
    """The demo manifests, pointed at this run's own folder and ports."""
    from airflow_argo_events.core.spec.loader import parse_manifest

    examples = find_examples(args.examples)
    files_doc = load_one(examples / "eventsource-files.yaml", "EventSource").dump()
    shop_doc = load_one(examples / "eventsource-webhook.yaml", "EventSource").dump()
    sensor_doc = load_one(examples / "sensor.yaml", "Sensor").dump()
    drop = workdir / "drop"
    drop.mkdir()
    port = free_port()
    files_doc["spec"]["file"]["landed"]["watchPathConfig"]["directory"] = str(drop)
    for ev in shop_doc["spec"]["webhook"].values():
        ev["port"] = str(port)
    sensor_doc["spec"]["triggers"][0]["template"]["http"]["url"] = f"http://127.0.0.1:{action_port}/process"
    return (parse_manifest(files_doc, None, "EventSource"), parse_manifest(shop_doc, None, "EventSource"),
            parse_manifest(sensor_doc, None, "Sensor"), drop, port)


async def scenario(n: Narrator, port: int, drop: Path, pause: float) -> None:
    """The user's side: webhooks and a file, with what each should do."""
    async with aiohttp.ClientSession() as http:
        async def post(path: str, body: dict[str, Any]) -> None:
            async with http.post(f"http://127.0.0.1:{port}{path}", json=body) as resp:
                n.line(f"{n.c(BOLD, 'you')}: POST {path} {json.dumps(body)} -> {resp.status}")

        steps: list[tuple[str, Any]] = [
            ("a payment of 40 (below the filter)", ("/payment", {"amount": 40, "currency": "eur"})),
            ("an order still pending (filtered out)", ("/order", {"order": "A-1", "status": "pending"})),
            ("a confirmed order", ("/order", {"order": "A-2", "status": "confirmed"})),
            ("a payment of 250: (dep02) && dep03 -> fires", ("/payment", {"amount": 250, "currency": "eur"})),
            ("a CSV file lands", None),
            ("a payment of 120: (dep01) && dep03 -> fires", ("/payment", {"amount": 120, "currency": "usd"})),
        ]
        for title, request in steps:
            await asyncio.sleep(pause)
            n.line(n.c(BOLD, f"step: {title}"))
            if request is None:
                (drop / "sales-2024-05.csv").write_text("id,amount\n1,10\n")
                n.line(f"{n.c(BOLD, 'you')}: created {drop / 'sales-2024-05.csv'}")
                await asyncio.sleep(1.0)
            else:
                await post(*request)
            await asyncio.sleep(0.5)


async def demo(args: argparse.Namespace, n: Narrator, workdir: Path) -> dict[str, Any]:
    action_port = free_port()
    files_es, shop_es, sensor, drop, port = prepare(args, workdir, action_port)
    pause = 0.0 if args.fast else 0.8

    received: list[dict[str, Any]] = []

    async def process(request: web.Request) -> web.Response:
        body = await request.json()
        received.append({"key": request.headers.get("Idempotency-Key"), "body": body})
        n.line(n.c(GREEN, f"  -> action: POST /process received {json.dumps(body)} "
                          f"(Idempotency-Key {request.headers.get('Idempotency-Key')})"))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/process", process)
    runner_http = web.AppRunner(app, access_log=None)
    await runner_http.setup()
    await web.TCPSite(runner_http, "127.0.0.1", action_port).start()

    server = None if args.nats else EmbeddedNats.start()
    url = args.nats or server.url  # type: ignore[union-attr]
    n.line(f"{n.c(BOLD, 'NATS JetStream')} at {url}" + (" (embedded, temporary)" if server else ""))
    stream = StreamSettings(name="demo" + str(int(time.time())), replicas=1)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    try:
        async with EventBus(NatsSettings.from_url(url), stream) as bus:
            engine = Engine(sensor, explain=True)
            actions = ActionRunner(engine)

            async def execute(firing: Any) -> None:
                outcome = await actions.run(firing)
                if outcome.ok:
                    n.counts["actions_ok"] += 1

            def observed(items: list[tuple[Any, list[str], list[Any]]]) -> None:
                for event, notes, fired in items:
                    n.counts["events"] += 1
                    shown = event.data.get("body", event.data) if isinstance(event.data, dict) else event.data
                    n.line(f"{n.c(CYAN, 'event')} {event.source}/{event.subject} id={event.id[:8]} "
                           f"{'body' if shown is not event.data else 'data'}={json.dumps(shown)[:100]}")
                    for note in notes:
                        rejected = "rejected" in note
                        n.counts["rejected"] += rejected
                        n.line("   " + (n.c(RED, note.strip()) if rejected else note.strip()))
                    for f in fired:
                        n.counts["firings"] += 1
                        n.line(n.c(BOLD + GREEN, f"  FIRED {f.trigger} firing={f.id} on "
                                                 f"{ {d: e.id[:8] for d, e in f.events.items()} }"))
                n.progress()

            runtime = SensorRuntime(sensor, bus, execute, engine=engine, on_processed=observed)
            await runtime.start()
            n.line(f"{n.c(BOLD, 'Sensor')} {sensor.metadata.name}: trigger process-batch when "
                   f"{n.c(BOLD, '(dep01 || dep02) && dep03')}")
            n.line("  dep01 = a .csv file lands in the drop folder (file EventSource)")
            n.line("  dep02 = a confirmed order (webhook /order)   dep03 = a payment >= 100 (webhook /payment)")
            tasks.append(asyncio.create_task(runtime.run(stop)))
            for es in (files_es, shop_es):
                rt = EventSourceRuntime(es, bus)
                tasks.append(asyncio.create_task(rt.run(stop)))
            await asyncio.sleep(1.0)

            await scenario(n, port, drop, pause)
            deadline = time.monotonic() + 10
            while len(received) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runtime.close()
            await actions.close()
            await bus.js.delete_stream(stream.name)
            try:
                await bus.js.delete_key_value(runtime.bucket)
            except Exception:
                pass
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await runner_http.cleanup()
        if server is not None:
            server.stop()
    return {"received": received}


async def demo_airflow(args: argparse.Namespace, n: Narrator, workdir: Path) -> int:
    """The same scenario, with the Sensor in a real local Airflow: one DAG run per firing."""
    from airflow_argo_events.cli.local_airflow import AirflowInstance, fresh_postgres_database

    files_es, shop_es, sensor, drop, port = prepare(args, workdir, free_port())
    sensor_doc = sensor.dump()
    sensor_doc["spec"]["triggers"][0]["template"] = {"name": "process-batch",
                                                     "conditions": "(dep01 || dep02) && dep03", "log": {}}
    server = None if args.nats else EmbeddedNats.start()
    url = args.nats or server.url  # type: ignore[union-attr]
    stream = StreamSettings(name="demo" + str(int(time.time())), replicas=1)
    dags = workdir / "dags-src"
    dags.mkdir()
    shutil.copy(Path(__file__).with_name("demo_airflow_dag.py"), dags / "demo_airflow_dag.py")
    pg = fresh_postgres_database()
    inst = AirflowInstance(workdir / "airflow", dags, url, stream.name, postgres=pg[0] if pg else None)
    inst.env["ARGO_EVENTS_DEMO_SENSOR"] = json.dumps(sensor_doc)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[Any]] = []
    try:
        await start_airflow(n, inst, "PostgreSQL" if pg else "SQLite")
        n.line(f"Airflow up at http://127.0.0.1:{inst.port}; SensorTrigger running in the triggerer")
        async with EventBus(NatsSettings.from_url(url), stream) as bus:
            for es in (files_es, shop_es):
                tasks.append(asyncio.create_task(EventSourceRuntime(es, bus).run(stop)))
            await asyncio.sleep(1.0)
            await scenario(n, port, drop, 0.0 if args.fast else 0.8)
            n.line("Airflow: waiting for the DAG runs of the 2 firings to finish ...")
            runs = await asyncio.to_thread(inst.wait_for, lambda: len(inst.runs("demo_process")) >= 2 and all(
                r[1] == "success" for r in inst.runs("demo_process")), 120, "2 DAG runs")
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        runs = inst.runs("demo_process")
        print()
        print(n.c(BOLD, "DAG runs caused"))
        for run_id, state, run_type, queued in runs:
            print(f"  demo_process {run_id} {state} ({run_type}, queued {queued})")
        watch = inst.runs("demo_watch")
        print(f"  (the asset-scheduled demo_watch DAG saw the same firings in {len(watch)} run(s))")
        return 0 if len(runs) == 2 else 1
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        n.line("Airflow: stopping ...")
        await asyncio.to_thread(inst.stop)
        if pg:
            pg[1]()
        if server is not None:
            server.stop()


async def start_airflow(n: Narrator, inst: Any, db: str) -> None:
    """Start Airflow one phase at a time, with a line per phase (the whole takes a minute or more)."""
    from airflow_argo_events.cli.local_airflow import COMPONENTS

    n.line(f"Airflow: migrating the metadata database ({db}) in {inst.home} ...")
    out = await asyncio.to_thread(inst.cli, "db", "migrate")
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    for name in COMPONENTS:
        inst.start_component(name)
    n.line(f"Airflow: started {', '.join(COMPONENTS)}; waiting for each to report healthy ...")
    healthy: set[str] = set()
    answering = False
    deadline = time.monotonic() + 180
    while len(healthy) < 4:
        if time.monotonic() > deadline:
            raise RuntimeError(f"Airflow not healthy in 180 s; logs in {inst.home}")
        health = await asyncio.to_thread(_health, inst.port)
        if health and not answering:
            answering = True
            n.line(f"Airflow: api-server answering on http://127.0.0.1:{inst.port}")
        for component, state in health.items():
            if state == "healthy" and component not in healthy:
                healthy.add(component)
                n.line(f"Airflow: {component.replace('_', '-')} healthy")
        await asyncio.sleep(0.5)
    n.line("Airflow: parsing the demo DAG ...")
    await asyncio.to_thread(inst.cli, "dags", "reserialize")
    n.line("Airflow: waiting for the triggerer to run the SensorTrigger ...")
    await asyncio.to_thread(inst.wait_for, lambda: inst.watchers_ready(1), 120, "the SensorTrigger watcher")
    await asyncio.sleep(2)


def _health(port: int) -> dict[str, str]:
    """Component -> status from Airflow's health endpoint ({} while the api-server is not up)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=2) as r:
            health = json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return {}
    names = ("metadatabase", "scheduler", "triggerer", "dag_processor")
    return {c: str((health.get(c) or {}).get("status")) for c in names}


def run(args: argparse.Namespace) -> int:
    color = not args.no_color and sys.stdout.isatty()
    n = Narrator(color)
    workdir = Path(tempfile.mkdtemp(prefix="argo-events-demo-"))
    if args.airflow:
        try:
            return asyncio.run(demo_airflow(args, n, workdir))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    try:
        result = asyncio.run(demo(args, n, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    received = result["received"]
    print()
    print(n.c(BOLD, "Summary"))
    c = n.counts
    print(f"  {c['events']} events arrived, {c['rejected']} rejected by filters, {c['firings']} firings, "
          f"{len(received)} action calls received by the HTTP server.")
    for r in received:
        print(f"  firing {r['key']}: {json.dumps(r['body'])}")
    print("  Why: (dep01 || dep02) && dep03 needs a payment >= 100 plus a confirmed order or a CSV file; "
          "the first payment (40) and the pending order were filtered out.")
    print("  Next: argo-events sensor test examples/sensors/trigger-conditions.yaml "
          "--events examples/events/trigger-conditions.jsonl --explain")
    ok = c["firings"] == 2 and len(received) == 2
    if not ok:
        print(n.c(RED, "  unexpected outcome: expected 2 firings and 2 action calls"), file=sys.stderr)
    return 0 if ok else 1
