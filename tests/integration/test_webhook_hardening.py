"""The webhook EventSource against hostile and unlucky input (issue 11, findings 6-10).

Each test reproduces one way the old handler failed: bodies read partly, nesting that
killed the publisher, a retried request published twice, TLS settings ignored, 500s
with tracebacks for odd headers, connections held open by slow clients.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import io
import ipaddress
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import yaml

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings
from airflow_argo_events.core.bus.embedded import free_port
from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime
from airflow_argo_events.core.spec.loader import load_text
from airflow_argo_events.testing.plugin import unique_name

from ..support import wait_answering, webhook_health_urls

pytestmark = pytest.mark.timeout(90)

WEBHOOK_LOG = "airflow_argo_events.sources.webhook"


def manifest(name: str, webhook: dict):
    (es,) = load_text(yaml.safe_dump({"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource",
                                      "metadata": {"name": name}, "spec": {"webhook": webhook}}))
    return es


def endpoint(port: int, path: str = "/ex", **extra) -> dict:
    return {"port": str(port), "endpoint": path, "method": "POST", **extra}


class Running:
    """An EventSourceRuntime on ``bus`` plus a consumer of what it published."""

    def __init__(self, es, bus: EventBus, **kwargs):
        self.es, self.bus = es, bus
        self.rt = EventSourceRuntime(es, bus, **kwargs)
        self.stop = asyncio.Event()

    async def __aenter__(self) -> Running:
        self.sub = await self.bus.subscribe(unique_name("d"), self.es.metadata.name, "*", deliver="new")
        self.task = asyncio.create_task(self.rt.run(self.stop))
        # On a loaded machine the port is bound well after any fixed sleep (CI: connection
        # refused): wait until each webhook port answers.
        for url in webhook_health_urls(self.es):
            await wait_answering(url, task=self.task)
        return self

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 20)

    async def events(self, n: int, timeout: float = 10) -> list:
        out: list = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            for d in await self.sub.fetch(10, timeout=0.5):
                await d.ack()
                out.append(d.event)
        return out


async def raw_status(port: int, head: bytes, body: bytes = b"", timeout: float = 20) -> int:
    """Send bytes exactly as given (headers aiohttp's client would refuse) and return the status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        return int(line.split()[1])
    finally:
        writer.close()


def post_head(port: int, body: bytes, *headers: bytes) -> bytes:
    lines = [b"POST /ex HTTP/1.1", b"Host: 127.0.0.1:%d" % port, b"Content-Type: application/json",
             b"Content-Length: %d" % len(body), b"Connection: close", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def webhook_records(caplog, level=logging.WARNING) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith(WEBHOOK_LOG) and r.levelno >= level]


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


# ---------------------------------------------------------------- 6: deep nesting, the publisher, /health

@pytest.mark.parametrize("depth", [979, 100_000], ids=["979-deep", "100k-deep"])
async def test_deeply_nested_body_is_refused_with_one_line_and_the_source_keeps_publishing(bus, caplog, depth):
    port = free_port()
    es = manifest("deep", {"ex": endpoint(port)})
    async with Running(es, bus) as r, aiohttp.ClientSession() as http:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            async with http.post(f"http://127.0.0.1:{port}/ex", data=nested(depth),
                                 headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == 400
        lines = webhook_records(caplog)
        assert len(lines) == 1 and lines[0].exc_info is None, [x.getMessage() for x in lines]
        assert not [x for x in caplog.records if x.levelno >= logging.ERROR]
        async with http.post(f"http://127.0.0.1:{port}/ex", json={"after": 1},
                             timeout=aiohttp.ClientTimeout(total=15)) as resp:
            assert resp.status == 200
        async with http.get(f"http://127.0.0.1:{port}/health") as resp:
            assert resp.status == 200
        events = await r.events(1)
    assert [e.data["body"] for e in events] == [{"after": 1}]


class FailingOnceBus:
    """The real bus, except that the first publish raises an error no one planned for."""

    def __init__(self, bus: EventBus, error: BaseException) -> None:
        self._bus, self._error = bus, error

    def __getattr__(self, name):
        return getattr(self._bus, name)

    async def publish(self, event, timeout: float = 5.0):
        if self._error is not None:
            err, self._error = self._error, None
            raise err
        return await self._bus.publish(event, timeout)


async def test_an_unexpected_publish_error_is_answered_and_the_publisher_survives(bus):
    port = free_port()
    es = manifest("flaky", {"ex": endpoint(port)})
    running = Running(es, bus)
    running.rt.bus = FailingOnceBus(bus, RecursionError("maximum recursion depth exceeded"))
    async with running as r, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        async with http.post(f"http://127.0.0.1:{port}/ex", json={"n": 1}) as resp:
            assert resp.status == 500
        async with http.post(f"http://127.0.0.1:{port}/ex", json={"n": 2}) as resp:
            assert resp.status == 200
        async with http.get(f"http://127.0.0.1:{port}/health") as resp:
            assert resp.status == 200
        events = await r.events(1)
    assert [e.data["body"] for e in events] == [{"n": 2}]


async def test_a_publisher_task_that_dies_is_restarted(bus, caplog):
    port = free_port()
    es = manifest("dies", {"ex": endpoint(port)})
    running = Running(es, bus)
    original = running.rt._publish_loop
    calls = 0

    async def dies_first_time() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("publisher bug")
        await original()

    running.rt._publish_loop = dies_first_time
    async with running as r, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        async with http.post(f"http://127.0.0.1:{port}/ex", json={"n": 1}) as resp:
            assert resp.status == 200
        events = await r.events(1)
    assert calls >= 2
    assert [e.data["body"] for e in events] == [{"n": 1}]
    assert any("publisher" in x.getMessage() and x.levelno >= logging.ERROR for x in caplog.records)


async def test_health_is_503_while_events_cannot_be_published(private_nats, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_WEBHOOK_ACK_TIMEOUT", "1")
    server = private_nats()
    port = free_port()
    es = manifest("hl", {"ex": endpoint(port)})
    async with EventBus(NatsSettings.from_url(server.url), StreamSettings(replicas=1)) as bus:
        stop = asyncio.Event()
        rt = EventSourceRuntime(es, bus)
        task = asyncio.create_task(rt.run(stop))
        await wait_answering(f"http://127.0.0.1:{port}/health", task=task)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            async with http.get(f"http://127.0.0.1:{port}/health") as resp:
                assert resp.status == 200
            server.kill()
            async with http.post(f"http://127.0.0.1:{port}/ex", json={"n": 1}) as resp:
                assert resp.status == 503
                assert resp.headers.get("Retry-After")
            async with http.get(f"http://127.0.0.1:{port}/health") as resp:
                assert resp.status == 503
            server.restart()
            await wait_answering(f"http://127.0.0.1:{port}/health", status=200, task=task)
        stop.set()
        await asyncio.wait_for(task, 20)
    assert rt.count == 1


# ---------------------------------------------------------------- 7: whole bodies, size limit while streaming

def json_of_size(size: int) -> bytes:
    item = {"id": 0, "name": "x" * 90}
    per = len(json.dumps(item)) + 1
    body = json.dumps({"items": [{"id": i, "name": "x" * 90} for i in range(size // per)]}).encode()
    return body


async def test_large_valid_bodies_are_read_whole(bus):
    port = free_port()
    es = manifest("big", {"ex": endpoint(port)})
    sizes = [250_000, 300_000, 400_000, 600_000, 900_000]
    async with Running(es, bus) as r, aiohttp.ClientSession() as http:
        for size in sizes:
            body = json_of_size(size)
            for _ in range(3):
                async with http.post(f"http://127.0.0.1:{port}/ex", data=body,
                                     headers={"Content-Type": "application/json"}) as resp:
                    assert resp.status == 200, (size, await resp.text())
        events = await r.events(len(sizes) * 3, timeout=20)
    assert len(events) == len(sizes) * 3
    assert all(e.data["body"]["items"][-1]["id"] > 1000 for e in events)


async def test_signed_900kb_github_payload_verifies(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_GH_KEY", "k")
    port = free_port()
    es = manifest("gh", {"ex": endpoint(port, signature={"kind": "github", "secret": {"name": "gh", "key": "key"}})})
    body = json_of_size(900_000)
    sig = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    async with Running(es, bus) as r, aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.post(f"http://127.0.0.1:{port}/ex", data=body,
                                 headers={"Content-Type": "application/json", "X-Hub-Signature-256": sig}) as resp:
                assert resp.status == 200, await resp.text()
        assert len(await r.events(3, timeout=20)) == 3


async def test_50mb_chunked_upload_is_refused_with_413(bus):
    port = free_port()
    es = manifest("huge", {"ex": endpoint(port)})
    chunk = b"[" + b"1," * 32_767 + b"1]"  # about 64 KB, valid JSON on its own but not together

    async def fifty_mb() -> AsyncIterator[bytes]:
        for _ in range(50 * 1024 * 1024 // len(chunk)):
            yield chunk

    async with Running(es, bus), aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{port}/ex", data=fifty_mb(),
                             headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 413
            assert "chunked" in resp.request_info.headers.get("Transfer-Encoding", "")
        async with http.post(f"http://127.0.0.1:{port}/ex", json={"ok": 1}) as resp:
            assert resp.status == 200


# ---------------------------------------------------------------- 8: the sender's delivery id de-duplicates retries

async def test_client_retry_after_503_is_deduplicated_by_the_bus(private_nats, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_WEBHOOK_ACK_TIMEOUT", "1")
    server = private_nats()
    port = free_port()
    es = manifest("dd", {"ex": endpoint(port)})
    headers = {"X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958", "Content-Type": "application/json"}
    async with EventBus(NatsSettings.from_url(server.url), StreamSettings(replicas=1)) as bus:
        stop = asyncio.Event()
        rt = EventSourceRuntime(es, bus)
        task = asyncio.create_task(rt.run(stop))
        await wait_answering(f"http://127.0.0.1:{port}/health", status=200, task=task)
        server.kill()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            async with http.post(f"http://127.0.0.1:{port}/ex", data=b'{"n": 1}', headers=headers) as resp:
                assert resp.status == 503
            server.restart()
            for _ in range(200):  # the queued event is published once NATS is back
                if rt.count:
                    break
                await asyncio.sleep(0.1)
            assert rt.count == 1
            async with http.post(f"http://127.0.0.1:{port}/ex", data=b'{"n": 1}', headers=headers) as resp:
                assert resp.status == 200  # the client's retry
        info = await bus.js.stream_info(bus.stream.name)
        stop.set()
        await asyncio.wait_for(task, 20)
    assert info.state.messages == 1


async def test_delivery_ids_of_two_endpoints_never_collide(bus):
    port = free_port()
    es = manifest("two", {"a": endpoint(port, "/a"), "b": endpoint(port, "/b")})
    headers = {"X-Request-Id": "same-id"}
    async with Running(es, bus) as r, aiohttp.ClientSession() as http:
        for path in ("/a", "/b", "/a"):
            async with http.post(f"http://127.0.0.1:{port}{path}", json={"p": path}, headers=headers) as resp:
                assert resp.status == 200
        events = await r.events(3, timeout=3)
    assert sorted(e.subject for e in events) == ["a", "b"]
    assert len({e.id for e in events}) == 2


# ---------------------------------------------------------------- 9: TLS

def self_signed(tmp_path) -> tuple[str, str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    ca = tmp_path / "ca.pem"
    ca.write_text(cert_pem)
    return cert_pem, key_pem, str(ca)


TLS_SECRETS = {"serverCertSecret": {"name": "tls", "key": "crt"}, "serverKeySecret": {"name": "tls", "key": "key"}}


async def test_tls_is_served_when_server_cert_and_key_are_given(bus, monkeypatch, tmp_path):
    cert_pem, key_pem, ca = self_signed(tmp_path)
    secrets_dir = tmp_path / "secrets"
    (secrets_dir / "tls").mkdir(parents=True)
    (secrets_dir / "tls" / "crt").write_text(cert_pem)  # a mounted Kubernetes secret
    monkeypatch.setenv("ARGO_EVENTS_SECRETS_DIR", str(secrets_dir))
    monkeypatch.setenv("ARGO_EVENTS_SECRET_TLS_KEY", key_pem)
    port = free_port()
    es = manifest("tls", {"ex": endpoint(port, **TLS_SECRETS)})
    client_ctx = ssl.create_default_context(cafile=ca)
    async with Running(es, bus) as r, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        async with http.post(f"https://127.0.0.1:{port}/ex", json={"secure": True}, ssl=client_ctx) as resp:
            assert resp.status == 200
        with pytest.raises(aiohttp.ClientError):
            async with http.post(f"http://127.0.0.1:{port}/ex", json={"plain": True}) as resp:
                assert resp.status != 200
        events = await r.events(1)
    assert [e.data["body"] for e in events] == [{"secure": True}]


def test_tls_needs_both_cert_and_key():
    with pytest.raises(SpecError, match="serverKeySecret"):
        manifest("half", {"ex": endpoint(1234, serverCertSecret={"name": "tls", "key": "crt"})})


async def test_tls_secret_that_cannot_be_loaded_refuses_to_start(bus, monkeypatch, caplog):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_TLS_CRT", "not a certificate")
    monkeypatch.setenv("ARGO_EVENTS_SECRET_TLS_KEY", "not a key")
    es = manifest("badtls", {"ex": endpoint(free_port(), **TLS_SECRETS)})
    rt = EventSourceRuntime(es, bus)
    with pytest.raises(SpecError, match="serverCertSecret"):
        await asyncio.wait_for(rt.run(asyncio.Event()), 20)
    assert not [x for x in caplog.records if x.exc_info]
    monkeypatch.delenv("ARGO_EVENTS_SECRET_TLS_KEY")
    rt = EventSourceRuntime(es, bus)
    with pytest.raises(SpecError, match="tls/key not found"):
        await asyncio.wait_for(rt.run(asyncio.Event()), 20)


# ---------------------------------------------------------------- 10: the small ones

SIGNATURES = {
    "github": b"X-Hub-Signature-256: sha256=\xc3\xa9\xc3\xa9",
    "gitlab": b"X-Gitlab-Token: caf\xc3\xa9",
    "bitbucket": b"X-Hub-Signature: sha256=\xff\xfe",
    "stripe": b"Stripe-Signature: t=%d,v1=\xc3\xa9",  # a current t=, so the v1 comparison is reached
    "hmac": b"X-Signature: \xc3\xa9\xc3\xa9",
}


@pytest.mark.parametrize("kind", sorted(SIGNATURES))
async def test_non_ascii_signature_headers_get_401(bus, monkeypatch, caplog, kind):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_SIG_KEY", "k")
    port = free_port()
    es = manifest("na", {"ex": endpoint(port, signature={"kind": kind, "secret": {"name": "sig", "key": "key"}})})
    async with Running(es, bus):
        header = SIGNATURES[kind] % int(time.time()) if kind == "stripe" else SIGNATURES[kind]
        assert await raw_status(port, post_head(port, b"{}", header), b"{}") == 401
    assert not [x for x in caplog.records if x.exc_info or x.levelno >= logging.ERROR]


async def test_non_ascii_bearer_token_gets_401(bus, monkeypatch, caplog):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_WH_TOKEN", "s3cret")
    port = free_port()
    es = manifest("tok", {"ex": endpoint(port, authSecret={"name": "wh", "key": "token"})})
    async with Running(es, bus):
        for value in (b"Bearer s3cr\xc3\xa9t", b"Bearer \xff\xfe"):
            assert await raw_status(port, post_head(port, b"{}", b"Authorization: " + value), b"{}") == 401
    assert not [x for x in caplog.records if x.exc_info or x.levelno >= logging.ERROR]


@pytest.mark.parametrize("t", ["\u00b2", "1e9", "", "-5", "9" * 40, "12 "], ids=repr)
async def test_malformed_stripe_timestamp_gets_401(bus, monkeypatch, caplog, t):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_SIG_KEY", "k")
    port = free_port()
    es = manifest("st", {"ex": endpoint(port, signature={"kind": "stripe", "secret": {"name": "sig", "key": "key"}})})
    head = post_head(port, b"{}", b"Stripe-Signature: t=" + t.encode() + b",v1=00")
    async with Running(es, bus):
        assert await raw_status(port, head, b"{}") == 401
    assert not [x for x in caplog.records if x.exc_info or x.levelno >= logging.ERROR]


def stripe_v1(secret: bytes, ts: int, body: bytes) -> str:
    return hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()


async def test_stripe_secret_rotation_any_v1_may_match(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_SIG_KEY", "new")
    port = free_port()
    es = manifest("rot", {"ex": endpoint(port, signature={"kind": "stripe", "secret": {"name": "sig", "key": "key"}})})
    body = b'{"id": "evt_1", "object": "event"}'
    ts = int(time.time())
    async with Running(es, bus) as r, aiohttp.ClientSession() as http:
        for order in ((b"new", b"old"), (b"old", b"new")):
            header = f"t={ts}," + ",".join(f"v1={stripe_v1(s, ts, body)}" for s in order)
            async with http.post(f"http://127.0.0.1:{port}/ex", data=body,
                                 headers={"Stripe-Signature": header, "Content-Type": "application/json"}) as resp:
                assert resp.status == 200, order
        header = f"t={ts},v1={stripe_v1(b'old', ts, body)},v0={stripe_v1(b'new', ts, body)}"
        async with http.post(f"http://127.0.0.1:{port}/ex", data=body,
                             headers={"Stripe-Signature": header}) as resp:
            assert resp.status == 401
        assert len(await r.events(2, timeout=3)) == 1  # both carried Stripe's event id: one event


@pytest.mark.parametrize("body", [b'{"x": NaN}', b'{"x": Infinity}', b"[-Infinity]"], ids=["NaN", "Inf", "-Inf"])
async def test_nan_and_infinity_are_refused(bus, body):
    port = free_port()
    es = manifest("nan", {"ex": endpoint(port)})
    async with Running(es, bus), aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{port}/ex", data=body,
                             headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 400


async def test_slow_header_connections_are_closed(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_WEBHOOK_HEADER_TIMEOUT", "1")
    port = free_port()
    es = manifest("slow", {"ex": endpoint(port)})
    async with Running(es, bus):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /ex HTTP/1.1\r\nHost: x\r\n")
        await writer.drain()

        async def trickle() -> None:
            while True:  # a header line now and then: never a complete request
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
                await asyncio.sleep(0.5)

        trickler = asyncio.create_task(trickle())
        try:
            closed = await asyncio.wait_for(reader.read(), 15)  # EOF (or an error reply) when the server gives up
        finally:
            trickler.cancel()
            writer.close()
        assert closed == b"" or closed.startswith(b"HTTP/1.1 408")


async def test_slow_body_is_cut_after_the_read_timeout(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_WEBHOOK_READ_TIMEOUT", "1")
    port = free_port()
    es = manifest("slowbody", {"ex": endpoint(port)})
    async with Running(es, bus):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post_head(port, b"x" * 100) + b"{")
        await writer.drain()
        try:
            line = await asyncio.wait_for(reader.readline(), 15)
        finally:
            writer.close()
        assert line.startswith(b"HTTP/1.1 408")


def test_default_timeouts_are_sane():
    from airflow_argo_events.core.sources.webhook import ServerLimits

    limits = ServerLimits.from_env()
    assert 0 < limits.header_timeout <= 30 and 0 < limits.read_timeout <= 120
    assert 0 < limits.queue_timeout <= 30 and 0 < limits.ack_timeout <= 60


class StuckBus:
    """A bus whose publish never returns (NATS stalled without an error)."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    def __getattr__(self, name):
        return getattr(self._bus, name)

    async def publish(self, event, timeout: float = 5.0):
        await asyncio.Event().wait()


async def test_full_queue_answers_503_with_retry_after(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_WEBHOOK_QUEUE_TIMEOUT", "0.5")
    monkeypatch.setenv("ARGO_EVENTS_WEBHOOK_QUEUE_SIZE", "1")
    port = free_port()
    es = manifest("full", {"ex": endpoint(port)})
    running = Running(es, bus, buffer=1)
    running.rt.bus = StuckBus(bus)
    async with running, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        # one event with the publisher, one in the runtime's queue, one held by the pump,
        # one in the webhook's queue: the fifth finds no room.
        waiting = [asyncio.ensure_future(http.post(f"http://127.0.0.1:{port}/ex", json={"n": i})) for i in range(4)]
        await asyncio.sleep(1.0)
        async with http.post(f"http://127.0.0.1:{port}/ex", json={"n": 5}) as resp:
            assert resp.status == 503
            assert resp.headers.get("Retry-After")
        for w in waiting:
            w.cancel()


# ---------------------------------------------------------------- the parts on their own

class Trickle:
    """A request body arriving in 64 KB pieces; counts what the reader took."""

    def __init__(self, total: int) -> None:
        self.left, self.taken = total, 0

    async def readany(self) -> bytes:
        n = min(65_536, self.left)
        self.left -= n
        self.taken += n
        return b"x" * n


async def test_read_body_stops_at_the_limit_without_buffering_the_rest():
    from airflow_argo_events.core.sources.webhook import BodyTooLarge, read_body

    fifty_mb = Trickle(50 * 1024 * 1024)
    with pytest.raises(BodyTooLarge):
        await read_body(fifty_mb, 1_048_576)
    assert fifty_mb.taken <= 1_048_576 + 65_536
    assert await read_body(Trickle(900_000), 1_048_576) == b"x" * 900_000


@pytest.mark.parametrize("headers, body, expected", [
    ({"X-GitHub-Delivery": "gh", "X-Request-Id": "rid"}, None, "gh"),
    ({"X-Gitlab-Event-UUID": "gl"}, None, "gl"),
    ({"X-Request-UUID": "bb", "Idempotency-Key": "ik"}, None, "bb"),
    ({"X-Request-Id": "rid"}, {"id": "evt_1", "object": "event"}, "evt_1"),
    ({"Idempotency-Key": "ik", "X-Request-Id": "rid"}, {"id": "not-stripe"}, "ik"),
    ({"X-Request-Id": "rid"}, [1], "rid"),
    ({"X-Gitlab-Webhook-UUID": "per-hook-not-per-delivery"}, None, None),
    ({"X-Request-Id": "caf\u00e9"}, None, None),
    ({"X-Request-Id": "x" * 201}, None, None),
    ({}, {"id": 5, "object": "event"}, None),
], ids=["github", "gitlab", "bitbucket", "stripe", "idempotency-key", "request-id", "hook-uuid-ignored",
        "non-ascii-ignored", "too-long-ignored", "none"])
def test_delivery_id(headers, body, expected):
    from multidict import CIMultiDict

    from airflow_argo_events.core.sources.webhook import delivery_id

    assert delivery_id(CIMultiDict(headers), body) == expected


def test_event_ids_are_deterministic_and_namespaced():
    from airflow_argo_events.core.sources.webhook import event_id

    ids = {event_id(es, name, "d-1") for es in ("a", "b") for name in ("x", "y")}
    assert len(ids) == 4
    assert event_id("a", "x", "d-1") == event_id("a", "x", "d-1")
    assert len(event_id("a", "x", "d-1")) == 32
    assert event_id("a\nx", "y", "d") != event_id("a", "x\ny", "d")


def test_limits_from_the_environment_are_checked():
    from airflow_argo_events.core.sources.webhook import ServerLimits

    assert ServerLimits.from_env({"ARGO_EVENTS_WEBHOOK_ACK_TIMEOUT": "2.5"}).ack_timeout == 2.5
    with pytest.raises(SpecError, match="ARGO_EVENTS_WEBHOOK_READ_TIMEOUT"):
        ServerLimits.from_env({"ARGO_EVENTS_WEBHOOK_READ_TIMEOUT": "soon"})
    with pytest.raises(SpecError, match="ARGO_EVENTS_WEBHOOK_QUEUE_SIZE"):
        ServerLimits.from_env({"ARGO_EVENTS_WEBHOOK_QUEUE_SIZE": "0"})


async def test_event_larger_than_the_bus_allows_gets_413_and_publishing_goes_on(bus, caplog):
    port = free_port()
    es = manifest("wide", {"ex": endpoint(port, maxPayloadSize=4 * 1024 * 1024)})
    max_payload = bus.nc.max_payload
    async with Running(es, bus) as r, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        async with http.post(f"http://127.0.0.1:{port}/ex", data=io.BytesIO(json_of_size(max_payload + 10_000)),
                             headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 413, await resp.text()
        async with http.post(f"http://127.0.0.1:{port}/ex", json={"small": 1}) as resp:
            assert resp.status == 200
        events = await r.events(1)
    assert [e.data["body"] for e in events] == [{"small": 1}]
    assert r.rt.failed == 1
    assert not [x for x in caplog.records if x.exc_info]


async def test_authorization_is_masked_in_the_payload(bus):
    port = free_port()
    es = manifest("mask", {"ex": endpoint(port)})
    async with Running(es, bus) as r, aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{port}/ex", json={}, headers={"Authorization": "Bearer s3cret"}) as resp:
            assert resp.status == 200
        (ev,) = await r.events(1)
    assert ev.data["header"]["Authorization"] == ["*** Masked Auth Secret ***"]
    assert "s3cret" not in json.dumps(ev.data)


async def test_without_a_bus_a_retried_delivery_is_emitted_once():
    port = free_port()
    es = manifest("nobus", {"ex": endpoint(port)})
    emitted = []

    async def on_event(event) -> None:
        emitted.append(event)

    stop = asyncio.Event()
    rt = EventSourceRuntime(es, None, on_event=on_event)
    task = asyncio.create_task(rt.run(stop))
    await wait_answering(f"http://127.0.0.1:{port}/health", task=task)
    async with aiohttp.ClientSession() as http:
        for body in ({"try": 1}, {"try": 2}, {"other": 1}):
            delivery = "d-2" if "other" in body else "d-1"
            async with http.post(f"http://127.0.0.1:{port}/ex", json=body,
                                 headers={"X-GitHub-Delivery": delivery}) as resp:
                assert resp.status == 200
    stop.set()
    await asyncio.wait_for(task, 20)
    assert [e.data["body"] for e in emitted] == [{"try": 1}, {"other": 1}]


def test_endpoints_sharing_a_port_must_agree_on_tls():
    with pytest.raises(SpecError, match="port 1234 is shared"):
        manifest("mixed", {"a": endpoint(1234, "/a", **TLS_SECRETS), "b": endpoint(1234, "/b")})


async def test_a_missing_auth_secret_is_one_error_line_not_a_traceback(bus, caplog):
    port = free_port()
    es = manifest("nosecret", {"ex": endpoint(port, authSecret={"name": "absent", "key": "token"})})
    async with Running(es, bus), aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{port}/ex", json={}, headers={"Authorization": "Bearer x"}) as resp:
            assert resp.status == 500
    errors = [x for x in caplog.records if x.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    assert "ARGO_EVENTS_SECRET_ABSENT_TOKEN" in errors[0].getMessage()
