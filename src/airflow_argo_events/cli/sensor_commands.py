"""``argo-events sensor test`` (offline replay) and ``argo-events sensor run`` (live)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from airflow_argo_events.cli.common import EXIT_INVALID, load_or_report
from airflow_argo_events.core.events import event_from_json
from airflow_argo_events.core.exceptions import EventDecodeError
from airflow_argo_events.core.sensor.engine import Engine


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sensor = sub.add_parser("sensor", help="test or run an Argo Sensor manifest")
    ssub = sensor.add_subparsers(dest="sensor_command", metavar="ACTION", required=True)
    t = ssub.add_parser(
        "test", help="replay recorded events through a Sensor; print one JSON line per firing",
        description="Offline and deterministic: the clock is each event's time. Prints "
                    '{"trigger", "events", "resolved"} per firing. --explain tells on stderr why each '
                    "event did or did not fire.",
    )
    t.add_argument("sensor", metavar="SENSOR.yaml")
    t.add_argument("--events", required=True, metavar="EVENTS.jsonl",
                   help="one structured-mode CloudEvent JSON per line ('-' for stdin)")
    t.add_argument("--explain", action="store_true", help="explain each event's path through the sensor on stderr")
    t.set_defaults(func=run_test)
    try:
        from airflow_argo_events.cli import sensor_run

        sensor_run.register(ssub)
    except ImportError:  # pragma: no cover
        pass


def run_test(args: argparse.Namespace) -> int:
    sensor = load_or_report(args.sensor, "Sensor")
    if sensor is None:
        return EXIT_INVALID
    engine = Engine(sensor, explain=args.explain)
    try:
        stream: TextIO = sys.stdin if args.events == "-" else open(args.events, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as err:
        print(f"--events {args.events}: {err.strerror or err}", file=sys.stderr)
        return EXIT_INVALID
    bad = 0
    with stream:
        for lineno, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                event = event_from_json(json.loads(line))
            except (ValueError, EventDecodeError) as err:
                bad += 1
                print(f"{args.events}:{lineno}: skipped: {err}", file=sys.stderr)
                continue
            if engine.explain is not None:
                engine.explain.clear()
            firings = engine.process(event)
            if engine.explain is not None:
                print(f"event {lineno} id={event.id} source={event.source} subject={event.subject} "
                      f"time={event.time.isoformat()}", file=sys.stderr)
                for note in engine.explain:
                    print(note, file=sys.stderr)
            for f in firings:
                if f.error:  # not executed, as in Argo: no firing line
                    print(f"{args.events}:{lineno}: firing {f.id} failed: {f.error}", file=sys.stderr)
                    continue
                print(json.dumps(f.summary(), separators=(",", ":")), flush=True)
    if args.explain:
        print("end of events:", file=sys.stderr)
        for t in engine.triggers:
            saved = sorted(engine.saved(t.name))
            state = f"saved {saved}; {engine.waiting_for(t.name)}" if t.condition.requires_and else \
                "fires on each matching event (no &&)"
            print(f"  {t.name}: {state}", file=sys.stderr)
    return 1 if bad else 0
