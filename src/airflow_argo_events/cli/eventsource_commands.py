"""``argo-events eventsource run -f ES.yaml``: like Argo's EventSource pod."""

from __future__ import annotations

import argparse
import asyncio
import logging

from airflow_argo_events.cli.common import (
    EXIT_INVALID,
    add_metrics_option,
    live_logging,
    load_or_report,
    run_until_signal,
    start_metrics,
)
from airflow_argo_events.cli.nats_target import nats_target
from airflow_argo_events.core.bus import EventBus, StreamSettings
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime

log = logging.getLogger("airflow_argo_events.eventsource")


def configure(p: argparse.ArgumentParser) -> None:
    """``eventsource run`` (its name and one-line help are in cli/main.py)."""
    p.add_argument("-f", "--file", required=True, metavar="ES.yaml")
    p.add_argument("--nats", help="NATS URL (default $ARGO_EVENTS_NATS_URL, else local/embedded)")
    p.add_argument("--stream", default="default", help="JetStream stream / subject prefix, default 'default'")
    p.add_argument("--event", action="append", help="run only this event (repeatable)")
    add_metrics_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    live_logging()
    es = load_or_report(args.file, "EventSource")
    if es is None:
        return EXIT_INVALID

    async def main(stop: asyncio.Event) -> None:
        metrics = start_metrics(args.metrics_port, es)
        with nats_target(args.nats) as settings:
            async with EventBus(settings, StreamSettings(name=args.stream)) as bus:
                rt = EventSourceRuntime(es, bus, only=args.event, metrics=metrics)
                log.info("eventsource %s: running %s on %s", es.metadata.name,
                         ", ".join(s.label for s in rt.sources), settings.describe())
                await rt.run(stop)
                log.info("eventsource %s: stopped; published %d event(s), %d already on the bus, %d filtered out, "
                         "%d failed", es.metadata.name, rt.count, rt.duplicates, rt.filtered, rt.failed)

    return run_until_signal(main)
