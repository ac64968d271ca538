"""One real Airflow for the whole e2e session (every e2e module shares it; never start a second one).

Besides the shared NATS (the ``nats_default`` connection), Airflow gets a ``nats_private``
connection to a nats-server of this session's own, which the fault tests stall (SIGSTOP)
and kill: the shared server on 4222 is never touched. A ``nats_lossy`` connection reaches
that same server through a proxy in this process (tests/nats_proxy.py) that loses the
replies of KV writes once a test arms it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_argo_events.cli.local_airflow import AirflowInstance, fresh_postgres_database
from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.bus.embedded import EmbeddedNats, free_port
from airflow_argo_events.testing.plugin import unique_name
from tests.nats_proxy import NatsProxy, running_proxy

DAGS = Path(__file__).parent / "dags"
WATCHERS = 7
"""AssetWatchers in dags/: pair, burst, plain, api_down, stall, lossy, webhook."""
LOST_REPLY_RATE = 0.2
"""The share of KV write replies (puts, deletes) the ``nats_lossy`` proxy loses while armed."""
WEBHOOK_TOKEN = "e2e-token-2b7f0c19-never-logged"
"""The Airflow Variable ``e2e_webhook`` = ``{"token": ...}``: the webhook watcher's authSecret."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Tests that start an Airflow of their own (the demo) run before the shared one starts, so two
    never run at once; and every test of the shared Airflow goes to one xdist worker (with
    ``--dist loadgroup``), which starts it once.

    First among the hooks: xdist's turns the ``xdist_group`` mark into the node id's group in
    its own ``pytest_collection_modifyitems``. Without ``tryfirst``, when this file is an
    initial conftest (``pytest -n 2 tests/e2e``), xdist's ran before it, saw no mark, and each
    worker started an Airflow of its own."""
    for item in items:
        if "airflow" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("airflow-e2e"))
    items.sort(key=lambda item: "airflow" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def stream_name():
    return unique_name("e2e")


@pytest.fixture(scope="session")
def private_nats_server(tmp_path_factory):
    """A nats-server of the session's own, for faults; its store survives kill and restart."""
    server = EmbeddedNats.start(store_dir=str(tmp_path_factory.mktemp("private-nats")))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def lost_reply_proxy(private_nats_server) -> Iterator[NatsProxy]:
    """The ``nats_lossy`` connection's proxy to the private server, for the whole session, in a
    thread of this process; it loses nothing until a test sets ``armed`` (and resets it).

    The seed alone decides which KV write replies are lost once armed, by their order: with
    this one, the 4th, 11th, 12th, 16th, 17th, ... (about one in five)."""
    with running_proxy(private_nats_server.url, rates={"kv": LOST_REPLY_RATE}, seed=20240611) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def airflow(tmp_path_factory, nats_url, stream_name, private_nats_server, lost_reply_proxy):
    pg = fresh_postgres_database()
    inst = AirflowInstance(tmp_path_factory.mktemp("airflow-home"), DAGS, nats_url, stream_name,
                           postgres=pg[0] if pg else None)
    inst.env["AIRFLOW_CONN_NATS_PRIVATE"] = f"{private_nats_server.url}?stream={stream_name}"
    inst.env["AIRFLOW_CONN_NATS_LOSSY"] = f"{lost_reply_proxy.url}?stream={stream_name}"
    inst.env["E2E_WEBHOOK_PORT"] = str(free_port())
    inst.variables["e2e_webhook"] = json.dumps({"token": WEBHOOK_TOKEN})  # in the metadata DB, not the env
    print(f"\nAirflow metadata DB: {'PostgreSQL' if pg else 'SQLite'}")
    t0 = time.monotonic()
    inst.start()
    out = inst.cli("dags", "reserialize")
    assert out.returncode == 0, out.stderr[-2000:]
    errors = inst.cli("dags", "list-import-errors", "-o", "plain")
    assert "e2e_" not in errors.stdout, errors.stdout
    inst.wait_for(lambda: inst.watchers_ready(WATCHERS), timeout=120, what="watchers running in the triggerer")
    print(f"\nAirflow ready with watchers in {time.monotonic() - t0:.1f}s")
    time.sleep(2)  # the SensorTriggers create their durable consumers
    yield inst
    inst.stop()
    if pg:
        pg[1]()
    from airflow_argo_events.testing.plugin import delete_streams

    async def clean() -> None:
        async with EventBus(NatsSettings.from_url(nats_url), StreamSettings(name=stream_name), ensure=False) as bus:
            await delete_streams(bus, lambda name: stream_name in name)

    asyncio.run(clean())
