"""Crash test: a live sensor process killed with SIGKILL again and again, and NATS restarted,
while a stream of events flows. Every expected firing must reach the HTTP server, and no
firing may take effect twice (the server, like real APIs, honours Idempotency-Key).

Figures (expected / delivered / duplicated requests) are printed; run with -s to see them.
"""

from __future__ import annotations

import asyncio
import random

import pytest
import yaml

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings

from ..support import (
    FiringTally,
    RecordingServer,
    SensorProcess,
    expected_firings,
    pair_events,
    pair_sensor_doc,
    publish_retrying,
    wait_for_consumer,
    wait_until,
)

PAIRS = 500  # 1,000 events


@pytest.mark.timeout(400)
# Exact pairing needs the stream's order: a message delivered to a killed process, or lost in
# flight while NATS restarts, comes back behind newer ones; the order gate (core/runtime/order.py)
# holds the newer ones until it is back.
@pytest.mark.parametrize("correlated", [False, True], ids=["plain", "correlated"])
async def test_no_lost_no_duplicate_firing_under_kill_9_and_nats_restart(correlated, private_nats, tmp_path):
    """``correlated``: the pairs are matched by key (correlation extension) and arrive
    interleaved (up to 25 pairs open at once), so the kills hit a sensor holding many keys."""
    server = private_nats()
    http = RecordingServer().start()
    doc = pair_sensor_doc(http.url + "/fired", correlated=correlated)
    manifest = tmp_path / "sensor.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    events = pair_events(PAIRS, interleave=25 if correlated else 0)
    expected = expected_firings(doc, events)
    assert len(expected) == PAIRS

    sensor = SensorProcess(manifest, server.url, tmp_path / "sensor.log").start()
    kills = 0
    nats_restarts = 0
    rng = random.Random(7)
    try:
        settings = NatsSettings.from_url(server.url)
        async with EventBus(settings, StreamSettings(replicas=1)) as bus:
            # the sensor's durable consumer must exist before we publish (DeliverNew)
            await wait_for_consumer(bus, process=sensor)
            kill_points = sorted(rng.sample(range(50, len(events) - 50), 5))
            restart_point = len(events) // 2
            for n, ev in enumerate(events):
                await publish_retrying(bus, ev)  # retries while NATS restarts
                if kill_points and n == kill_points[0]:
                    kill_points.pop(0)
                    await asyncio.sleep(rng.uniform(0, 0.3))
                    sensor.kill()
                    kills += 1
                    sensor.start()
                if n == restart_point:
                    server.restart()
                    nats_restarts += 1
                if n % 20 == 0:
                    await asyncio.sleep(0.01)
        await wait_until(lambda: expected <= set(FiringTally.of(expected, http.requests).keys), timeout=120)
    finally:
        sensor.stop()
        http.stop()
    tally = FiringTally.of(expected, http.requests)
    kind = "correlated" if correlated else "plain"
    print(f"\ncrash test ({kind}): events {len(events)}, kills {kills}, NATS restarts {nats_restarts}, requests "
          f"{len(http.requests)}; {tally.line()}")
    assert kills == 5 and nats_restarts == 1
    # each request's body matches its pair: a retried firing carries the same events
    tally.assert_exactly_once(f"; see {tmp_path}/sensor.log")
