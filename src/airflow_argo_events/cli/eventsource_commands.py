"""``argo-events eventsource run -f ES.yaml``: like Argo's EventSource pod."""

from __future__ import annotations

import argparse
import asyncio
import logging

from airflow_argo_events.cli.common import EXIT_INVALID, live_logging, load_or_report, run_until_signal
from airflow_argo_events.cli.nats_target import nats_target
from airflow_argo_events.core.bus import EventBus, StreamSettings
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime

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
    live_logging()
    es = load_or_report(args.file, "EventSource")
    if es is None:
        return EXIT_INVALID

    async def main(stop: asyncio.Event) -> None:
        with nats_target(args.nats) as settings:
            async with EventBus(settings, StreamSettings(name=args.stream)) as bus:
                rt = EventSourceRuntime(es, bus, only=args.event)
                log.info("eventsource %s: running %s on %s", es.metadata.name,
                         ", ".join(s.label for s in rt.sources), settings.describe())
                await rt.run(stop)
                log.info("eventsource %s: stopped after %d event(s)", es.metadata.name, rt.count)

    return run_until_signal(main)
