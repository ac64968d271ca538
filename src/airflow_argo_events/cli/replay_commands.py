"""``argo-events sensor replay`` (backfill from the bus) and ``argo-events sensor diff``.

Both read the stream's history with fresh, private state (``core/runtime/replay.py``); the
live sensor and its consumers are not touched.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_argo_events.cli.common import EXIT_INVALID, load_or_report, run_async
from airflow_argo_events.cli.nats_target import nats_target
from airflow_argo_events.core.bus import EventBus, StreamSettings
from airflow_argo_events.core.runtime.replay import (
    HistoryWindow,
    ReplayRangeError,
    check_range,
    firing_key,
    history_window,
    replay,
)
from airflow_argo_events.core.sensor.engine import Engine, Firing
from airflow_argo_events.core.spec.durations import parse_duration


def configure_replay(r: argparse.ArgumentParser) -> None:
    r.description = ("Reads the stream from --from (to --to, else to the last message stored when it starts) "
                     "in stream order, through the Sensor with private state; the live sensor is not touched. "
                     "Prints one JSON line per firing, as 'sensor test'. --execute runs the actions too: "
                     "firing ids are those the live sensor gives, so a DAG run or HTTP call that already "
                     "happened is not repeated.")
    r.add_argument("-f", "--file", required=True, metavar="SENSOR.yaml")
    _window_args(r)
    r.add_argument("--execute", action="store_true", help="run each firing's action (idempotent by firing id)")
    r.add_argument("--explain", action="store_true", help="explain each event's path through the sensor on stderr")
    r.set_defaults(func=run_replay)


def configure_diff(d: argparse.ArgumentParser) -> None:
    d.description = ("Lines starting with '+' fire only with NEW, '-' only with OLD. Exit 0 when both fire "
                     "the same, 1 when they differ.")
    d.add_argument("new", metavar="NEW.yaml")
    d.add_argument("old", metavar="OLD.yaml")
    _window_args(d)
    d.set_defaults(func=run_diff)


def _window_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="start", required=True, metavar="TIME",
                   help="RFC 3339 time (2026-12-01T08:00:00Z) or a duration ago (90m, 24h)")
    p.add_argument("--to", dest="end", metavar="TIME", help="same forms; default: the last message stored at start")
    p.add_argument("--nats", help="NATS URL (default $ARGO_EVENTS_NATS_URL, else local/embedded)")
    p.add_argument("--stream", default="default", help="JetStream stream / subject prefix, default 'default'")


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """An RFC 3339 time, or a Go duration meaning that long before ``now``.

    >>> parse_when("90m", datetime(2026, 1, 1, 12, tzinfo=timezone.utc)).isoformat()
    '2026-01-01T10:30:00+00:00'
    """
    now = now or datetime.now(timezone.utc)
    value = text.strip()
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        try:
            return now - timedelta(seconds=parse_duration(value))
        except ValueError:
            raise ValueError(f"{text!r} is neither an RFC 3339 time nor a duration like 90m") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _window(args: argparse.Namespace) -> tuple[datetime, datetime | None] | None:
    try:
        start = parse_when(args.start)
        end = parse_when(args.end) if args.end else None
    except ValueError as err:
        print(f"--from/--to: {err}", file=sys.stderr)
        return None
    return start, end


def firing_line(f: Firing) -> str:
    """``sensor test``'s line with the firing id first: the id the action carries
    (DAG run id, Idempotency-Key), to find what a firing did."""
    return json.dumps({"id": f.id, **f.summary()}, separators=(",", ":"))


def _print_firing(f: Firing, prefix: str = "") -> None:
    print(prefix + firing_line(f), flush=True)


def _over_history(args: argparse.Namespace, start: datetime, end: datetime | None,
                  body: Callable[[EventBus, HistoryWindow], Awaitable[int]]) -> int:
    """Run ``body`` on the bus once the stream is known to hold ``--from``..``--to``."""

    async def main() -> int:
        with nats_target(args.nats, quiet=True) as settings:
            async with EventBus(settings, StreamSettings(name=args.stream)) as bus:
                held = await history_window(bus)
                try:
                    check_range(held, start, end)
                except ReplayRangeError as err:
                    print(str(err), file=sys.stderr)
                    return EXIT_INVALID
                return await body(bus, held)

    return run_async(main)


def run_replay(args: argparse.Namespace) -> int:
    sensor = load_or_report(args.file, "Sensor")
    window = _window(args)
    if sensor is None or window is None:
        return EXIT_INVALID
    start, end = window

    async def body(bus: EventBus, held: HistoryWindow) -> int:
        engine = Engine(sensor, explain=args.explain)
        runner = None
        if args.execute:
            from airflow_argo_events.cli.sensor_run import k8s_context
            from airflow_argo_events.core.actions.executor import ActionRunner

            runner = ActionRunner(engine, k8s_context(sensor))
        counts = {"events": 0, "skipped": 0, "firings": 0, "failed": 0}
        try:
            async for step in replay(bus, [engine], start, end):
                counts["events"] += 1
                if engine.explain is not None and step.event is not None:
                    print(f"event seq={step.seq} id={step.event.id} source={step.event.source} "
                          f"subject={step.event.subject} stored={step.stored.isoformat()}", file=sys.stderr)
                    for note in engine.explain:
                        print(note, file=sys.stderr)
                    engine.explain.clear()
                if step.error:
                    counts["skipped"] += 1
                    print(f"seq {step.seq}: skipped: {step.error}", file=sys.stderr)
                for f in step.firings[0] if step.firings else []:
                    if f.error:
                        counts["failed"] += 1
                        print(f"seq {step.seq}: firing {f.id} failed: {f.error}", file=sys.stderr)
                        if runner is not None:
                            await runner.run(f)  # records the failure and runs the dlqTrigger, as live
                        continue
                    counts["firings"] += 1
                    _print_firing(f)
                    if runner is not None:
                        outcome = await runner.run(f)
                        if not outcome.ok:
                            counts["failed"] += 1
        finally:
            if runner is not None:
                await runner.close()
        print(f"replayed {counts['events']} event(s) from {held.describe()}: {counts['firings']} firing(s)"
              + (f", {counts['failed']} failed" if counts["failed"] else "")
              + (f", {counts['skipped']} skipped" if counts["skipped"] else "")
              + ("; actions executed" if args.execute else ""), file=sys.stderr)
        return 1 if counts["skipped"] or counts["failed"] else 0

    return _over_history(args, start, end, body)


def run_diff(args: argparse.Namespace) -> int:
    new = load_or_report(args.new, "Sensor")
    old = load_or_report(args.old, "Sensor")
    window = _window(args)
    if new is None or old is None or window is None:
        return EXIT_INVALID
    start, end = window

    async def body(bus: EventBus, held: HistoryWindow) -> int:
        engines = [Engine(new), Engine(old)]
        only: list[dict[Any, Firing]] = [{}, {}]
        events = 0
        async for step in replay(bus, engines, start, end):
            events += 1
            if step.error:
                print(f"seq {step.seq}: skipped: {step.error}", file=sys.stderr)
            # A firing both versions make cancels out whenever the other one makes it.
            for i, fired in enumerate(step.firings):
                other = only[1 - i]
                for f in fired:
                    key = firing_key(f)
                    if key in other:
                        del other[key]
                    else:
                        only[i][key] = f
        for prefix, firings in (("+", only[0]), ("-", only[1])):
            for f in firings.values():
                _print_firing(f, prefix)
        print(f"compared {events} event(s): {len(only[0])} firing(s) only in {args.new}, "
              f"{len(only[1])} only in {args.old}", file=sys.stderr)
        return 1 if only[0] or only[1] else 0

    return _over_history(args, start, end, body)
