"""The sftp event source against a real SFTP server (asyncssh) started in the test process."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime
from airflow_argo_events.core.sources.base import SourceContext
from airflow_argo_events.core.sources.sftp import SFTPSource
from airflow_argo_events.testing.plugin import unique_name

from .test_sources import Running, manifest

asyncssh = pytest.importorskip("asyncssh")

pytestmark = pytest.mark.timeout(90)

USER, PASSWORD = "argo", "s3cret-pw"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SFTPServer:
    """asyncssh's SFTP server on its own thread and loop, chrooted to ``root``.

    ``listings`` counts directory listings the server has finished sending, so a test can
    wait for a source's next poll instead of sleeping. ``stop()``/``start()`` is a server
    going away and coming back on the same port.
    """

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.listings: dict[int, int] = {}
        """Directory listings finished, per SFTP session."""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._conns: set[Any] = set()

    def start(self) -> SFTPServer:
        ready = threading.Event()
        server_self = self

        class Auth(asyncssh.SSHServer):
            def connection_made(self, conn: Any) -> None:
                server_self._conns.add(conn)

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                return (username, password) == (USER, PASSWORD)

        class Files(asyncssh.SFTPServer):
            def __init__(self, chan: Any) -> None:
                super().__init__(chan, chroot=str(server_self.root).encode())

            async def scandir(self, path: bytes):  # noqa: ANN201 - an async iterator of SFTPName
                async for name in super().scandir(path):
                    yield name
                with server_self._lock:
                    server_self.listings[id(self)] = server_self.listings.get(id(self), 0) + 1

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            authorized = asyncssh.import_authorized_keys(self.client_key.export_public_key().decode())
            self._server = loop.run_until_complete(asyncssh.listen(
                "127.0.0.1", self.port, server_host_keys=[self.host_key], server_factory=Auth,
                authorized_client_keys=authorized, sftp_factory=Files, allow_scp=False))
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=serve, name="sftp-server", daemon=True)
        self._thread.start()
        assert ready.wait(10)
        return self

    async def _shutdown(self) -> None:
        """Close the listener and every session, as a server process that stops would."""
        self._server.close()
        await self._server.wait_closed()
        conns, self._conns = self._conns, set()
        for conn in conns:
            conn.close()
        for conn in conns:
            await conn.wait_closed()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None

    async def next_listing(self, sessions: int = 1, timeout: float = 20) -> None:
        """Wait until ``sessions`` SFTP sessions have each finished a directory listing after now (a file
        made then is in none of the listings they hold)."""
        with self._lock:
            start = dict(self.listings)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                done = sum(1 for sid, n in self.listings.items() if n > start.get(sid, 0))
            if done >= sessions:
                return
            assert time.monotonic() < deadline, "no directory listing reached the server"
            await asyncio.sleep(0.02)


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory) -> SFTPServer:
    server = SFTPServer(tmp_path_factory.mktemp("sftp-root")).start()
    yield server
    server.stop()


@pytest.fixture
def remote_dir(sftp_server, monkeypatch) -> Path:
    """A fresh directory on the server (its path as SFTP clients see it: /<name>/), and the secrets."""
    name = unique_name("dir")
    path = sftp_server.root / name
    path.mkdir()
    monkeypatch.setenv("ARGO_EVENTS_SECRET_SFTP_ADDRESS", f"127.0.0.1:{sftp_server.port}")
    monkeypatch.setenv("ARGO_EVENTS_SECRET_SFTP_USERNAME", USER)
    monkeypatch.setenv("ARGO_EVENTS_SECRET_SFTP_PASSWORD", PASSWORD)
    return path


SECRETS = {"address": {"name": "sftp", "key": "address"}, "username": {"name": "sftp", "key": "username"},
           "password": {"name": "sftp", "key": "password"}}


def sftp_event(directory: Path, event_type: str = "CREATE", **extra: Any) -> dict[str, Any]:
    watch = {"directory": f"/{directory.name}/", **extra.pop("watch", {"pathRegexp": r"\.txt$"})}
    return {"eventType": event_type, "watchPathConfig": watch, "pollIntervalDuration": "50ms", **SECRETS, **extra}


async def names_until(r: Running, last: str, timeout: float = 30) -> list[tuple[str, int]]:
    """(name, op) of every event up to and including the one for ``last``."""
    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + timeout
    while not seen or seen[-1][0] != last:
        assert time.monotonic() < deadline, f"no event for {last}; saw {seen}"
        for ev in await r.events(1, timeout=1):
            seen.append((ev.data["name"], ev.data["op"]))
    return seen


async def test_created_changed_and_removed_files_as_argo_reports_them(bus, sftp_server, remote_dir):
    (remote_dir / "there-before.txt").write_text("old")
    es = manifest(unique_name("sftp"), {"sftp": {
        "created": sftp_event(remote_dir, metadata={"team": "data"}),
        "removed": sftp_event(remote_dir, "REMOVE", watch={"path": "a.txt"})}})
    async with Running(es, bus) as r:
        await sftp_server.next_listing(sessions=2)  # both events listed the directory
        (remote_dir / "a.txt").write_text("1")
        (remote_dir / "skipped.log").write_text("1")
        (ev,) = await r.events(1)
        assert (ev.source, ev.subject, ev.type) == (es.metadata.name, "created", "sftp")
        assert ev.data == {"name": "a.txt", "op": 1, "metadata": {"team": "data"}}
        (remote_dir / "a.txt").write_text("a longer body")  # a changed file is CREATE, as in Argo
        (again,) = await r.events(1)
        assert (again.subject, again.data["name"], again.data["op"]) == ("created", "a.txt", 1)
        (remote_dir / "a.txt").unlink()
        (gone,) = await r.events(1)
        assert (gone.subject, gone.data) == ("removed", {"name": "a.txt", "op": 4})


async def test_a_restart_loses_and_repeats_nothing(bus, sftp_server, remote_dir):
    es = manifest(unique_name("sftp"), {"sftp": {"ev": sftp_event(remote_dir)}})
    async with Running(es, bus) as r:
        await sftp_server.next_listing()
        (remote_dir / "a.txt").write_text("a")
        assert await names_until(r, "a.txt") == [("a.txt", 1)]
    (remote_dir / "while-down.txt").write_text("b")  # the source is stopped: Argo would never report it
    async with Running(es, bus) as r:
        await sftp_server.next_listing()
        (remote_dir / "after.txt").write_text("c")
        assert await names_until(r, "after.txt") == [("while-down.txt", 1), ("after.txt", 1)]


async def test_a_poll_redone_after_a_crash_has_the_same_event_ids(sftp_server, remote_dir):
    """Events handed to the bus, listing not yet stored (a crash): the next start reports the same ids."""
    es = manifest(unique_name("sftp"), {"sftp": {"ev": sftp_event(remote_dir)}})
    stored: dict[str, Any] = {}

    async def get(key: str) -> Any:
        return stored.get(key)

    async def put(key: str, value: Any) -> None:
        stored[key] = value

    async def first_event(source: SFTPSource) -> Any:
        gen = source.events()
        try:
            ev = await asyncio.wait_for(anext(gen), 30)
            ev.published.set_result(True)
            return ev
        finally:
            await gen.aclose()

    cfg = es.event("ev")
    gen = SFTPSource(cfg, SourceContext(state_get=get, state_put=put)).events()
    task = asyncio.ensure_future(anext(gen))
    await sftp_server.next_listing()
    (remote_dir / "x.txt").write_text("x")
    ev1 = await asyncio.wait_for(task, 30)
    ev1.published.set_result(True)
    await gen.aclose()  # the process dies here: the event is on the bus, the new listing is not stored
    ev2 = await first_event(SFTPSource(cfg, SourceContext(state_get=get, state_put=put)))
    assert ev1.payload == ev2.payload == {"name": "x.txt", "op": 1}
    assert ev1.id == ev2.id  # the bus stores it once (Nats-Msg-Id)


async def test_the_server_going_away_and_back(bus, sftp_server, remote_dir):
    es = manifest(unique_name("sftp"), {"sftp": {"ev": sftp_event(remote_dir)}})
    async with Running(es, bus) as r:
        await sftp_server.next_listing()
        sftp_server.stop()
        (remote_dir / "during-outage.txt").write_text("o")
        sftp_server.start()
        assert await names_until(r, "during-outage.txt") == [("during-outage.txt", 1)]


async def test_ssh_key_with_the_servers_host_key(bus, sftp_server, remote_dir, monkeypatch, caplog):
    key_and_host = (sftp_server.client_key.export_private_key().decode()
                    + sftp_server.host_key.export_public_key().decode())
    monkeypatch.setenv("ARGO_EVENTS_SECRET_SFTPKEY_KEY", key_and_host)
    spec = sftp_event(remote_dir, sshKeySecret={"name": "sftpkey", "key": "key"})
    del spec["password"]
    es = manifest(unique_name("sftp"), {"sftp": {"ev": spec}})
    async with Running(es, bus) as r:
        await sftp_server.next_listing()
        (remote_dir / "k.txt").write_text("k")
        assert await names_until(r, "k.txt") == [("k.txt", 1)]
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    monkeypatch.setenv("ARGO_EVENTS_SECRET_SFTPKEY_KEY", sftp_server.client_key.export_private_key().decode() + other)
    caplog.set_level("WARNING", "airflow_argo_events.sources")
    rt = EventSourceRuntime(es, None)
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    deadline = time.monotonic() + 20
    while "Host key is not trusted" not in caplog.text:
        assert time.monotonic() < deadline, caplog.text
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 20)


async def test_a_missing_secret_ends_the_run_with_one_line(bus, remote_dir, monkeypatch):
    from airflow_argo_events.core.exceptions import SpecError

    monkeypatch.delenv("ARGO_EVENTS_SECRET_SFTP_PASSWORD")
    rt = EventSourceRuntime(manifest(unique_name("sftp"), {"sftp": {"ev": sftp_event(remote_dir)}}), bus)
    with pytest.raises(SpecError, match=r"spec.sftp.ev.password: secret sftp/password not found") as err:
        await asyncio.wait_for(rt.run(), 30)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("change, message", [
    ({"eventType": "WRITE"}, "spec.sftp.ev.eventType: must be CREATE or REMOVE, got 'WRITE'"),
    ({"eventType": ""}, "spec.sftp.ev.eventType: is required"),
    ({"address": None}, "spec.sftp.ev.address: is required"),
    ({"password": None}, "spec.sftp.ev.password: password or sshKeySecret is required"),
    ({"pollIntervalDuration": "soon"}, "spec.sftp.ev.pollIntervalDuration"),
    ({"watchPathConfig": {"directory": "in", "path": "x"}}, "spec.sftp.ev.watchPathConfig.directory: must be an "
                                                             "absolute path"),
])
def test_bad_configuration_names_the_field(change, message, tmp_path):
    from airflow_argo_events.core.exceptions import SpecError

    spec = {k: v for k, v in {**sftp_event(tmp_path), **change}.items() if v is not None}
    with pytest.raises(SpecError) as err:
        manifest("bad", {"sftp": {"ev": spec}})
    assert message in str(err.value)


async def test_runs_under_the_event_source_trigger(sftp_server, remote_dir):
    from airflow_argo_events.triggers import EventSourceTrigger

    doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource", "metadata": {"name": unique_name("sftp")},
           "spec": {"sftp": {"ev": sftp_event(remote_dir)}}}
    gen = EventSourceTrigger(eventsource=doc, event_name="ev", nats_conn_id=None).run()
    try:
        first = asyncio.ensure_future(anext(gen))
        await sftp_server.next_listing()
        (remote_dir / "t.txt").write_text("t")
        event = await asyncio.wait_for(first, 40)
    finally:
        await gen.aclose()
    assert event.payload["data"] == {"name": "t.txt", "op": 1} and event.payload["type"] == "sftp"


def test_cli_eventsource_run_publishes_sftp_events(nats_url, sftp_server, remote_dir, tmp_path):
    from .test_kafka import cli_run_one

    def stimulus() -> None:
        asyncio.run(sftp_server.next_listing(timeout=60))
        (remote_dir / "cli.txt").write_text("c")

    event = cli_run_one(nats_url, tmp_path, unique_name("clisftp"), {"sftp": {"ev": sftp_event(remote_dir)}}, stimulus)
    assert event["data"] == {"name": "cli.txt", "op": 1}


async def test_a_listing_kept_for_another_directory_is_not_used(sftp_server, remote_dir):
    """The manifest now watches another directory under the same event name: a first start there."""
    stored: dict[str, Any] = {}

    async def get(key: str) -> Any:
        return stored.get(key)

    async def put(key: str, value: Any) -> None:
        stored[key] = value

    async def first_name(directory: Path, make: str) -> str:
        es = manifest("samename", {"sftp": {"ev": sftp_event(directory)}})
        gen = SFTPSource(es.event("ev"), SourceContext(state_get=get, state_put=put)).events()
        task = asyncio.ensure_future(anext(gen))
        try:
            await sftp_server.next_listing()
            (directory / make).write_text("n")
            ev = await asyncio.wait_for(task, 30)
            ev.published.set_result(True)
            return ev.payload["name"]
        finally:
            await gen.aclose()

    assert await first_name(remote_dir, "a.txt") == "a.txt"
    other = sftp_server.root / unique_name("dir")
    other.mkdir()
    (other / "already-there.txt").write_text("x")
    assert await first_name(other, "new.txt") == "new.txt"
