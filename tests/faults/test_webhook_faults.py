"""Fault suite, webhook EventSource: NATS stalls or dies while a client streams requests.

The webhook source publishes to a private nats-server (never the shared one), which is
SIGSTOPped for 15 s, or SIGKILLed and restarted, while a client sends N requests and
retries each on 503 or a broken connection, as GitHub/Stripe-style senders do. Every
request carries a delivery id, so the bus drops the copies a retry makes. Afterwards the
stream must hold each request exactly once: 0 lost, 0 duplicate. About 30 s each.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter

import aiohttp
import pytest
import yaml

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.bus.embedded import EmbeddedNats, free_port
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime
from airflow_argo_events.core.spec.loader import load_text

from ..support import wait_answering

pytestmark = pytest.mark.timeout(120)

N = 80
DELIVERY_HEADERS = ("X-GitHub-Delivery", "Idempotency-Key", "X-Request-Id")


def webhook(port: int):
    (es,) = load_text(yaml.safe_dump({"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource",
                                      "metadata": {"name": "wf"}, "spec": {"webhook": {"ex": {
                                          "port": str(port), "endpoint": "/ex", "method": "POST"}}}}))
    return es


async def send_until_stored(http: aiohttp.ClientSession, url: str, i: int, deadline: float) -> int:
    """POST request ``i`` until it gets 200; returns how many attempts it took."""
    headers = {DELIVERY_HEADERS[i % len(DELIVERY_HEADERS)]: f"delivery-{i}"}
    attempts = 0
    while time.monotonic() < deadline:
        attempts += 1
        try:
            async with http.post(url, json={"i": i}, headers=headers) as resp:
                if resp.status == 200:
                    return attempts
                assert resp.status == 503, (resp.status, await resp.text())
        except (aiohttp.ClientError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(0.5)
    raise AssertionError(f"request {i} never stored after {attempts} attempts")


async def stream_contents(server: EmbeddedNats) -> Counter[int]:
    """How many times each request is on the stream."""
    seen: Counter[int] = Counter()
    async with EventBus(NatsSettings.from_url(server.url), StreamSettings(replicas=1)) as bus:
        sub = await bus.subscribe("fault-count", "wf", "ex", deliver="all")
        while True:
            batch = await sub.fetch(100, timeout=1.0)
            if not batch:
                return seen
            for d in batch:
                seen[d.event.data["body"]["i"]] += 1
                await d.ack()


async def run_fault(server: EmbeddedNats, fault, monkeypatch) -> tuple[Counter[int], list[int], int]:
    monkeypatch.setenv("ARGO_EVENTS_WEBHOOK_ACK_TIMEOUT", "3")  # callers see 503s (and retry) during the fault
    port = free_port()
    url = f"http://127.0.0.1:{port}/ex"
    health: list[int] = []
    async with EventBus(NatsSettings.from_url(server.url), StreamSettings(replicas=1)) as bus:
        stop = asyncio.Event()
        rt = EventSourceRuntime(webhook(port), bus)
        task = asyncio.create_task(rt.run(stop))
        await wait_answering(f"http://127.0.0.1:{port}/health", status=200, task=task)
        deadline = time.monotonic() + 80
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:

            async def watch_health() -> None:
                while True:
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/health") as resp:
                            health.append(resp.status)
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        health.append(0)
                    await asyncio.sleep(0.5)

            watcher = asyncio.create_task(watch_health())
            clients = []
            faulty = asyncio.create_task(fault())
            for i in range(N):  # a steady stream over ~16 s, the fault in its middle
                clients.append(asyncio.create_task(send_until_stored(http, url, i, deadline)))
                await asyncio.sleep(0.2)
            attempts = await asyncio.gather(*clients)
            await faulty
            async with http.get(f"http://127.0.0.1:{port}/health") as resp:
                final_health = resp.status
            watcher.cancel()
        stop.set()
        await asyncio.wait_for(task, 30)
    assert final_health == 200
    return await stream_contents(server), attempts, health.count(503)


def report(seen: Counter[int]) -> tuple[list[int], list[int]]:
    lost = [i for i in range(N) if seen[i] == 0]
    duplicated = [i for i in range(N) if seen[i] > 1]
    return lost, duplicated


async def test_nats_sigstopped_for_15s_during_a_stream_of_requests(private_nats, monkeypatch):
    server = private_nats()

    async def stall() -> None:
        await asyncio.sleep(2.0)
        assert server.process is not None
        os.kill(server.process.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(15.0)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)

    seen, attempts, unhealthy = await run_fault(server, stall, monkeypatch)
    lost, duplicated = report(seen)
    assert (lost, duplicated) == ([], []), f"lost {lost}, duplicated {duplicated}"
    assert sum(seen.values()) == N
    assert max(attempts) > 1, "the stall should have made some callers retry"
    assert unhealthy, "/health should say 503 while NATS is stalled"


async def test_nats_sigkilled_and_restarted_during_a_stream_of_requests(private_nats, monkeypatch):
    server = private_nats()

    async def crash() -> None:
        await asyncio.sleep(2.0)
        server.kill()
        await asyncio.sleep(5.0)
        await asyncio.to_thread(server.restart)

    seen, attempts, unhealthy = await run_fault(server, crash, monkeypatch)
    lost, duplicated = report(seen)
    assert (lost, duplicated) == ([], []), f"lost {lost}, duplicated {duplicated}"
    assert sum(seen.values()) == N
    assert max(attempts) > 1, "the crash should have made some callers retry"
    assert unhealthy, "/health should say 503 while NATS is away"
