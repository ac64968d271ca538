"""Crash test: a live sensor process killed with SIGKILL again and again, and NATS restarted,
while a stream of events flows. Every expected firing must reach the HTTP server, and no
firing may take effect twice (the server, like real APIs, honours Idempotency-Key).

Figures (expected / delivered / duplicated requests) are printed; run with -s to see them.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.sensor.engine import Engine
from airflow_argo_events.core.spec.sensor import Sensor

from ..support import RecordingServer

CLI = str(Path(sys.executable).parent / "argo-events")
PAIRS = 500  # 1,000 events


def sensor_doc(url: str) -> dict:
    kind = lambda k: {"data": [{"path": "kind", "type": "string", "value": [f"^{k}$"]}]}  # noqa: E731
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": "crashy"}, "spec": {
        "dependencies": [
            {"name": "a", "eventSourceName": "src", "eventName": "ev", "filters": kind("a")},
            {"name": "b", "eventSourceName": "src", "eventName": "ev", "filters": kind("b")}],
        "triggers": [{"template": {"name": "pair", "conditions": "a && b", "http": {
            "url": url, "method": "POST", "payload": [
                {"src": {"dependencyName": "a", "dataKey": "i"}, "dest": "a"},
                {"src": {"dependencyName": "b", "dataKey": "i"}, "dest": "b"}]}},
            "retryStrategy": {"steps": 10, "duration": "200ms", "factor": 1.5}}]}}


@pytest.mark.timeout(400)
async def test_no_lost_no_duplicate_firing_under_kill_9_and_nats_restart(private_nats, tmp_path):
    server = private_nats()
    http = RecordingServer().start()
    manifest = tmp_path / "sensor.yaml"
    manifest.write_text(yaml.safe_dump(sensor_doc(http.url + "/fired")))
    events = []
    for i in range(PAIRS):
        events.append(new_event(source="src", subject="ev", type="webhook", data={"kind": "a", "i": i}, id=f"a{i}"))
        events.append(new_event(source="src", subject="ev", type="webhook", data={"kind": "b", "i": i}, id=f"b{i}"))
    engine = Engine(Sensor.model_validate(sensor_doc(http.url)))
    expected = {f.id for e in events for f in engine.process(e)}
    assert len(expected) == PAIRS

    log = open(tmp_path / "sensor.log", "ab")

    def start_sensor() -> subprocess.Popen:
        return subprocess.Popen([CLI, "sensor", "run", "-f", str(manifest), "--nats", server.url],
                                stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def received() -> set[str]:
        return {r.headers.get("Idempotency-Key") for r in http.requests}

    proc = start_sensor()
    kills = 0
    nats_restarts = 0
    rng = random.Random(7)
    try:
        settings = NatsSettings.from_url(server.url)
        async with EventBus(settings, StreamSettings(replicas=1)) as bus:
            # wait for the sensor's durable consumer (DeliverNew: it must exist before we publish)
            for _ in range(1200):  # a loaded machine can take seconds to start a Python process
                names = [c.name async for c in _consumers(bus)]
                if names:
                    break
                await asyncio.sleep(0.05)
            kill_points = sorted(rng.sample(range(50, len(events) - 50), 5))
            restart_point = len(events) // 2
            for n, ev in enumerate(events):
                while True:
                    try:
                        await bus.publish(ev, timeout=2)
                        break
                    except Exception:
                        await asyncio.sleep(0.2)  # NATS restarting
                if kill_points and n == kill_points[0]:
                    kill_points.pop(0)
                    await asyncio.sleep(rng.uniform(0, 0.3))
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    kills += 1
                    proc = start_sensor()
                if n == restart_point:
                    server.restart()
                    nats_restarts += 1
                if n % 20 == 0:
                    await asyncio.sleep(0.01)
        for _ in range(1200):
            if expected <= received():
                break
            await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        http.stop()
    keys = Counter(r.headers.get("Idempotency-Key") for r in http.requests)
    delivered = set(keys) & expected
    duplicated = sum(c - 1 for c in keys.values() if c > 1)
    unexpected = set(keys) - expected
    print(f"\ncrash test: events {len(events)}, kills {kills}, NATS restarts {nats_restarts}, firings expected "
          f"{len(expected)}, delivered {len(delivered)}, unexpected {len(unexpected)}, requests {len(http.requests)}, "
          f"repeated requests {duplicated} (same Idempotency-Key)")
    assert kills == 5 and nats_restarts == 1
    assert delivered == expected, f"lost firings: {sorted(expected - delivered)[:10]}; see {tmp_path}/sensor.log"
    assert not unexpected, f"firings that should not exist: {sorted(unexpected)[:10]}"
    # each request's body matches its pair: a retried firing carries the same events
    for r in http.requests:
        body = r.json()
        assert body["a"] == body["b"], body


async def _consumers(bus):
    info = await bus.js.consumers_info(bus.stream.name)
    for c in info:
        yield c
