"""Bridges between Prefect events and the bus, against a real Prefect server: the ``prefect``
EventSource (forwarding, filters, resume after SIGKILL) and the ``prefectEvent`` action."""

from __future__ import annotations

import os
import subprocess
import uuid
from typing import Any

import yaml

from airflow_argo_events.core.actions.prefect import event_id_for
from airflow_argo_events.core.events import decode, new_event

from ..support import CLI, SensorProcess, expected_firings, wait_for_consumer
from .test_prefect_action import _now, _poll, api  # noqa: F401 - the api fixture


class EventSourceProcess(SensorProcess):
    """``argo-events eventsource run -f MANIFEST --nats URL --stream S`` as a child process."""

    def start(self) -> EventSourceProcess:
        if self._log is None:
            self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([CLI, "eventsource", "run", "-f", str(self.manifest), "--nats", self.nats_url,
                                      *self.extra_args], stdout=self._log, stderr=self._log,
                                     stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    def subscriptions(self) -> int:
        return self.log_path.read_text(errors="replace").count("subscribed to")


async def _stream_ids(bus: Any) -> list[str]:
    info = await bus.js.stream_info(bus.stream.name)
    if not info.state.messages:
        return []
    sub = await bus.js.pull_subscribe(f"{bus.stream.name}.>", stream=bus.stream.name)
    try:
        msgs = await sub.fetch(info.state.messages, timeout=5)
        return [decode(m.data).id for m in msgs]
    finally:
        await sub.unsubscribe()


async def test_prefect_eventsource_forwards_filters_and_resumes_after_sigkill(api, bus, nats_url, tmp_path):  # noqa: F811
    uid = uuid.uuid4().hex[:8]
    es = {"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource", "metadata": {"name": f"prefect-{uid}"},
          "spec": {"prefect": {"shop": {"events": [f"shop{uid}.*"], "resources": ["shop.order.*"],
                                        "resumeOverlap": "30s"}}}}
    manifest = tmp_path / "es.yaml"
    manifest.write_text(yaml.safe_dump(es))
    proc = EventSourceProcess(manifest, nats_url, tmp_path / "es.log", extra_args=["--stream", bus.stream.name])
    proc.start()
    emitted: list[str] = []

    async def emit(name: str, resource: str) -> str:
        eid = str(uuid.uuid4())
        r = await api.client.post("/events", json=[{"id": eid, "event": name, "occurred": _now(),
                                                    "resource": {"prefect.resource.id": resource},
                                                    "payload": {"n": len(emitted)}}])
        r.raise_for_status()
        return eid

    try:
        assert await _poll(lambda: _true(proc.subscriptions() >= 1), 90), proc.tail()
        for i in range(10):
            emitted.append(await emit(f"shop{uid}.order.created", f"shop.order.{i}"))
        await emit(f"other{uid}.order.created", "shop.order.x")  # another name: filtered out
        await emit(f"shop{uid}.order.created", "warehouse.9")  # another resource: filtered out

        async def forwarded(n: int) -> bool:
            return len(await _stream_ids(bus)) >= n

        assert await _poll(lambda: forwarded(10), 60), proc.tail()
        proc.kill()  # SIGKILL; these events happen while nothing listens
        # Prefect stores events in batches (every 20 events or 5 s): on a fast restart some of
        # these are not stored yet, so neither the REST read nor the socket's backfill has them
        # and only the re-read storageDelay after subscribing does (lost before that fix).
        for i in range(10, 20):
            emitted.append(await emit(f"shop{uid}.order.created", f"shop.order.{i}"))
        proc.start()
        assert await _poll(lambda: forwarded(20), 90), proc.tail()
        assert await _poll(lambda: _true(proc.subscriptions() >= 2), 60), proc.tail()
    finally:
        proc.stop()
    ids = await _stream_ids(bus)
    assert sorted(ids) == sorted(emitted), "lost, duplicated or unfiltered events"
    sub = await bus.js.pull_subscribe(f"{bus.stream.name}.>", stream=bus.stream.name)
    (first, *_) = await sub.fetch(1, timeout=5)
    ev = decode(first.data)
    assert (ev.source, ev.subject, ev.type) == (f"prefect-{uid}", "shop", "prefect")
    assert ev.data["event"] == f"shop{uid}.order.created" and ev.data["resource"]["prefect.resource.id"] == \
        "shop.order.0"


async def test_prefect_event_action_emits_one_event_per_firing(api, bus, nats_url, tmp_path):  # noqa: F811
    uid = uuid.uuid4().hex[:8]
    doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": f"to-prefect-{uid}"},
           "spec": {"dependencies": [{"name": "order", "eventSourceName": "shop", "eventName": "order"}],
                    "triggers": [{"template": {"name": "tell-prefect", "prefectEvent": {
                        "event": f"shop{uid}.order.received", "resource": {"prefect.resource.id": f"shop.{uid}"},
                        "payload": [{"src": {"dependencyName": "order", "dataKey": "body.id"}, "dest": "order_id"}]}},
                        "retryStrategy": {"steps": 10, "duration": "200ms"}}]}}
    events = [new_event(source="shop", subject="order", type="webhook", data={"body": {"id": f"A{i}"}},
                        id=f"{uid}-{i}") for i in range(3)]
    expected = {event_id_for(f) for f in expected_firings(doc, events)}
    manifest = tmp_path / "sensor.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    sensor = SensorProcess(manifest, nats_url, tmp_path / "sensor.log", extra_args=["--stream", bus.stream.name])
    sensor.start()
    found: list[dict[str, Any]] = []

    async def arrived() -> bool:
        r = await api.client.post("/events/filter", json={"filter": {
            "event": {"name": [f"shop{uid}.order.received"]}, "occurred": {"since": "2020-01-01T00:00:00Z"}},
            "limit": 50})
        r.raise_for_status()
        found[:] = r.json()["events"]
        return len(found) >= 3

    try:
        await wait_for_consumer(bus, process=sensor)
        for ev in events:
            await bus.publish(ev)
        assert await _poll(arrived, 90), sensor.tail()
    finally:
        sensor.stop()
    assert {e["id"] for e in found} == expected
    assert sorted(e["payload"]["order_id"] for e in found) == ["A0", "A1", "A2"]
    assert all(e["resource"]["prefect.resource.id"] == f"shop.{uid}" for e in found)
    assert {r["prefect.resource.role"] for e in found for r in e["related"]} == {"dependency:order"}


async def _true(value: bool) -> bool:
    return value
