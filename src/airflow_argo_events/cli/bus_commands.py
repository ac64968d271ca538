"""``argo-events publish`` and ``argo-events tail``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from airflow_argo_events.cli.common import run_async
from airflow_argo_events.cli.nats_target import nats_target
from airflow_argo_events.core.bus import EventBus, StreamSettings
from airflow_argo_events.core.bus.consumer import durable_name
from airflow_argo_events.core.events import new_event, new_event_id


def configure_publish(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", required=True, help="EventSource name (CloudEvent source)")
    p.add_argument("--event", required=True, help="event name (CloudEvent subject)")
    p.add_argument("--type", default="webhook", help="source type (CloudEvent type), default webhook")
    p.add_argument("--data", default="{}", help="JSON payload, default {}")
    p.add_argument("--id", help="event id (default: a random hex UUID, as Argo)")
    _common(p)
    p.set_defaults(func=run_publish)


def configure_tail(t: argparse.ArgumentParser) -> None:
    t.add_argument("--source", default="*", help="EventSource name, default any")
    t.add_argument("--event", default="*", help="event name, default any")
    t.add_argument("--count", type=int, default=0, help="exit after N events (0: run until Ctrl-C)")
    t.add_argument("--all", action="store_true", help="start from the oldest event in the stream, not from now")
    t.add_argument("--until-idle", type=float, default=0, metavar="SECONDS",
                   help="exit with status 0 once no event arrived for this many seconds (to record a stream: "
                        "'tail --all --until-idle 2 > events.jsonl')")
    t.add_argument("--timeout", type=float, default=0, metavar="SECONDS",
                   help="exit with status 1 after this many idle seconds (a wait that should have seen events)")
    _common(t)
    t.set_defaults(func=run_tail)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nats", help="NATS URL (default $ARGO_EVENTS_NATS_URL, else local/embedded)")
    p.add_argument("--stream", default="default", help="JetStream stream / subject prefix, default 'default'")


def run_publish(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data)
    except ValueError as err:
        print(f"--data: not JSON ({err})", file=sys.stderr)
        return 2
    event = new_event(source=args.source, subject=args.event, type=args.type, data=data, id=args.id)

    async def go() -> None:
        with nats_target(args.nats) as settings:
            async with EventBus(settings, StreamSettings(name=args.stream)) as bus:
                result = await bus.publish(event)
        print(event.id)
        if result.duplicate:
            print(f"(duplicate of an event already in the stream: seq {result.seq})", file=sys.stderr)

    return run_async(go)


def run_tail(args: argparse.Namespace) -> int:
    async def go() -> int:
        with nats_target(args.nats) as settings:
            async with EventBus(settings, StreamSettings(name=args.stream)) as bus:
                sub = await bus.subscribe(
                    durable_name("tail", new_event_id()), args.source, args.event,
                    deliver="all" if args.all else "new",
                )
                print("[argo-events] tailing", sub.subject, file=sys.stderr, flush=True)
                seen = 0
                loop = asyncio.get_running_loop()
                idle_since = loop.time()
                try:
                    while not args.count or seen < args.count:
                        idle = loop.time() - idle_since
                        wait = min([1.0, *(x - idle for x in (args.until_idle, args.timeout) if x)])
                        batch = await sub.fetch(timeout=max(wait, 0.05))
                        idle = loop.time() - idle_since
                        if not batch and args.until_idle and idle >= args.until_idle:
                            print(f"[argo-events] {seen} event(s); none for {args.until_idle:g}s, done",
                                  file=sys.stderr, flush=True)
                            return 0
                        if not batch and args.timeout and idle >= args.timeout:
                            print(f"[argo-events] {seen} event(s); none for {args.timeout:g}s (--timeout)",
                                  file=sys.stderr, flush=True)
                            return 1
                        for d in batch:
                            idle_since = loop.time()
                            if d.event is None:
                                print(json.dumps({"error": d.error, "seq": d.stream_seq}), flush=True)
                            else:
                                print(json.dumps(d.event.to_json(), default=str), flush=True)
                            await d.ack()
                            seen += 1
                            if args.count and seen >= args.count:
                                break
                finally:
                    await sub.delete()
        return 0

    return run_async(go)
