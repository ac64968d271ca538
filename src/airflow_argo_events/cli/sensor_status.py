"""``argo-events sensor status NAME|-f SENSOR.yaml`` and ``argo-events sensor list``: live sensors, read-only.

The reading is ``core.observe.status`` (the Airflow UI page calls the same functions);
this module only parses arguments and draws.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from typing import Any

from rich.console import Console, Group
from rich.text import Text

from airflow_argo_events.cli.common import EXIT_INVALID, load_or_report, run_async
from airflow_argo_events.cli.nats_target import nats_target
from airflow_argo_events.core.bus import EventBus, StreamSettings
from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.observe.status import (
    SensorNotFound,
    SensorStatus,
    SensorSummary,
    format_age,
    list_sensors,
    read_sensor_status,
)
from airflow_argo_events.core.runtime.identity import check_state_name, state_name


def configure_status(p: argparse.ArgumentParser) -> None:
    p.description = ("Reads the sensor's state (KV bucket), its journal and its consumers on the server, without "
                     "disturbing the running sensor. NAME is a sensor name (its most recently started state) or "
                     "a state name from 'argo-events sensor list'; -f finds the state 'sensor run -f' uses.")
    p.add_argument("name", nargs="?", metavar="NAME", help="sensor name or state name")
    p.add_argument("-f", "--file", metavar="SENSOR.yaml", help="the manifest 'sensor run -f' was started with")
    p.add_argument("--stream", default="default", help="with -f: the stream it runs on, default 'default'")
    p.add_argument("--state-name", metavar="NAME", help="with -f: the --state-name it runs with")
    p.add_argument("--nats", help="NATS URL (default $ARGO_EVENTS_NATS_URL, else local/embedded)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of text")
    p.add_argument("--watch", action="store_true", help="redraw every --interval seconds until Ctrl-C")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between redraws with --watch (default 1)")
    p.set_defaults(func=run_status)


def configure_list(ls: argparse.ArgumentParser) -> None:
    ls.description = ("Lists sensor states (KV buckets with a 'meta' key) with who runs them "
                      "(the DAG/task of a SensorTrigger or EventSensor).")
    ls.add_argument("--nats", help="NATS URL (default $ARGO_EVENTS_NATS_URL, else local/embedded)")
    ls.add_argument("--json", action="store_true", help="one JSON array instead of the table")
    ls.set_defaults(func=run_list)


# ---------------------------------------------------------------- drawing


def render(status: SensorStatus) -> Group:
    """The status as lines of rich Text (styles show in a terminal; plain when piped)."""
    lines: list[Text] = []
    head = Text()
    head.append(f"sensor {status.sensor or '?'}", style="bold")
    head.append(f" (state {status.state}, stream {status.stream or '?'}): ")
    head.append("running" if status.running else "not running", style="green" if status.running else "yellow")
    lines.append(head)
    lines.append(Text(f"  started {status.started or '-'}; notes written {status.notes_written or '-'}; "
                      f"read {status.read_at}"))
    if status.owner:
        lines.append(Text("  owner: " + ", ".join(f"{k}={v}" for k, v in sorted(status.owner.items()))))
    for w in status.warnings:
        lines.append(Text(f"  note: {w}", style="yellow"))
    for t in status.triggers:
        line = Text()
        line.append(f"trigger {t.name}", style="bold")
        line.append(f": condition \"{t.condition}\": ")
        done = t.waiting_for.startswith("condition already") or not t.stateful
        line.append(t.waiting_for or "?", style="green" if done else "yellow")
        if t.correlation_keys > 1:
            line.append(f" ({t.correlation_keys} correlation keys; showing one)")
        lines.append(line)
        if t.stateful:
            for d in t.dependencies:
                dl = Text("  ")
                if d.satisfied:
                    dl.append(f"{d.name}: satisfied", style="green")
                    dl.append(f" by event {d.event_id} at {d.event_time or '?'}"
                              + (f" ({format_age(d.age_seconds)})" if d.age_seconds is not None else ""))
                else:
                    dl.append(f"{d.name}: waiting", style="yellow")
                lines.append(dl)
        lf = t.last_firing
        if lf is None:
            lines.append(Text("  last firing: none yet"))
        else:
            fl = Text(f"  last firing {lf.id} at {lf.at}: ")
            fl.append("ok" if lf.ok else "failed", style="green" if lf.ok else "red")
            extra = [f"{lf.attempts} attempt(s)"] if lf.attempts else []
            if lf.status:
                extra.append(f"HTTP {lf.status}")
            if lf.ref:
                extra.append(f"DAG run {lf.ref}")
            fl.append((f" ({', '.join(extra)})" if extra else "") + (f": {lf.detail}" if lf.detail else ""))
            lines.append(fl)
        for p in t.pending:
            pl = Text(f"  pending firing {p.id} since {p.created}: ")
            pl.append("running" if p.running else "waiting for an action slot",
                      style="yellow")
            if p.attempts:
                pl.append(f", {p.attempts} attempt(s)")
            if p.last_error:
                pl.append(f", last error: {p.last_error}", style="red")
            pl.append("; events " + ", ".join(f"{d}={e}" for d, e in sorted(p.events.items())))
            lines.append(pl)
    for d in status.dependencies:
        line = Text()
        line.append(f"dependency {d.name}", style="bold")
        line.append(f" ({d.event_source}/{d.event_name}): ")
        c = d.consumer
        if c is None:
            line.append("no consumer recorded")
        elif c.error:
            line.append(f"consumer {c.name}: {c.error}", style="red")
        else:
            line.append(f"lag {c.lag}", style="yellow" if c.lag else "green")
            line.append(f" ({c.pending} not delivered, {c.ack_pending} unacked, {c.redelivered} redelivered)")
        lines.append(line)
        e = d.last_event
        if e is None:
            lines.append(Text("  last event: none seen"))
        else:
            age = f" ({format_age(e.age_seconds)})" if e.age_seconds is not None else ""
            el = Text(f"  last event {e.id} at {e.at}{age}: ")
            el.append(e.verdict, style="green" if e.verdict == "passed" else "yellow")
            lines.append(el)
    c = status.counters
    if c:
        lines.append(Text(
            f"counters: received {c.get('received', 0)}, rejected {c.get('rejected', 0)}, duplicates "
            f"{c.get('skipped', 0)}, malformed {c.get('malformed', 0)}, firings {c.get('firings', 0)}, actions ok "
            f"{c.get('actions_ok', 0)}, failed {c.get('actions_failed', 0)} (retried attempts "
            f"{c.get('action_retries', 0)}, dead-letter triggers {c.get('dlq_triggered', 0)}), set aside "
            f"{c.get('poison', 0)}"))
    return Group(*lines)


def _list_table(rows: list[SensorSummary]) -> str:
    def owner(r: SensorSummary) -> str:
        o = r.owner
        if not o:
            return "cli"
        who = o.get("kind", "")
        where = "/".join(x for x in (o.get("dag_id"), o.get("task_id")) if x)
        return f"{who} {where}".strip() or "-"

    head = ("SENSOR", "STATE", "STREAM", "RUN BY", "TRIGGERS", "PENDING", "STARTED")
    lines = [head] + [(r.sensor, r.state, r.stream or "-", owner(r), ",".join(r.triggers) or "-",
                       "-" if r.pending is None else str(r.pending), r.started or "-") for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


# ---------------------------------------------------------------- commands


def run_status(args: argparse.Namespace) -> int:
    if bool(args.name) == bool(args.file):
        print("sensor status: give a sensor NAME or -f SENSOR.yaml (one of them)", file=sys.stderr)
        return EXIT_INVALID
    sensor = None
    name = args.name
    if args.file:
        sensor = load_or_report(args.file, "Sensor")
        if sensor is None:
            return EXIT_INVALID
        try:
            name = check_state_name(args.state_name) if args.state_name else \
                state_name(sensor, args.stream, "sensor")
        except SpecError as err:
            print(f"--state-name: {err}", file=sys.stderr)
            return EXIT_INVALID

    async def go() -> int:
        with nats_target(args.nats, quiet=True) as settings:
            async with EventBus(settings, StreamSettings(), ensure=False) as bus:
                try:
                    if not args.watch:
                        status = await read_sensor_status(bus.js, name, sensor=sensor)
                        _print(status, args.json)
                        return 0
                    return await _watch(bus, name, sensor, args)
                except SensorNotFound as err:
                    print(str(err), file=sys.stderr)
                    return 1

    return run_async(go)


def _print(status: SensorStatus, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status.to_dict(), indent=2))
        return
    Console(soft_wrap=True, highlight=False).print(render(status))


async def _watch(bus: EventBus, name: str, sensor: Any, args: argparse.Namespace) -> int:
    """Redraw in place (rich Live) until Ctrl-C or SIGTERM (exit 130 or 143); a read that fails
    shows why and tries again.

    The signals set an event the loop waits on rather than cancel the task: Python 3.11's
    ``asyncio.wait_for`` can swallow a cancellation that lands as its inner call completes,
    and the watch then ran on after Ctrl-C (seen in CI).
    """
    from rich.live import Live

    console = Console(highlight=False, soft_wrap=True)
    stop = asyncio.Event()
    caught: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        caught.append(sig)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    async def pause() -> bool:
        """Wait one interval; True once a signal asked to stop."""
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.2, args.interval))
        return stop.is_set()

    async def frame() -> Any:
        try:
            return render(await read_sensor_status(bus.js, name, sensor=sensor))
        except SensorNotFound:
            raise
        except Exception as err:  # the bus went away: keep watching
            return Text(f"cannot read the status now: {err}", style="red")

    if not console.is_terminal:  # piped: no redrawing in place, one frame after the other
        while not stop.is_set():
            console.print(await frame())
            console.print()
            sys.stdout.flush()
            if await pause():
                break
        return 128 + caught[0]  # as a shell reports a program a signal ended (130 for Ctrl-C)
    with Live(Text("reading..."), console=console, auto_refresh=False, screen=False) as live:
        while not stop.is_set():
            live.update(await frame(), refresh=True)
            if await pause():
                break
    return 128 + caught[0]


def run_list(args: argparse.Namespace) -> int:
    async def go() -> None:
        with nats_target(args.nats, quiet=True) as settings:
            async with EventBus(settings, StreamSettings(), ensure=False) as bus:
                rows = await list_sensors(bus.js)
        if args.json:
            print(json.dumps([r.to_dict() for r in rows], indent=2))
        elif rows:
            print(_list_table(rows))
        else:
            print("no sensor state on this server", file=sys.stderr)

    return run_async(go)
