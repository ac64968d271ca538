"""``wait_for_events`` and ``publish_event`` inside real flow runs on a real Prefect server."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from prefect import flow, task

from airflow_argo_events.core.events import decode, new_event
from airflow_argo_events.prefect import publish_event, wait_for_events, wait_for_events_sync

from .test_prefect_action import _poll

DEPS = [{"name": "order", "eventSourceName": "shop", "eventName": "order"},
        {"name": "payment", "eventSourceName": "shop", "eventName": "payment",
         "filters": {"data": [{"path": "body.amount", "type": "number", "value": ["0"], "comparator": ">"}]}}]


async def _consumers(bus, n: int) -> bool:
    return len(await bus.js.consumers_info(bus.stream.name)) >= n


async def test_wait_for_events_in_a_flow_run_returns_the_firing(prefect_server, bus, nats_url):
    @flow
    async def ship() -> dict:
        return await wait_for_events(DEPS, "order && payment", timeout=120, nats=nats_url, stream=bus.stream.name)

    state_task = asyncio.create_task(ship(return_state=True))
    assert await _poll(lambda: _consumers(bus, 2), 60), "the wait never subscribed"
    await bus.publish(new_event(source="shop", subject="order", type="webhook", data={"body": {"id": "A7"}}, id="o7"))
    # a payment the filter rejects, then one it passes
    await bus.publish(new_event(source="shop", subject="payment", type="webhook", data={"body": {"amount": 0}},
                                id="p0"))
    await bus.publish(new_event(source="shop", subject="payment", type="webhook", data={"body": {"amount": 9}},
                                id="p7"))
    state = await asyncio.wait_for(state_task, 120)
    assert state.is_completed(), state
    firing = await state.result()
    assert {d: e["id"] for d, e in firing["events"].items()} == {"order": "o7", "payment": "p7"}
    assert firing["events"]["order"]["data"] == {"body": {"id": "A7"}}
    # the flow run is on the server, and the wait left no consumer or state behind
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        run = await client.read_flow_run(state.state_details.flow_run_id)
    assert run.state.is_completed()
    assert await bus.js.consumers_info(bus.stream.name) == []


def test_wait_for_events_sync_times_out_as_a_failed_task(prefect_server, nats_url, stream):
    @flow
    def waits() -> dict:
        return wait_for_events_sync(DEPS[:1], timeout=1, nats=nats_url, stream=stream.name)

    state = waits(return_state=True)
    assert state.is_failed()
    with pytest.raises(TimeoutError, match="no firing"):
        state.result()


async def test_publish_event_retry_publishes_once(prefect_server, bus, nats_url):
    attempts = []

    @task(retries=1, retry_delay_seconds=0)
    async def publish_then_fail() -> str:
        # publish_event's body inside a task whose first attempt fails after publishing:
        # the retry derives the same id (same flow run, same task run), so the bus drops it.
        event_id = await publish_event.fn("checkout", "order", {"n": 1}, nats=nats_url, stream=bus.stream.name)
        attempts.append(event_id)
        if len(attempts) == 1:
            raise RuntimeError("lost the connection after publishing")
        return event_id

    @flow
    async def checkout() -> list[str]:
        first = await publish_then_fail()
        second = await publish_event("checkout", "order", {"n": 2}, nats=nats_url, stream=bus.stream.name)
        return [first, second]

    first, second = await checkout()
    assert len(attempts) == 2 and attempts[0] == attempts[1] == first
    assert first != second
    info = await bus.js.stream_info(bus.stream.name)
    assert info.state.messages == 2, "the retry published a second copy"
    sub = await bus.js.pull_subscribe(f"{bus.stream.name}.checkout.order", stream=bus.stream.name)
    msgs = await sub.fetch(2, timeout=5)
    assert [decode(m.data).data for m in msgs] == [{"n": 1}, {"n": 2}]


def test_the_prefect_adapters_import_without_airflow():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'airflow' or name.startswith('airflow.'):\n"
        "            raise ImportError('imported ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import airflow_argo_events.prefect, airflow_argo_events.core.actions.executor\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_the_core_does_not_import_prefect():
    code = (
        "import sys, pkgutil, importlib\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'prefect' or name.startswith('prefect.'):\n"
        "            raise ImportError('core imported ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import airflow_argo_events.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'airflow_argo_events.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
