"""The fault harness itself: a stalled, killed and respawned private server, and the cluster's
view of a stream's leader. If these broke, the fault tests would test nothing."""

from __future__ import annotations

import asyncio

import pytest

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.bus.embedded import server_info
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.exceptions import EventBusError
from airflow_argo_events.testing.plugin import unique_name


def _event(i: int):
    return new_event(source="s", subject="e", type="t", data={"i": i}, id=f"h{i}")


async def test_paused_server_answers_nothing_until_resumed_and_respawn_keeps_the_store(private_nats):
    server = private_nats()
    async with EventBus(NatsSettings.from_url(server.url), StreamSettings(name="h", replicas=1)) as bus:
        await bus.publish(_event(1), timeout=2)
        server.pause()
        try:
            with pytest.raises(EventBusError):
                await bus.publish(_event(2), timeout=0.5)
        finally:
            server.resume()
        assert (await bus.publish(_event(2), timeout=5)).seq == 2
        server.kill()
        assert server_info("127.0.0.1", server.port) is None
        await asyncio.to_thread(server.respawn)
        for _ in range(100):  # the client reconnects on its own
            try:
                result = await bus.publish(_event(2), timeout=1)
                break
            except EventBusError:
                await asyncio.sleep(0.1)
        assert result.duplicate, "the respawned server kept its store and its de-duplication window"


async def test_cluster_reports_and_moves_a_stream_leader(nats_cluster):
    """(Killing the leader is the R3 fault test's job; an election takes seconds.)"""
    name = unique_name("h")
    settings = NatsSettings.from_url(nats_cluster.url, name="harness")
    async with EventBus(settings, StreamSettings(name=name, replicas=3)) as bus:
        info = await nats_cluster.stream_info(name)
        assert info["config"]["num_replicas"] == 3
        leader = await nats_cluster.stream_leader(name)
        other = await nats_cluster.move_stream_leader(name, lambda n: n != leader)
        assert other != leader and other in nats_cluster.nodes
        assert (await nats_cluster.stream_info(name))["cluster"]["leader"] == other
        await nats_cluster.wait_stream_current(name)
        await bus.js.delete_stream(name)
