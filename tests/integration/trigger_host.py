"""A stand-in triggerer for crash tests: runs SensorTriggers in one event loop and records each
TriggerEvent it takes as one line ``<trigger name> <firing id> <event id>`` in a file.

    python tests/integration/trigger_host.py NATS_URL STREAM OUT_FILE NAME:SOURCE.EVENT ...

As Airflow's triggerer, it iterates each trigger's ``run()`` in a task and resumes the generator
right after it stored the event (one ``os.write`` to a file opened with O_APPEND, so a SIGKILL
never leaves half a line). Runs until killed or SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="trigger-host-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def trigger_of(spec: str):  # type: ignore[no-untyped-def]
    """``name:source.event`` -> the SensorTrigger a test builds the same way (same state)."""
    from airflow_argo_events.triggers import SensorTrigger

    name, subject = spec.split(":", 1)
    source, event = subject.split(".", 1)
    return SensorTrigger(name=name, dependencies=[{"name": "d", "eventSourceName": source, "eventName": event}])


async def main(url: str, stream: str, out: str, specs: list[str]) -> None:
    os.environ["AIRFLOW_CONN_NATS_DEFAULT"] = f"{url}?stream={stream}"
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def consume(spec: str) -> None:
        trigger = trigger_of(spec)
        async for event in trigger.run():
            payload = event.payload
            os.write(fd, f"{trigger.name} {payload['firing_id']} {payload['events']['d']['id']}\n".encode())

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(consume(spec)) for spec in specs]
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    failed = [t for t in tasks if not t.cancelled() and t.exception() is not None]
    if failed:
        raise SystemExit(f"{len(failed)} trigger(s) failed: {failed[0].exception()!r}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
