"""The stream's order survives messages lost in flight (core/runtime/order.py).

A message delivered but never acked (the process died, or the connection dropped while it
was on the wire) comes back only after ack_wait, behind newer ones. Argo pairs by "latest
wins", so taking the newer ones first would pair differently than the stream's order. The
"thief" below is a second client of the sensor's own durable consumer that takes a message
and never acks it: exactly what the server sees when a delivery was lost.
"""

from __future__ import annotations

import asyncio

import nats
import pytest

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.bus.consumer import durable_name
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name
from tests.support import running_sensor

pytestmark = pytest.mark.timeout(120)
ACK_WAIT = 2.0


def pair_sensor(name: str) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "shop", "eventName": "order"},
                         {"name": "b", "eventSourceName": "shop", "eventName": "pay"}],
        "triggers": [{"template": {"name": "both", "conditions": "a && b", "log": {}}}]}})


def ev(subject: str, id: str):
    return new_event(source="shop", subject=subject, type="webhook", data={}, id=id)


class Gated:
    """The action: records firings; the first one blocks until ``go`` is set, so with
    ``max_pending_firings=1`` the sensor stops fetching meanwhile (back-pressure)."""

    def __init__(self) -> None:
        self.firings: list[list[str]] = []
        self.go = asyncio.Event()

    async def __call__(self, firing) -> None:
        if not self.firings:
            await self.go.wait()
        self.firings.append(sorted(e.id for e in firing.events.values()))


async def until(cond, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not ((await r) if asyncio.iscoroutine(r := cond()) else r):
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def steal(url: str, stream: str, durable: str, subject: str) -> str:
    """Take one message from the sensor's consumer and never ack it (a delivery lost in flight)."""
    nc = await nats.connect(url)
    try:
        psub = await nc.jetstream().pull_subscribe(subject, durable=durable, stream=stream)
        (msg,) = await psub.fetch(1, timeout=5)
        return msg.header.get("Nats-Msg-Id", "") if msg.header else ""
    finally:
        await nc.close()


async def test_a_message_lost_across_a_reconnect_keeps_its_place(private_nats):
    server = private_nats()
    stream = StreamSettings(name=unique_name("order"), replicas=1)
    settings = NatsSettings.from_url(server.url)
    got = Gated()
    async with EventBus(settings, stream) as bus:
        rt = SensorRuntime(pair_sensor(unique_name("s")), bus, got, ack_wait=ACK_WAIT, idle_poll=0.3,
                           max_pending_firings=1)
        async with running_sensor(rt):
            await bus.publish(ev("order", "a0"))
            await bus.publish(ev("pay", "b0"))
            # the first firing blocks: the journal is full and the fetchers stop asking
            durable_a = durable_name(rt.bucket, "shop", "order")
            consumers = [durable_a, durable_name(rt.bucket, "shop", "pay")]

            async def idle() -> bool:
                infos = [await bus.js.consumer_info(stream.name, c) for c in consumers]
                return rt.pending() != {} and all(i.num_waiting == 0 and i.num_ack_pending == 0 for i in infos)

            await until(idle)
            await bus.publish(ev("order", "a1"))
            assert await steal(server.url, stream.name, durable_a, stream.subject("shop", "order")) == "a1"
            await bus.publish(ev("order", "a2"))
            await bus.publish(ev("pay", "b1"))
            server.restart()  # the sensor's connection drops and comes back
            got.go.set()
            await until(lambda: len(got.firings) >= 2)
            # a1 comes back after ack_wait; b2 after it must not pair with it (a2 && b1 consumed a2)
            await asyncio.sleep(ACK_WAIT + 1)
            await bus.publish(ev("pay", "b2"))
            await asyncio.sleep(1.5)
    # stream order a0 b0 | a1 a2 b1 | b2: latest wins pairs a2 with b1, and b2 waits alone
    assert got.firings == [["a0", "b0"], ["a2", "b1"]], got.firings
    assert rt._gate is not None and rt._gate.stats["held"] >= 2 and rt._gate.stats["gave_up"] == 0


async def test_a_message_left_by_a_dead_process_keeps_its_place(private_nats):
    server = private_nats()
    stream = StreamSettings(name=unique_name("order"), replicas=1)
    settings = NatsSettings.from_url(server.url)
    got = Gated()
    got.go.set()
    sensor = pair_sensor(unique_name("s"))
    async with EventBus(settings, stream) as bus:
        first = SensorRuntime(sensor, bus, got, ack_wait=ACK_WAIT)
        await first.start()  # creates the durable consumers, then "dies" before running
        await first.close()
        durable_a = durable_name(first.bucket, "shop", "order")
        await bus.publish(ev("order", "a1"))
        assert await steal(server.url, stream.name, durable_a, stream.subject("shop", "order")) == "a1"
        await bus.publish(ev("order", "a2"))
        await bus.publish(ev("pay", "b1"))

        async def a1_pending() -> bool:  # the server counts the lost delivery before the sensor looks
            info = await bus.js.consumer_info(stream.name, durable_a)
            return info.num_ack_pending == 1 and info.num_waiting == 0

        await until(a1_pending)
        rt = SensorRuntime(sensor, bus, got, ack_wait=ACK_WAIT, idle_poll=0.3)
        async with running_sensor(rt, quiet=True):
            await until(lambda: len(got.firings) >= 1)
            await asyncio.sleep(ACK_WAIT + 1)
            await bus.publish(ev("pay", "b2"))
            await asyncio.sleep(1.5)
    assert got.firings == [["a2", "b1"]], got.firings


async def test_the_order_gate_survives_an_unexpected_error(nats_settings, stream, monkeypatch):
    """The gate holds every fetched message while it is closed (it is, at start). An error
    nobody expected from the client while it looks at the consumers (here a RuntimeError
    from consumer info, twice) used to end its task silently: the sensor held everything
    and never fired again. Now it is logged and the gate goes on."""
    from airflow_argo_events.core.bus.consumer import Subscription

    failures = [RuntimeError("unexpected"), RuntimeError("unexpected again")]
    real_info = Subscription.info

    async def flaky_info(self):
        if failures:
            raise failures.pop(0)
        return await real_info(self)

    monkeypatch.setattr(Subscription, "info", flaky_info)
    got = Gated()
    got.go.set()
    async with EventBus(nats_settings, stream) as bus:
        rt = SensorRuntime(pair_sensor(unique_name("s")), bus, got, ack_wait=ACK_WAIT, idle_poll=0.3)
        async with running_sensor(rt):
            await bus.publish(ev("order", "o1"))
            await bus.publish(ev("pay", "p1"))
            await until(lambda: got.firings == [["o1", "p1"]])
            assert not failures
