"""Prometheus metrics with Argo's names: scrape the real endpoint after a known stream and check the counts."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from airflow_argo_events.core.actions.executor import ActionRunner
from airflow_argo_events.core.bus import EventBus
from airflow_argo_events.core.bus.embedded import free_port
from airflow_argo_events.core.events import encode, new_event
from airflow_argo_events.core.observe.metrics import PrometheusMetrics
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name
from tests.integration.test_sensor_runtime import running, until
from tests.integration.test_sources import manifest

pytestmark = pytest.mark.timeout(120)


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint: (name, sorted labels) -> value."""
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def sample(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_sensor_metrics_after_a_known_stream(bus: EventBus):
    name = unique_name("met")
    sensor = Sensor.model_validate({"metadata": {"name": name, "namespace": "argo"}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "shop", "eventName": "order",
                          "filters": {"data": [{"path": "ok", "type": "bool", "value": ["true"]}]}}],
        "triggers": [{"template": {"name": "note", "conditions": "a", "log": {}}},
                     {"template": {"name": "call", "conditions": "a",
                                   "http": {"url": f"http://127.0.0.1:{free_port()}/x", "method": "POST"}},
                      "retryStrategy": {"steps": 2, "duration": "10ms"}}]}})
    metrics = PrometheusMetrics(namespace="argo")
    port = metrics.serve(0, "127.0.0.1")
    holder = {}

    async def execute(firing):
        return await holder["runner"].run(firing)

    try:
        async with running(sensor, bus, execute, metrics=metrics) as rt:
            holder["runner"] = ActionRunner(rt.engine, metrics=metrics, on_attempt=rt.note_attempt)
            before = await scrape(port)  # Argo's InitSensorMetrics: every trigger's counters exist at 0
            for i in range(3):
                await bus.publish(new_event(source="shop", subject="order", type="webhook", data={"ok": True},
                                            id=f"ok{i}"))
            for i in range(2):
                await bus.publish(new_event(source="shop", subject="order", type="webhook", data={"ok": False},
                                            id=f"no{i}"))
            # the same event id again, past the server's de-duplication (another Nats-Msg-Id): a duplicate
            again = new_event(source="shop", subject="order", type="webhook", data={"ok": True}, id="ok0")
            await bus.publish_raw(bus.stream.subject("shop", "order"), encode(again), {"Nats-Msg-Id": "other"})
            await bus.publish_raw(bus.stream.subject("shop", "order"), b"not a cloudevent", {"Nats-Msg-Id": "junk"})
            await until(lambda: rt.stats["received"] == 7 and rt.stats["actions_done"] == 6, timeout=30)
            after = await scrape(port)
        await holder["runner"].close()
    finally:
        metrics.close()
    for t in ("note", "call"):
        assert sample(before, "argo_events_action_triggered_total", namespace="argo", sensor_name=name,
                      trigger_name=t) == 0
    labels = {"namespace": "argo", "sensor_name": name}
    assert sample(after, "argo_events_action_triggered_total", **labels, trigger_name="note") == 3
    assert sample(after, "argo_events_action_failed_total", **labels, trigger_name="note") == 0
    assert sample(after, "argo_events_action_retries_failed_total", **labels, trigger_name="note") == 0
    # each firing of 'call' tried twice (retryStrategy steps 2), then gave up: as Argo counts them
    assert sample(after, "argo_events_action_triggered_total", **labels, trigger_name="call") == 0
    assert sample(after, "argo_events_action_failed_total", **labels, trigger_name="call") == 6
    assert sample(after, "argo_events_action_retries_failed_total", **labels, trigger_name="call") == 3
    assert sample(after, "argo_events_action_duration_milliseconds_count", **labels, trigger_name="call") == 6
    assert sample(after, "argo_events_action_duration_milliseconds_count", **labels, trigger_name="note") == 3
    assert sample(after, "argo_events_action_duration_milliseconds_sum", **labels, trigger_name="call") > 0
    for decision, n in (("accepted", 3), ("rejected", 2), ("duplicate", 1), ("malformed", 1)):
        assert sample(after, "argo_events_sensor_events_total", **labels, decision=decision) == n, decision
    assert not any(k[0].endswith("_created") for k in after)  # as Go's client: no _created series
    assert rt.stats["actions_ok"] == 3 and rt.stats["actions_failed"] == 3 and rt.stats["action_retries"] == 3


async def test_eventsource_metrics_after_a_known_stream(bus: EventBus):
    port = free_port()
    es = manifest("wh", {"webhook": {"ex": {"port": str(port), "endpoint": "/ex", "method": "POST"}}})
    metrics = PrometheusMetrics()
    mport = metrics.serve(0, "127.0.0.1")
    rt = EventSourceRuntime(es, bus, metrics=metrics)
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):  # until the webhook listens
                try:
                    async with http.post(f"http://127.0.0.1:{port}/ex", json={"n": 0}) as resp:
                        assert resp.status == 200
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            for n in range(1, 3):
                async with http.post(f"http://127.0.0.1:{port}/ex", json={"n": n}) as resp:
                    assert resp.status == 200
        samples = await scrape(mport)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    after_stop = await scrape(mport)
    metrics.close()
    labels = {"namespace": "default", "eventsource_name": "wh", "event_name": "ex"}
    assert sample(samples, "argo_events_events_sent_total", **labels) == 3
    assert sample(samples, "argo_events_events_sent_failed_total", **labels) == 0
    assert sample(samples, "argo_events_events_processing_failed_total", **labels) == 0
    assert sample(samples, "argo_events_event_processing_duration_milliseconds_count", **labels) == 3
    assert sample(samples, "argo_events_event_service_running_total", namespace="default",
                  eventsource_name="wh") == 1
    assert sample(after_stop, "argo_events_event_service_running_total", namespace="default",
                  eventsource_name="wh") == 0
