"""The ``prefect`` trigger kind against a real Prefect server: ``argo-events sensor run`` creates
one flow run per firing (checked through Prefect's API), survives SIGKILL without a lost or a
duplicate run, and is compared with a Prefect compound-trigger automation on the same events.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import uuid
from typing import Any

import pytest
import pytest_asyncio
import yaml

from airflow_argo_events.core.events import new_event

from ..support import SensorProcess, expected_firings, pair_events, publish_retrying, wait_for_consumer
from .conftest import PrefectApi


@pytest_asyncio.fixture
async def api(prefect_server: str) -> Any:
    client = PrefectApi(prefect_server)
    yield client
    await client.close()


def prefect_sensor(name: str, deployment: str, *, pairs_by_kind: bool = False) -> dict[str, Any]:
    """``order && payment`` (or the crash test's a/b pairs on one subject) -> a flow run."""
    if pairs_by_kind:
        def kind(k: str) -> dict[str, Any]:
            return {"data": [{"path": "kind", "type": "string", "value": [f"^{k}$"]}]}
        deps = [{"name": "a", "eventSourceName": "src", "eventName": "ev", "filters": kind("a")},
                {"name": "b", "eventSourceName": "src", "eventName": "ev", "filters": kind("b")}]
        params = [{"src": {"dependencyName": "a", "dataKey": "i", "useRawData": True}, "dest": "a"},
                  {"src": {"dependencyName": "b", "dataKey": "i", "useRawData": True}, "dest": "b"}]
        condition = "a && b"
    else:
        deps = [{"name": "order", "eventSourceName": "shop", "eventName": "order"},
                {"name": "payment", "eventSourceName": "shop", "eventName": "payment"}]
        params = [{"src": {"dependencyName": "order", "dataKey": "body.id"}, "dest": "order_id"},
                  {"src": {"dependencyName": "payment", "dataKey": "body.amount", "useRawData": True},
                   "dest": "payment.amount"}]
        condition = "order && payment"
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": name}, "spec": {
        "dependencies": deps,
        "triggers": [{"template": {"name": "process", "conditions": condition, "prefect": {
            "deployment": deployment, "parameters": params, "tags": ["argo-events"]}},
            # Prefect on SQLite may answer 5xx under a burst: retried, and the journal keeps the firing.
            "retryStrategy": {"steps": 20, "duration": "200ms", "factor": 1.5}}]}}


class ServeSensorProcess(SensorProcess):
    """``serve_sensor(MANIFEST, nats=URL)`` in a child process: the sensor as a long-running Prefect flow run."""

    def start(self) -> ServeSensorProcess:
        if self._log is None:
            self._log = open(self.log_path, "ab")
        code = ("import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr)\n"
                "from airflow_argo_events.prefect import serve_sensor\n"
                f"serve_sensor({str(self.manifest)!r}, nats={self.nats_url!r}, stream={self.extra_args[1]!r})\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=self._log, stderr=self._log,
                                     stdin=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self


def start_sensor(doc: dict[str, Any], tmp_path: Any, nats_url: str, stream: str,
                 runner: type[SensorProcess] = SensorProcess) -> SensorProcess:
    manifest = tmp_path / "sensor.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    return runner(manifest, nats_url, tmp_path / "sensor.log", extra_args=["--stream", stream]).start()


def shop_event(kind: str, i: int, prefix: str) -> Any:
    data = {"body": {"id": f"A{i}"}} if kind == "order" else {"body": {"amount": 10 + i}}
    return new_event(source="shop", subject=kind, type="webhook", data=data, id=f"{prefix}{kind}{i}")


async def test_one_firing_creates_one_flow_run_with_its_parameters(api, bus, nats_url, tmp_path):
    flow = f"orders-{uuid.uuid4().hex[:8]}"
    dep_id = await api.deployment(flow, "process")
    doc = prefect_sensor("prefect-one", f"{flow}/process")
    events = [shop_event("order", 1, "one-"), shop_event("payment", 1, "one-")]
    (firing_id,) = expected_firings(doc, events)
    sensor = start_sensor(doc, tmp_path, nats_url, bus.stream.name)
    try:
        await wait_for_consumer(bus, process=sensor)
        for ev in events:
            await bus.publish(ev)
        runs: list[dict[str, Any]] = []

        async def settled() -> bool:
            runs[:] = await api.flow_runs(dep_id)
            return len(runs) >= 1

        assert await _poll(settled, 90), sensor.tail()
    finally:
        sensor.stop()
    (run,) = await api.flow_runs(dep_id)
    assert run["parameters"] == {"order_id": "A1", "payment": {"amount": 11}}
    assert run["idempotency_key"] == firing_id
    assert "argo-events" in run["tags"]
    assert f"flow run {run['name']} ({run['id']}) of {flow}/process created" in (tmp_path / "sensor.log").read_text()


@pytest.mark.parametrize("runner", [SensorProcess, ServeSensorProcess], ids=["sensor-run", "serve_sensor"])
async def test_sigkill_mid_stream_loses_and_duplicates_no_flow_run(api, private_nats, tmp_path, runner):
    """The sensor process (``argo-events sensor run``, or ``serve_sensor`` as a Prefect flow run)
    is killed with SIGKILL three times while pairs stream in; after the restarts every pair has
    exactly one flow run, with its own pair's parameters."""
    from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings

    pairs = 60
    flow = f"crash-{uuid.uuid4().hex[:8]}"
    dep_id = await api.deployment(flow, "pairs")
    doc = prefect_sensor("prefect-crash", f"{flow}/pairs", pairs_by_kind=True)
    events = pair_events(pairs, prefix="crash-")
    expected = expected_firings(doc, events)
    assert len(expected) == pairs
    server = private_nats()
    sensor = start_sensor(doc, tmp_path, server.url, "default", runner)
    rng = random.Random(16)
    kills = 0
    try:
        async with EventBus(NatsSettings.from_url(server.url), StreamSettings(replicas=1)) as bus:
            await wait_for_consumer(bus, process=sensor)
            kill_points = sorted(rng.sample(range(10, len(events) - 10), 3))
            for n, ev in enumerate(events):
                await publish_retrying(bus, ev)
                if kill_points and n == kill_points[0]:
                    kill_points.pop(0)
                    await asyncio.sleep(rng.uniform(0, 0.3))  # somewhere inside a batch or an action
                    sensor.kill()
                    kills += 1
                    sensor.start()
                if n % 10 == 0:
                    await asyncio.sleep(0.02)
        runs: list[dict[str, Any]] = []

        async def all_made() -> bool:
            runs[:] = await api.flow_runs(dep_id)
            return {r["idempotency_key"] for r in runs} >= expected

        assert await _poll(all_made, 240), sensor.tail()
    finally:
        sensor.stop()
    runs = await api.flow_runs(dep_id)
    keys = [r["idempotency_key"] for r in runs]
    print(f"\nprefect crash test: {len(events)} events, {kills} SIGKILLs, flow runs {len(runs)}, "
          f"expected {len(expected)}, unexpected keys {len(set(keys) - expected)}")
    assert kills == 3
    assert set(keys) == expected, "a firing that should not exist made a flow run"
    assert len(keys) == len(set(keys)) == pairs, "two flow runs for one firing"
    assert all(r["parameters"]["a"] == r["parameters"]["b"] for r in runs), "a run paired the wrong events"


async def test_20_orders_then_20_payments_ours_and_a_prefect_compound_trigger(api, bus, nats_url, tmp_path):
    """Documented in docs/prefect.md: the sensor keeps Argo's semantics (the latest event per
    dependency; a firing clears them), so 20 orders then 20 payments make ONE run (order 19
    with payment 0). A Prefect compound trigger (require all, within 60 s) over the same
    sequence is measured in the same test and its count printed."""
    uid = uuid.uuid4().hex[:8]
    ours = await api.deployment(f"ours-{uid}", "process")
    theirs = await api.deployment(f"theirs-{uid}", "process")
    doc = prefect_sensor("prefect-20x20", f"ours-{uid}/process")
    events = [shop_event("order", i, f"x{uid}-") for i in range(20)] + \
        [shop_event("payment", i, f"x{uid}-") for i in range(20)]
    expected = expected_firings(doc, events)
    assert len(expected) == 1

    automation = {
        "name": f"orders-and-payments-{uid}", "enabled": True,
        "trigger": {"type": "compound", "require": "all", "within": 60, "triggers": [
            {"type": "event", "expect": [f"shop{uid}.order"], "match": {"prefect.resource.id": "shop.*"},
             "posture": "Reactive", "threshold": 1, "within": 0},
            {"type": "event", "expect": [f"shop{uid}.payment"], "match": {"prefect.resource.id": "shop.*"},
             "posture": "Reactive", "threshold": 1, "within": 0}]},
        "actions": [{"type": "run-deployment", "source": "selected", "deployment_id": theirs, "parameters": {}}],
    }
    r = await api.client.post("/automations/", json=automation)
    r.raise_for_status()

    async def emit(kind: str, i: int) -> None:
        resp = await api.client.post("/events", json=[{
            "id": str(uuid.uuid4()), "event": f"shop{uid}.{kind}", "occurred": _now(),
            "resource": {"prefect.resource.id": f"shop.{kind}.{i}"}, "payload": {"i": i}}])
        resp.raise_for_status()

    # The triggers service loads a new automation shortly after it is created: a probe pair
    # tells when it acts (its one run is subtracted below).
    async def probe_fired() -> bool:
        await emit("order", -1)
        await emit("payment", -1)
        return len(await api.flow_runs(theirs)) >= 1

    assert await _poll(probe_fired, 120, step=2.0), "the automation never ran"
    await asyncio.sleep(3)  # let the probe's extra pairs settle
    baseline = len(await api.flow_runs(theirs))

    sensor = start_sensor(doc, tmp_path, nats_url, bus.stream.name)
    try:
        await wait_for_consumer(bus, process=sensor)
        # "Then": the payments come after the sensor has taken every order (each dependency has
        # its own consumer, as in Argo, so without this wait the two streams may interleave).
        for ev in events[:20]:
            await bus.publish(ev)
        assert await _poll(lambda: _consumed(bus, "shop.order"), 90), sensor.tail()
        for ev in events[20:]:
            await bus.publish(ev)
        for kind in ("order", "payment"):
            for i in range(20):
                await emit(kind, i)

        async def ours_done() -> bool:
            return len(await api.flow_runs(ours)) >= 1

        assert await _poll(ours_done, 90), sensor.tail()
        # Neither side is expected to make more runs; give the automation's service time to
        # act on every event it received (a settling wait, not a timing assertion).
        await asyncio.sleep(10)
    finally:
        sensor.stop()
    our_runs = await api.flow_runs(ours)
    their_runs = len(await api.flow_runs(theirs)) - baseline
    print(f"\n20 orders then 20 payments: argo-events sensor {len(our_runs)} flow run(s) "
          f"(Argo semantics), Prefect compound trigger {their_runs} flow run(s)")
    assert len(our_runs) == 1 and our_runs[0]["idempotency_key"] in expected
    assert our_runs[0]["parameters"] == {"order_id": "A19", "payment": {"amount": 10}}
    assert their_runs >= 1


async def _consumed(bus: Any, subject_tail: str) -> bool:
    """True when the durable consumer of ``<stream>.<subject_tail>`` has acked everything."""
    for info in await bus.js.consumers_info(bus.stream.name):
        if (info.config.filter_subject or "").endswith("." + subject_tail):
            return bool(info.num_pending == 0 and info.num_ack_pending == 0 and info.delivered.stream_seq > 0)
    return False


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat()


async def _poll(check: Any, timeout: float, step: float = 0.5) -> bool:
    """Call the async ``check`` until true or ``timeout`` (a hang detector, not a timing assertion)."""
    import time

    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


pytestmark = pytest.mark.timeout(400)


async def test_refusals_are_final_and_an_unreachable_api_is_retried(api):
    """A deployment that does not exist, or parameters the deployment's schema refuses, fail at once
    (one line naming it); an API that does not answer is retried (the firing stays in the journal)."""
    from airflow_argo_events.core.actions.base import ActionContext
    from airflow_argo_events.core.actions.prefect import PrefectApiSettings, PrefectRunDeploymentAction
    from airflow_argo_events.core.sensor.engine import Engine
    from airflow_argo_events.core.spec.sensor import Sensor

    from .conftest import API_URL, _free_port

    flow = f"strict-{uuid.uuid4().hex[:8]}"
    await api.deployment(flow, "typed", enforce_parameter_schema=True, parameter_openapi_schema={
        "type": "object", "properties": {"order_id": {"type": "integer"}}, "required": ["order_id"]})

    def firing(deployment: str) -> Any:
        engine = Engine(Sensor.model_validate(prefect_sensor("refusals", deployment)))
        engine.process(shop_event("order", 1, "r-"))
        (f,) = engine.process(shop_event("payment", 1, "r-"))
        return f

    ctx = ActionContext(prefect_api=PrefectApiSettings(API_URL))
    action = PrefectRunDeploymentAction("process", ctx)
    try:
        missing = await action.execute(firing(f"{flow}/nope"))
        assert not missing.ok and not missing.retryable and f"no deployment '{flow}/nope'" in missing.detail
        refused = await action.execute(firing(f"{flow}/typed"))  # order_id "A1" is not an integer
        assert not refused.ok and not refused.retryable and refused.status == 409, refused
        action.ctx.prefect_api = PrefectApiSettings(f"http://127.0.0.1:{_free_port()}/api")
        away = await action.execute(firing(f"{flow}/typed"))
        assert not away.ok and away.retryable and "create flow run at http://127.0.0.1:" in away.detail
    finally:
        await ctx.close()
