"""The lost-reply proxy (tests/nats_proxy.py) itself: if it parsed the protocol wrong or lost the
wrong frames, the e2e test that counts DAG runs through it would prove nothing.

The parser is checked on tables of both directions' frames and on any cut of a stream into
TCP reads (hypothesis); the proxy against a real nats-server: a KV put whose reply it
drops times out in the client while the server stored the value, headers (``HMSG``) pass
intact or are dropped like any reply, a clustered server's ``connect_urls`` never reach
the client, a TLS-only server is refused, and a restarted server is reached again.
"""

from __future__ import annotations

import asyncio
import json

import nats
import nats.errors
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_argo_events.testing.plugin import unique_name
from tests.nats_proxy import FrameParser, NatsProxy, ProtocolError, kind_of, running_proxy, without_connect_urls

pytestmark = pytest.mark.timeout(60)

INFO = {"server_id": "N1", "version": "2.10.0", "max_payload": 1048576, "headers": True,
        "connect_urls": ["10.1.2.3:4222", "10.1.2.4:4222"]}
HDR = b"NATS/1.0\r\nNats-Msg-Id: a\r\nKV-Operation: DEL\r\n\r\n"

# (bytes on the wire, op, subject, reply, headers, payload)
SERVER_FRAMES = [
    (b"INFO " + json.dumps(INFO).encode() + b"\r\n", "INFO", b"", b"", None, b""),
    (b"MSG _INBOX.a.1 7 2\r\nhi\r\n", "MSG", b"_INBOX.a.1", b"", None, b"hi"),
    (b"MSG events.x 3 _INBOX.r.9 4\r\n\r\n\r\n\r\n", "MSG", b"events.x", b"_INBOX.r.9", None, b"\r\n\r\n"),
    (b"MSG empty 1 0\r\n\r\n", "MSG", b"empty", b"", None, b""),
    (b"msg\tlower\t2  5\r\nabcde\r\n", "MSG", b"lower", b"", None, b"abcde"),
    (b"HMSG _INBOX.a.2 7 " + str(len(HDR)).encode() + b" " + str(len(HDR) + 3).encode() + b"\r\n" + HDR + b"xyz\r\n",
     "HMSG", b"_INBOX.a.2", b"", HDR, b"xyz"),
    (b"HMSG $JS.ACK.s.c.1.2.3.4.0 9 $JS.FC.x 12 12\r\nNATS/1.0\r\n\r\n\r\n", "HMSG", b"$JS.ACK.s.c.1.2.3.4.0",
     b"$JS.FC.x", b"NATS/1.0\r\n\r\n", b""),
    (b"PING\r\n", "PING", b"", b"", None, b""),
    (b"PONG\r\n", "PONG", b"", b"", None, b""),
    (b"+OK\r\n", "+OK", b"", b"", None, b""),
    (b"-ERR 'Unknown Protocol Operation'\r\n", "-ERR", b"", b"", None, b""),
]
CLIENT_FRAMES = [
    (b'CONNECT {"verbose":false,"headers":true}\r\n', "CONNECT", b"", b"", None, b""),
    (b"SUB _INBOX.a.* 7\r\n", "SUB", b"", b"", None, b""),
    (b"PUB $KV.b.k _INBOX.a.1 2\r\n{}\r\n", "PUB", b"$KV.b.k", b"_INBOX.a.1", None, b"{}"),
    (b"PUB plain 0\r\n\r\n", "PUB", b"plain", b"", None, b""),
    (b"HPUB $KV.b.j.x _INBOX.a.2 " + str(len(HDR)).encode() + b" " + str(len(HDR)).encode() + b"\r\n" + HDR + b"\r\n",
     "HPUB", b"$KV.b.j.x", b"_INBOX.a.2", HDR, b""),
    (b"HPUB notify 12 14\r\nNATS/1.0\r\n\r\nok\r\n", "HPUB", b"notify", b"", b"NATS/1.0\r\n\r\n", b"ok"),
    (b"UNSUB 7 1\r\n", "UNSUB", b"", b"", None, b""),
    (b"PING\r\n", "PING", b"", b"", None, b""),
]


def _check(frames, table) -> None:
    assert [f.op for f in frames] == [row[1] for row in table]
    for frame, (raw, _, subject, reply, headers, payload) in zip(frames, table, strict=True):
        assert (frame.raw, frame.subject, frame.reply, frame.headers, frame.payload) == (
            raw, subject, reply, headers, payload)


@pytest.mark.parametrize("table", [SERVER_FRAMES, CLIENT_FRAMES], ids=["server-to-client", "client-to-server"])
@pytest.mark.parametrize("cut", [0, 1, 2, 3, 7], ids=lambda c: f"reads-of-{c}" if c else "one-read")
def test_frames_parse_the_same_however_the_reads_cut_them(table, cut) -> None:
    stream = b"".join(row[0] for row in table)
    parser = FrameParser()
    step = cut or len(stream)
    frames = [f for i in range(0, len(stream), step) for f in parser.feed(stream[i:i + step])]
    _check(frames, table)
    assert parser.buffered == 0


_tokens = st.text("abcxyz019_-$", min_size=1, max_size=6).map(str.encode)
_subjects = st.lists(_tokens, min_size=1, max_size=4).map(b".".join)
_headers = st.lists(st.tuples(st.text("ABCxyz-", min_size=1, max_size=8), st.text("ab c:1", max_size=12)),
                    max_size=3).map(lambda kv: b"NATS/1.0\r\n" + b"".join(
                        f"{k}: {v}\r\n".encode() for k, v in kv) + b"\r\n")
_payloads = st.binary(max_size=40) | st.sampled_from([b"\r\n", b"MSG x 1 2\r\n", b"PING\r\n\r\n"])


@st.composite
def _frame(draw):
    """``(wire bytes, op, subject, reply, headers, payload)`` of any frame either side sends."""
    op = draw(st.sampled_from(["MSG", "HMSG", "PUB", "HPUB", "PING", "PONG", "+OK", "INFO", "SUB"]))
    if op in ("PING", "PONG", "+OK"):
        return (op.encode() + b"\r\n", op, b"", b"", None, b"")
    if op == "INFO":
        return (b"INFO " + json.dumps(INFO).encode() + b"\r\n", op, b"", b"", None, b"")
    subject = draw(_subjects)
    if op == "SUB":
        return (b"SUB " + subject + b" 1\r\n", op, b"", b"", None, b"")
    reply = draw(st.sampled_from([b""]) | _subjects)
    payload = draw(_payloads)
    headers = draw(_headers) if op.startswith("H") else None
    args = [subject] + ([b"9"] if op.endswith("MSG") else []) + ([reply] if reply else [])
    if headers is None:
        args.append(str(len(payload)).encode())
    else:
        args += [str(len(headers)).encode(), str(len(headers) + len(payload)).encode()]
    wire = op.encode() + b" " + b" ".join(args) + b"\r\n" + (headers or b"") + payload + b"\r\n"
    return (wire, op, subject, reply, headers, payload)


@settings(max_examples=300, deadline=None)
@given(table=st.lists(_frame(), min_size=1, max_size=12), cuts=st.lists(st.integers(0, 2000), max_size=20))
def test_any_stream_cut_anywhere_parses_into_its_frames(table, cuts) -> None:
    stream = b"".join(row[0] for row in table)
    bounds = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    parser = FrameParser()
    frames = [f for a, b in zip(bounds, bounds[1:], strict=False) for f in parser.feed(stream[a:b])]
    _check(frames, table)
    assert b"".join(f.raw for f in frames) == stream


@pytest.mark.parametrize("wire", [
    b"MSG a 1 2\r\nabcd\r\n",       # the payload is longer than its count
    b"HMSG a 1 20 10\r\n",           # more header bytes than bytes in all
    b"PUB a b c 2\r\nhi\r\n",        # too many arguments
    b"MSG a 1 x\r\n",                # a count that is no number
    b"FOO bar\r\n",                  # no such operation
    b"\r\n",                         # an empty line
], ids=["payload-overruns", "headers-over-total", "arguments", "count", "operation", "empty"])
def test_bytes_that_are_not_the_protocol_are_refused(wire) -> None:
    with pytest.raises(ProtocolError):
        FrameParser().feed(wire)


def test_kinds_of_requests() -> None:
    assert kind_of(b"$KV.sensor-a.t/dep") == "kv"
    assert kind_of(b"$KV.sensor-a.t/dep", frozenset({b"sensor-b"})) is None
    assert kind_of(b"$JS.API.STREAM.PURGE.KV_a") == "js_api"
    assert kind_of(b"$JS.ACK.s.c.1.5.5.0.0") == "js_ack"
    assert kind_of(b"default.src.ev") is None


def test_info_loses_connect_urls_and_a_tls_only_server_is_refused() -> None:
    frame = FrameParser().feed(SERVER_FRAMES[0][0])[0]
    info = json.loads(without_connect_urls(frame)[5:])
    assert "connect_urls" not in info and info["server_id"] == "N1"
    plain = FrameParser().feed(b'INFO {"server_id":"N2"}\r\n')[0]
    assert without_connect_urls(plain) == plain.raw
    with pytest.raises(ProtocolError, match="TLS"):
        without_connect_urls(FrameParser().feed(b'INFO {"tls_required":true}\r\n')[0])


# ------------------------------------------------------------------ against a real nats-server


async def _connect(url: str) -> nats.NATS:
    return await nats.connect(url, dont_randomize=True, connect_timeout=2, max_reconnect_attempts=-1,
                              reconnect_time_wait=0.2, error_cb=_quiet)


async def _quiet(err: Exception) -> None:
    pass


async def test_a_put_whose_reply_is_dropped_times_out_yet_the_value_is_stored(nats_url) -> None:
    bucket = unique_name("proxy")
    async with NatsProxy(nats_url, rates={"kv": 1.0}, seed=3) as proxy:
        nc = await _connect(proxy.url)
        try:
            kv = await nc.jetstream(timeout=1).create_key_value(bucket=bucket)
            revision = await kv.put("k", b"one")  # not armed: the reply comes
            proxy.armed = True
            with pytest.raises(nats.errors.TimeoutError):
                await kv.put("k", b"two")
            with pytest.raises(nats.errors.TimeoutError):
                await kv.delete("gone")
            proxy.armed = False
            entry = await kv.get("k")  # the server did store it
            assert (entry.value, entry.revision) == (b"two", revision + 1)
            assert proxy.dropped == {"kv": 2}
            assert proxy.requests["kv"] == 3 and proxy.requests["js_api"] >= 2  # create, info, get
            assert [kind for kind, _ in proxy.lost] == ["kv", "kv"]
            assert all(subject.startswith("_INBOX.") for _, subject in proxy.lost)
        finally:
            await nc.jetstream().delete_key_value(bucket)
            await nc.close()
    assert proxy.errors == []


async def test_headers_pass_intact_and_a_header_reply_is_dropped_like_any(nats_url) -> None:
    """HMSG both ways: messages with headers reach a subscriber through the proxy byte for byte;
    a direct get (answered with an HMSG carrying the entry's headers) loses its reply when
    ``js_api`` is armed; a request nobody serves gets its 503 HMSG dropped (a timeout, not
    "no responders")."""
    bucket = unique_name("proxyh")
    subject = unique_name("hdr.")
    sent = [(f"m{i}".encode() * (i * 997 % 9000), {"Nats-Msg-Id": f"id-{i}", "X-Tab": "a\tb", "X-N": str(i)})
            for i in range(60)]
    async with NatsProxy(nats_url, rates={"js_api": 1.0, "kv": 1.0}, seed=5) as proxy:
        direct = await _connect(nats_url)
        nc = await _connect(proxy.url)
        try:
            got: list[tuple[bytes, dict[str, str]]] = []
            done = asyncio.Event()

            async def on_msg(msg) -> None:
                got.append((msg.data, dict(msg.headers or {})))
                if len(got) == len(sent):
                    done.set()

            await nc.subscribe(subject, cb=on_msg)
            await nc.flush()
            for data, headers in sent:
                await direct.publish(subject, data, headers=headers)
            await asyncio.wait_for(done.wait(), 10)
            assert got == [(data, headers) for data, headers in sent]

            js = nc.jetstream(timeout=1)
            await js.create_key_value(bucket=bucket)
            kv = await js.key_value(bucket)
            await kv.put("k", b"v")
            proxy.armed = True
            with pytest.raises(nats.errors.TimeoutError):
                await kv.get("k")
            with pytest.raises(nats.errors.TimeoutError):  # no bucket: the server's 503 status is dropped
                await nc.request(f"$KV.{unique_name('none')}.k", b"x", timeout=1)
            proxy.armed = False
            with pytest.raises(nats.errors.NoRespondersError):
                await nc.request(f"$KV.{unique_name('none')}.k", b"x", timeout=1)
            assert (await kv.get("k")).value == b"v"
            assert proxy.dropped == {"js_api": 1, "kv": 1}
        finally:
            await direct.jetstream().delete_key_value(bucket)
            await nc.close()
            await direct.close()
    assert proxy.errors == []


async def test_a_clustered_server_is_never_discovered_past_the_proxy(nats_cluster) -> None:
    direct = await _connect(nats_cluster.servers[0])
    async with NatsProxy(nats_cluster.servers[0]) as proxy:
        nc = await _connect(proxy.url)
        try:
            await asyncio.sleep(0)  # INFO came with the connection
            assert direct.discovered_servers, "a cluster node advertises its peers"
            assert not nc.discovered_servers
            assert [s.port for s in nc.servers] == [proxy.port]
        finally:
            await nc.close()
            await direct.close()


async def test_a_tls_only_server_is_refused_not_passed_through() -> None:
    async def fake_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'INFO {"server_id":"T","tls_required":true}\r\n')
        await writer.drain()
        await reader.read(100)
        writer.close()

    server = await asyncio.start_server(fake_server, "127.0.0.1", 0)
    try:
        async with NatsProxy(("127.0.0.1", server.sockets[0].getsockname()[1])) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without a byte of INFO
            writer.close()
            assert proxy.errors and "TLS" in proxy.errors[0]
    finally:
        server.close()
        await server.wait_closed()


async def test_the_client_gets_back_through_the_proxy_after_the_server_restarts(private_nats) -> None:
    """What the e2e session does to its private server (killed, started again on its port)."""
    server = private_nats()
    async with NatsProxy(server.url, rates={"kv": 1.0}) as proxy:
        nc = await _connect(proxy.url)
        try:
            kv = await nc.jetstream(timeout=1).create_key_value(bucket="restart")
            server.kill()
            await asyncio.to_thread(server.respawn)
            for _ in range(100):
                try:
                    await kv.put("k", b"after")
                    break
                except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionClosedError):
                    await asyncio.sleep(0.1)
            assert (await kv.get("k")).value == b"after"
            assert proxy.connections >= 2 and nc.connected_url.port == proxy.port
        finally:
            await nc.close()


def test_running_proxy_serves_from_its_own_thread(nats_url) -> None:
    """The form the e2e session uses: clients in other processes, the test's code synchronous."""
    bucket = unique_name("proxyt")

    async def put_and_read(proxy: NatsProxy) -> bytes:
        nc = await _connect(proxy.url)
        try:
            kv = await nc.jetstream(timeout=1).create_key_value(bucket=bucket)
            proxy.armed = True
            with pytest.raises(nats.errors.TimeoutError):
                await kv.put("k", b"v")
            proxy.armed = False
            return (await kv.get("k")).value
        finally:
            await nc.jetstream().delete_key_value(bucket)
            await nc.close()

    with running_proxy(nats_url, rates={"kv": 1.0}) as proxy:
        assert asyncio.run(put_and_read(proxy)) == b"v"
        assert proxy.counts()["dropped"] == {"kv": 1}
