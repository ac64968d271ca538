"""A list of servers, as production gives one (three NATS nodes): ``argo-events --nats`` and the
Airflow ``nats`` connection reach an R3 stream through the nodes still up when one is dead,
where the dead node alone is refused."""

from __future__ import annotations

import asyncio
import sys

import pytest

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.events import new_event
from airflow_argo_events.core.exceptions import BusUnavailableError
from airflow_argo_events.testing.plugin import unique_name

pytestmark = pytest.mark.timeout(120)


async def cli_publish(nats: str, stream: str, event_id: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "airflow_argo_events.cli.main", "publish", "--source", "es", "--event", "e",
        "--id", event_id, "--nats", nats, "--stream", stream,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 90)
    return proc.returncode or 0, err.decode()


class Conn:
    """An Airflow Connection as the hook reads it: the cluster's nodes in ``extra.servers``."""

    conn_id, host, port, login, password = "nats_cluster", None, None, None, None

    def __init__(self, servers: object, stream: str) -> None:
        self.extra_dejson = {"servers": servers, "stream": stream}


async def test_a_server_list_reaches_the_cluster_when_a_node_is_dead(nats_cluster):
    from airflow_argo_events.hooks.nats import NatsHook

    stream = StreamSettings(name=unique_name("list"), replicas=3)
    dead = next(iter(nats_cluster.nodes))
    dead_url = nats_cluster.nodes[dead].url
    async with EventBus(NatsSettings.from_url(nats_cluster.url), stream):
        pass  # the R3 stream, made while all three nodes are up
    nats_cluster.kill(dead)
    try:
        await nats_cluster.stream_leader(stream.name)

        code, err = await cli_publish(dead_url, stream.name, "cli-alone")
        assert code != 0 and "cannot connect" in err, err
        code, err = await cli_publish(nats_cluster.url, stream.name, "cli-list")
        assert code == 0, err

        alone, _ = NatsHook.settings_from_connection(Conn([dead_url], stream.name))
        with pytest.raises(BusUnavailableError):
            async with EventBus(alone, stream, ensure=False):
                pass
        settings, hook_stream = NatsHook.settings_from_connection(Conn(nats_cluster.servers, stream.name))
        assert settings.servers == tuple(nats_cluster.servers)
        async with EventBus(settings, hook_stream) as bus:
            await bus.publish(new_event(source="es", subject="e", type="webhook", data={}, id="hook-list"))
            # read back by sequence: a new consumer's placement can wait for the dead peer
            got = [(await bus.js.get_msg(stream.name, seq)).headers["Nats-Msg-Id"] for seq in (1, 2)]
        assert sorted(got) == ["cli-list", "hook-list"]
    finally:
        await asyncio.to_thread(nats_cluster.respawn, dead)
        await nats_cluster.wait_stream_current(stream.name)
        async with EventBus(NatsSettings.from_url(nats_cluster.url), stream, ensure=False) as bus:
            await bus.js.delete_stream(stream.name)
