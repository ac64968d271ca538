"""Which NATS the CLI talks to: --nats, then $ARGO_EVENTS_NATS_URL, then the embedded default."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from airflow_argo_events.core.bus.embedded import EmbeddedNats, server_info, usable_local_jetstream
from airflow_argo_events.core.bus.settings import ENV_URL, NatsSettings


def _state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "argo-events" / "nats"


@contextlib.contextmanager
def nats_target(url: str | None, quiet: bool = False) -> Iterator[NatsSettings]:
    """NATS settings for one CLI command; starts (and afterwards stops) an embedded server if needed.

    The embedded server keeps its store under ``$XDG_STATE_HOME/argo-events/nats`` so that
    events published by one command are still in the stream for the next.
    """
    if url:
        yield NatsSettings.from_url(url)  # named by its URL, credentials removed (from_url's label)
        return
    env = os.environ.get(ENV_URL)
    if env:
        yield NatsSettings.from_url(env)
        return
    if usable_local_jetstream():
        yield NatsSettings.from_url("nats://127.0.0.1:4222").with_label("local NATS 127.0.0.1:4222")
        return
    store = _state_dir()
    store.mkdir(parents=True, exist_ok=True)
    port = 4222 if server_info("127.0.0.1", 4222) is None and _port_free(4222) else 0
    server = EmbeddedNats.start(port=port, store_dir=str(store))
    if not quiet:
        print(f"[argo-events] started embedded nats-server at {server.url} (store {store})", file=sys.stderr)
    try:
        yield NatsSettings.from_url(server.url).with_label(f"embedded {server.url}")
    finally:
        server.stop()


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
