"""``argo-events eventsource run -f ES.yaml``: like Argo's EventSource pod."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from airflow_argo_events.cli.nats_target import nats_target
from airflow_argo_events.core.bus import EventBus, StreamSettings
from airflow_argo_events.core.exceptions import ArgoEventsError, SpecError
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime
from airflow_argo_events.core.spec.loader import load_one

log = logging.getLogger("airflow_argo_events.eventsource")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    es = sub.add_parser("eventsource", help="run an Argo EventSource manifest")
    esub = es.add_subparsers(dest="eventsource_command", metavar="ACTION", required=True)
    p = esub.add_parser("run", help="run every event of the EventSource and publish to the bus")
    p.add_argument("-f", "--file", required=True, metavar="ES.yaml")
    p.add_argument("--nats", help="NATS URL (default $ARGO_EVENTS_NATS_URL, else local/embedded)")
    p.add_argument("--stream", default="default", help="JetStream stream / subject prefix, default 'default'")
    p.add_argument("--event", action="append", help="run only this event (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.getLogger("airflow_argo_events").setLevel(logging.INFO)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr,
                        force=True)
    try:
        es = load_one(args.file, "EventSource")
    except SpecError as err:
        for line in err.lines():
            print(line, file=sys.stderr)
        return 2

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with nats_target(args.nats) as settings:
            async with EventBus(settings, StreamSettings(name=args.stream)) as bus:
                rt = EventSourceRuntime(es, bus, only=args.event)
                log.info("eventsource %s: running %s on %s", es.metadata.name,
                         ", ".join(s.label for s in rt.sources), settings.describe())
                await rt.run(stop)
                log.info("eventsource %s: stopped after %d event(s)", es.metadata.name, rt.count)

    try:
        asyncio.run(go())
    except ArgoEventsError as err:
        print(str(err), file=sys.stderr)
        return 1
    return 0
