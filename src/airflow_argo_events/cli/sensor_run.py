"""``argo-events sensor run -f SENSOR.yaml``: the live sensor, like Argo's sensor pod."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from airflow_argo_events.cli.common import (
    EXIT_INVALID,
    add_metrics_option,
    live_logging,
    load_or_report,
    run_until_signal,
    start_metrics,
)
from airflow_argo_events.cli.nats_target import nats_target
from airflow_argo_events.cli.replay_commands import firing_line
from airflow_argo_events.core.actions.base import ActionContext
from airflow_argo_events.core.actions.executor import ActionRunner, Outcome, shadow_outcome
from airflow_argo_events.core.actions.k8s import kubeconfig_api_factory, kubernetes_configured
from airflow_argo_events.core.bus import EventBus, StreamSettings
from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.runtime.identity import check_state_name, state_name
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.sensor.engine import Firing

log = logging.getLogger("airflow_argo_events.sensor")


def configure(p: argparse.ArgumentParser) -> None:
    """``sensor run`` (its name and one-line help are in cli/main.py)."""
    p.add_argument("-f", "--file", required=True, metavar="SENSOR.yaml")
    p.add_argument("--nats", help="NATS URL (default $ARGO_EVENTS_NATS_URL, else local/embedded)")
    p.add_argument("--stream", default="default", help="JetStream stream / subject prefix, default 'default'")
    p.add_argument("--deliver", choices=["new", "all"], default="new",
                   help="where a new sensor starts reading: new events only (Argo) or the whole stream")
    p.add_argument("--state-name", metavar="NAME",
                   help="KV bucket and consumer prefix to use instead of the one derived from the sensor's "
                        "definition (keeps state across a deliberate change; see 'argo-events state list')")
    p.add_argument("--ready-file", metavar="PATH",
                   help="create PATH once the sensor's consumers exist, so events published from then on "
                        "are seen (removed on exit); a script waits for it before publishing")
    p.add_argument("--max-events", type=int, default=0, help="stop after this many events (for scripts/tests)")
    p.add_argument("--shadow", action="store_true",
                   help="run live without executing actions: print one JSON line per firing it would run "
                        "(as 'sensor test'); its state and consumers are its own, the real sensor is not touched")
    add_metrics_option(p)
    p.set_defaults(func=run)


def k8s_context(sensor: Any = None) -> ActionContext:
    """Actions with the plain kubernetes client ($KUBECONFIG or in-cluster), without Airflow.

    The client is imported and configured on the first k8s/argoWorkflow firing, not at start.
    """
    if sensor is not None and not any(t.template is not None and t.template.kind in ("k8s", "argoWorkflow")
                                      for t in sensor.spec.triggers):
        return ActionContext()
    if not kubernetes_configured():
        return ActionContext()  # no cluster: those actions fail with one line
    return ActionContext(k8s_factory=kubeconfig_api_factory())


def run(args: argparse.Namespace) -> int:
    live_logging()
    sensor = load_or_report(args.file, "Sensor")
    if sensor is None:
        return EXIT_INVALID
    try:
        # Named from the whole definition: another sensor never shares it, the same one keeps it.
        # A shadow keeps its own state: it must not take the real sensor's events from its consumers.
        prefix = "shadow" if args.shadow else "sensor"
        bucket = check_state_name(args.state_name) if args.state_name else state_name(sensor, args.stream, prefix)
    except SpecError as err:
        print(f"--state-name: {err}", file=sys.stderr)
        return EXIT_INVALID

    async def main(stop: asyncio.Event) -> None:
        metrics = start_metrics(args.metrics_port, sensor)
        with nats_target(args.nats) as settings:
            async with EventBus(settings, StreamSettings(name=args.stream)) as bus:
                runner: ActionRunner | None = None

                async def execute(firing):  # type: ignore[no-untyped-def]
                    if args.shadow:
                        return shadow_record(firing)
                    assert runner is not None
                    return await runner.run(firing)

                runtime = SensorRuntime(sensor, bus, execute, deliver=args.deliver, bucket=bucket,
                                        consumer_prefix=bucket, metrics=metrics)
                runner = ActionRunner(runtime.engine, k8s_context(sensor), metrics=metrics,
                                      on_attempt=runtime.note_attempt)
                ready = Path(args.ready_file) if args.ready_file else None
                if ready:
                    ready.unlink(missing_ok=True)
                await runtime.start()
                log.info("sensor %s: %slistening on %s (%s); state %s", sensor.metadata.name,
                         "shadow (actions are not executed): " if args.shadow else "",
                         ", ".join(s.subject for s in runtime._subs), settings.describe(), bucket)
                if ready:
                    ready.write_text(bucket + "\n")
                watcher = asyncio.create_task(_stop_after(runtime, args.max_events, stop)) if args.max_events else None
                try:
                    await runtime.run(stop)
                finally:
                    if watcher:
                        watcher.cancel()
                    if ready:
                        ready.unlink(missing_ok=True)
                    await runtime.close()
                    await runner.close()
                log.info("sensor %s: stopped; %s", sensor.metadata.name, runtime.summary())

    return run_until_signal(main)


def shadow_record(firing: Firing) -> Outcome:
    """A shadow sensor's firing: logged (``shadow_outcome``) and printed as one JSON line."""
    outcome = shadow_outcome(firing)
    if not firing.error:
        print(firing_line(firing), flush=True)
    return outcome


async def _stop_after(runtime: SensorRuntime, n: int, stop: asyncio.Event) -> None:
    while runtime.stats["events"] < n:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    stop.set()
