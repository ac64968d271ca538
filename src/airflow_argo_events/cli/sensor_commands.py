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


def configure_test(t: argparse.ArgumentParser) -> None:
    t.description = ("Offline and deterministic: the clock is each event's time. Prints "
                     '{"trigger", "events", "resolved"} per firing. --explain tells on stderr why each '
                     "event did or did not fire.")
    t.add_argument("sensor", metavar="SENSOR.yaml")
    t.add_argument("--events", required=True, metavar="EVENTS.jsonl",
                   help="one structured-mode CloudEvent JSON per line ('-' for stdin)")
    t.add_argument("--explain", action="store_true", help="explain each event's path through the sensor on stderr")
    t.set_defaults(func=run_test)


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
            if engine.correlated(t.name):
                _explain_pending(engine, t.name)
                continue
            saved = sorted(engine.saved(t.name))
            state = f"saved {saved}; {engine.waiting_for(t.name)}" if t.condition.requires_and else \
                "fires on each matching event (no &&)"
            print(f"  {t.name}: {state}", file=sys.stderr)
    return 1 if bad else 0


EXPLAIN_KEYS = 20


def _explain_pending(engine: Engine, trigger: str) -> None:
    """A correlated trigger's pending keys (the first EXPLAIN_KEYS), each with what it waits for."""
    matches = engine.matches(trigger)
    print(f"  {trigger}: {len(matches)} pending key(s)" + (":" if matches else ""), file=sys.stderr)
    for key, events in list(matches.items())[:EXPLAIN_KEYS]:
        print(f"    {key}: saved {sorted(events)}; {engine.waiting_for(trigger, key)}", file=sys.stderr)
    if len(matches) > EXPLAIN_KEYS:
        print(f"    ... and {len(matches) - EXPLAIN_KEYS} more", file=sys.stderr)
