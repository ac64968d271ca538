"""Attacks on the routed raw path: ``core/bus/raw.py`` and what uses it.

The pull consumer's inbox (``Subscription._on_raw``) and the pipeline's reply inbox
(``Pipeline._on_reply``) are read straight from nats-py's parser; the pipeline encodes
PUB/HPUB itself and writes a batch as one command (``encode_pub``/``send_encoded``); the
live path journals a CloudEvent as the bytes it came in (``events.decode_keeping``).

Here a hostile publisher writes odd protocol to those inboxes (through a second
connection's ``_send_command``, so nothing nats-py would refuse is filtered out), a batch
carries a request the server must refuse, the connection closes or the server restarts
with writes in flight, and odd-but-valid payloads are journaled and read back.
Ordering is made deterministic with PING/PONG (``flush``) rather than sleeps: the server
delivers a message published on a connection before answering that connection's PING.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import nats
import orjson
import pytest

from airflow_argo_events.core.bus import EventBus, NatsSettings, StreamSettings, raw
from airflow_argo_events.core.bus import pipeline as pipeline_mod
from airflow_argo_events.core.events import decode, decode_keeping, encode, new_event
from airflow_argo_events.core.exceptions import EventBusError
from airflow_argo_events.core.limits import loads_strict
from airflow_argo_events.core.runtime import state as st
from airflow_argo_events.core.runtime.sensor_runtime import SensorRuntime
from airflow_argo_events.core.spec.sensor import Sensor
from airflow_argo_events.testing.plugin import unique_name
from tests.support import publish_retrying, running_sensor

pytestmark = pytest.mark.timeout(120)


async def until(cond, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what} not met within {timeout:g}s")
        await asyncio.sleep(0.02)


def ev(subject: str = "order", i: int = 0, id: str | None = None):
    return new_event(source="shop", subject=subject, type="webhook", data={"i": i}, id=id)


@contextlib.asynccontextmanager
async def hostile(url: str):
    """A second connection that writes raw protocol (what nats-py's publish would refuse too)."""
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        yield nc
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def raw_pub(nc, subject: bytes, payload: bytes, reply: bytes = b"", block: bytes | None = None) -> None:
    if block is None:
        cmd = b"PUB %b %b %d\r\n%b\r\n" % (subject, reply, len(payload), payload)
    else:
        cmd = b"HPUB %b %b %d %d\r\n%b%b\r\n" % (subject, reply, len(block), len(block) + len(payload), block, payload)
    cmd = cmd.replace(b"  ", b" ")  # no reply: one space
    await nc._send_command(cmd)
    await nc.flush()


async def fetch_all(sub, n: int, timeout: float = 10.0) -> list:
    got: list = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(got) < n and asyncio.get_running_loop().time() < deadline:
        got.extend(await sub.fetch(n - len(got), timeout=1.0))
    return got


# --------------------------------------------------------------------------- 1. the consumer's inbox

HOSTILE_INBOX = [
    pytest.param(b"", b"no reply", None, id="no-reply"),
    pytest.param(b"$JS.ACK.x.y.a.b.c.d.e", b"garbage numbers", None, id="fake-ack-garbage"),
    pytest.param(b"$JS.ACK.x.y.1.2.3.4.5.6.7.8.9", b"too many tokens", None, id="fake-ack-12-tokens"),
    pytest.param(b"\xff\xfe.bad", b"non-utf8 reply", None, id="non-utf8-reply"),
    pytest.param(b"x", b"\x00" * 300_000, None, id="huge-payload"),
    pytest.param(b"$JS.ACK.x.y.z.q.r.s.t", b"{}", b"NATS/1.0\r\nce-id: \xff\xfe\r\n\xff: \xfe\r\n\r\n",
                 id="non-utf8-headers-fake-ack"),
    pytest.param(b"", b"", b"NATS/1.0 100 Idle Heartbeat\r\n\r\n", id="fake-heartbeat"),
    pytest.param(b"", b"", b"NATS/1.0 408 Request Timeout\r\n\r\n", id="fake-408"),
    pytest.param(b"", b"", b"NATS/1.0\r\n\r\n", id="empty-header-block"),
    pytest.param(b"", b"", b"NATS/1.0 \r\n\r\n", id="status-space-only"),
    pytest.param(b"", b"", b"NATS/1.0 4\r\n\r\n", id="status-one-digit"),
]


@pytest.mark.parametrize("reply,payload,block", HOSTILE_INBOX)
async def test_hostile_messages_on_the_consumer_inbox_leave_deliveries_intact(bus: EventBus, reply, payload, block):
    """Before, between and after real events, a hostile message on the inbox: every real
    event is delivered once, in order, decoded; fetch never raises."""
    sub = await bus.subscribe(unique_name("d"), "shop", "order", deliver="all", batch=8)
    async with hostile(bus.nc.connected_url.geturl()) as evil:
        inbox = sub._inbox.encode()
        await raw_pub(evil, inbox, payload, reply, block)
        for i in range(3):
            await bus.publish(ev(i=i))
        await raw_pub(evil, inbox, payload, reply, block)
        first = await fetch_all(sub, 3)
        for i in range(3, 6):
            await bus.publish(ev(i=i))
            await raw_pub(evil, inbox, payload, reply, block)
        second = await fetch_all(sub, 3)
    got = first + second
    assert [d.event.data["i"] for d in got if d.event is not None] == list(range(6))
    assert all(d.error is None for d in got), [d.error for d in got]
    for d in got:
        await d.ack()


@pytest.mark.parametrize("status", [b"409 Consumer Deleted", b"503", b"400 Bad Request"])
async def test_a_status_block_carrying_a_reply_subject_does_not_end_the_consumer(bus: EventBus, status):
    """A server status (heartbeat, 408, 409...) never carries a reply subject; a message that
    looks like one but has a reply that is not an ack subject was published by someone
    else. It must not make the next fetch raise (``_failed``) for a live consumer."""
    sub = await bus.subscribe(unique_name("d"), "shop", "order", deliver="all", batch=8)
    await bus.publish(ev(i=0))
    assert [d.event.data["i"] for d in await fetch_all(sub, 1)] == [0]
    async with hostile(bus.nc.connected_url.geturl()) as evil:
        await raw_pub(evil, sub._inbox.encode(), b"", b"_INBOX.attacker", b"NATS/1.0 " + status + b"\r\n\r\n")
    await bus.nc.flush()  # the hostile message is read before this PONG
    await bus.publish(ev(i=1))
    try:
        got = await fetch_all(sub, 1)
    except EventBusError as err:
        pytest.fail(f"a forged status with a reply subject ended the consumer: {err}")
    assert [d.event.data["i"] for d in got] == [1]


# --------------------------------------------------------------------------- 1b. the pipeline's reply inbox


async def test_forged_replies_touch_only_the_token_they_name(bus: EventBus, monkeypatch):
    """While a batch of three KV writes is in flight, a hostile client answers the middle
    one's token (and sends junk to other tokens of the prefix: non-UTF-8, unknown, status
    blocks). The other two results are the real revisions; the next batch is unaffected by
    the real reply that comes late for the forged token."""
    store = await bus.state(unique_name("kv"))
    p = bus.pipeline()
    real_send = pipeline_mod.send_encoded
    forged: list[bytes] = []

    async with hostile(bus.nc.connected_url.geturl()) as evil:
        async def send_encoded(nc, commands, size):
            if not forged and len(commands) == 3:
                token = commands[1].split(b" ")[2]  # HPUB/PUB <subject> <reply> ...
                forged.append(token)
                prefix = p._prefix.encode()
                await raw_pub(evil, prefix + b"\xff\xfe", b'{"stream":"x","seq":7}')
                await raw_pub(evil, prefix + b"zzzz", b'{"stream":"x","seq":7}')
                await raw_pub(evil, prefix + b"ffffffff", b"", b"", b"NATS/1.0 503\r\n\r\n")
                await raw_pub(evil, token, b'{"stream":"x","seq":424242}')
                await bus.nc.flush()
            await real_send(nc, commands, size)

        monkeypatch.setattr(pipeline_mod, "send_encoded", send_encoded)
        res = await store.put_many([("a", b"1", 0), ("b", b"2", 0), ("c", b"3", 0)])
        monkeypatch.setattr(pipeline_mod, "send_encoded", real_send)
    assert forged, "the batch was not sent as one write of three"
    rev_a = (await store.get_raw("a"))[1]
    rev_c = (await store.get_raw("c"))[1]
    assert res[0] == rev_a and res[2] == rev_c, res
    assert not p._waiting, "tokens left behind"
    res2 = await store.put_many([("d", b"4", 0), ("e", b"5", 0)])
    assert res2 == [(await store.get_raw("d"))[1], (await store.get_raw("e"))[1]], res2


# --------------------------------------------------------------------------- 2. send failures in a batch


@contextlib.asynccontextmanager
async def small_payload_bus(private_nats, max_payload: int = 4096):
    conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)
    conf.write(f"max_payload: {max_payload}\n")
    conf.close()
    try:
        server = private_nats(extra_args=["-c", conf.name])
        async with EventBus(NatsSettings.from_url(server.url), StreamSettings(name=unique_name("s"), replicas=1)) as b:
            yield server, b
    finally:
        os.unlink(conf.name)


async def test_a_request_over_max_payload_fails_alone_in_its_batch(private_nats):
    async with small_payload_bus(private_nats) as (_, bus):
        store = await bus.state(unique_name("kv"))
        res = await store.put_many([("a", b"1", 0), ("big", b"x" * 5000, 0), ("c", b"3", 0)])
        assert isinstance(res[1], EventBusError), res
        assert isinstance(res[0], int) and isinstance(res[2], int), res
        assert bus.reconnects == 0


async def test_headers_that_push_a_request_over_max_payload_fail_it_alone(private_nats):
    """The server counts header block + payload against max_payload (HPUB's total size); a
    request whose payload fits but whose headers push it over is refused by the server with
    "Maximum Payload Violation", which closes the connection. ``encode_pub`` must refuse it
    (as too large) so the rest of the batch still goes through on a live connection."""
    async with small_payload_bus(private_nats) as (server, bus):
        store = await bus.state(unique_name("kv"))
        await store.put_many([("warm", b"0", 0)])
        near = b"x" * (bus.nc._max_payload - 10)  # fits alone; the expected-revision header does not
        res = await asyncio.wait_for(store.put_many([("a", b"1", 0), ("big", near, 0), ("c", b"3", 0)]), 30)
        assert isinstance(res[1], BaseException), res
        said = [ln.strip() for ln in Path(server.log_path).read_text(errors="replace").splitlines() if "payload" in ln]
        assert isinstance(res[0], int) and isinstance(res[2], int), (
            f"one over-sized request cost the whole batch: {res!r}; connection closed {bus.nc.is_closed}, "
            f"last error {bus.nc.last_error!r}; server log: {said[-1:]}")
        assert bus.reconnects == 0, "the server dropped the connection (Maximum Payload Violation)"


async def test_sends_on_a_closed_connection_are_errors_not_raises_or_hangs(bus: EventBus):
    store = await bus.state(unique_name("kv"))
    assert isinstance((await store.put_many([("a", b"1", 0)]))[0], int)  # the pipeline is started
    p = bus.pipeline()
    await bus.nc.close()
    res = await asyncio.wait_for(p.send([("$KV.x.a", b"1", None), ("$KV.x.b", b"2", {"A": "b"})], timeout=2), 10)
    assert all(isinstance(r, EventBusError) for r in res), res
    err = await asyncio.wait_for(p.send_only([("x.y", b"1", None)]), 10)
    assert isinstance(err, EventBusError)


async def test_server_restart_with_journal_writes_in_flight(private_nats):
    """200 creates in one batch, the server restarted (SIGTERM) while they are in flight:
    each result is an error or the key's real revision; never a hang; afterwards the
    pipeline's routed reply inbox works again (nats-py re-sent its SUB with the same sid)."""
    server = private_nats()
    async with EventBus(NatsSettings.from_url(server.url), StreamSettings(name=unique_name("s"), replicas=1)) as bus:
        store = await bus.state(unique_name("kv"))
        items = [(f"j.{i}", orjson.dumps({"i": i, "pad": "p" * 2000}), 0) for i in range(200)]
        task = asyncio.create_task(store.put_many(items))
        await asyncio.sleep(0)  # let it send
        await asyncio.to_thread(server.restart)
        res = await asyncio.wait_for(task, 60)
        assert len(res) == 200
        await until(lambda: bus.nc.is_connected, 30, "reconnect")
        for (key, data, _), r in zip(items, res, strict=True):
            if isinstance(r, BaseException):
                continue
            got, rev = await store.get_raw(key)
            assert (got, rev) == (data, r), f"{key}: result {r}, stored at {rev}"
        after = await asyncio.wait_for(store.put_many([("after", b"1", None)]), 30)
        assert isinstance(after[0], int), after
        assert after[0] == (await store.get_raw("after"))[1]


# --------------------------------------------------------------------------- 3. reconnect under a live sensor


def one_dep_sensor(name: str) -> Sensor:
    return Sensor.model_validate({"metadata": {"name": name}, "spec": {
        "dependencies": [{"name": "a", "eventSourceName": "shop", "eventName": "order"}],
        "triggers": [{"template": {"name": "t", "conditions": "a", "log": {}}}]}})


async def test_live_sensor_fires_every_event_once_across_a_server_restart(private_nats):
    server = private_nats()
    runs: Counter[str] = Counter()
    event_of: dict[str, str] = {}

    async def execute(firing) -> None:
        runs[firing.id] += 1
        event_of[firing.id] = next(iter(firing.events.values())).id

    settings = NatsSettings.from_url(server.url)
    async with EventBus(settings, StreamSettings(name=unique_name("s"), replicas=1)) as bus:
        rt = SensorRuntime(one_dep_sensor(unique_name("rc")), bus, execute, ack_wait=2.0, idle_poll=0.5)
        async with running_sensor(rt):
            ids = [f"e{i}" for i in range(40)]
            for i in ids[:20]:
                await publish_retrying(bus, ev(id=i), give_up=30)
            await until(lambda: len(runs) >= 20, 30, "first 20 firings")
            routes_before = dict(bus.nc._argo_routes)
            subs_before = {sid: s.subject for sid, s in bus.nc._subs.items()}
            await asyncio.to_thread(server.restart)
            for i in ids[20:]:
                await publish_retrying(bus, ev(id=i), give_up=30)
            await until(lambda: len(runs) >= 40, 60, "40 firings after the restart")
            await until(lambda: not rt.pending(), 30, "nothing pending")
        assert bus.reconnects >= 1
        routes_after = dict(bus.nc._argo_routes)
        subs_after = {sid: s.subject for sid, s in bus.nc._subs.items()}
        # every routed sid must still be a live subscription of the connection (nats-py re-sent its SUB)
        assert set(routes_after) <= set(subs_after), (routes_before, subs_before, routes_after, subs_after)
    assert sorted(event_of.values()) == sorted(ids), "lost or extra firings"
    assert {f: n for f, n in runs.items() if n > 1} == {}, "a firing ran twice"


# --------------------------------------------------------------------------- 4. decode_keeping and the journal

_BASE = b'"specversion":"1.0","id":"x1","source":"shop","type":"webhook","subject":"order","time":"2024-01-01T00:00:00Z"'
KEPT = {
    "duplicate-keys": b'{' + _BASE + b',"id":"x2","data":{"a":1,"a":2}}',
    "lone-surrogate": b'{' + _BASE + b',"data":"\\ud800"}',
    "surrogate-key": b'{' + _BASE + b',"data":{"\\udc00":1}}',
    "big-int": b'{' + _BASE + b',"data":' + str(2**70).encode() + b'}',
    "u64": b'{' + _BASE + b',"data":' + str(2**64 - 1).encode() + b'}',
    "whitespace": b' \n\t{' + _BASE + b',"data":{ "a" : [1, 2] }}\r\n ',
    "negative-zero": b'{' + _BASE + b',"data":-0.0}',
    "nul-escape": b'{' + _BASE + b',"data":"\\u0000"}',
    "deep": b'{' + _BASE + b',"data":' + b'[' * 120 + b']' * 120 + b'}',
    "large": b'{' + _BASE + b',"data":"' + b"y" * 20_000 + b'"}',
    "invalid-utf8": b'{' + _BASE + b',"data":"\xff\xfe"}',
}


def journaled(event, raw_bytes) -> tuple[bytes, object]:
    """What the live path stores for one event (``new_ref`` + ``encode``) and what recovery reads."""
    ref, blob = st.new_ref(event, 1, "j:f:a", raw_bytes)
    if blob is not None:
        return blob[1], st.decode_blob(blob[1])
    rec = st.encode(st.Entry("t", refs={"a": ref}))
    return rec, st.Entry.parse(loads_strict(rec), 1).refs["a"].event


@pytest.mark.parametrize("payload", list(KEPT.values()), ids=list(KEPT))
def test_an_event_journaled_as_it_came_reads_back_the_same(payload):
    event, kept = decode_keeping(payload)
    assert event == decode(payload)
    _, back = journaled(event, kept)
    assert back == event
    _, cooked = journaled(event, None)  # the path before: serialized again
    assert cooked == back


@pytest.mark.parametrize("payload", list(KEPT.values()), ids=list(KEPT))
def test_a_journal_entry_stays_json_any_reader_reads(payload):
    """Before raw journaling, a journal entry was what ``dumps_compact`` writes: UTF-8 JSON
    that any reader (``StateStore.get``'s ``json.loads``, ``nats kv get | jq``) reads. A
    payload spliced in as it came must not make the entry something else."""
    event, kept = decode_keeping(payload)
    stored, _ = journaled(event, kept)
    if stored[:1] == b"z":
        import zlib
        stored = zlib.decompress(stored[1:])
    try:
        doc = json.loads(stored)
    except ValueError as err:  # UnicodeDecodeError included
        pytest.fail(f"journal entry is no longer standard JSON: {type(err).__name__}: {err}; {stored[:120]!r}")
    assert doc is not None


async def test_binary_mode_events_are_not_journaled_as_their_body(bus: EventBus):
    """ce-* headers through a real server: the routed Subscription decodes binary mode, and
    keeps no raw bytes (the body alone is not the event)."""
    sub = await bus.subscribe(unique_name("d"), "shop", "order", deliver="all")
    body = b'{"specversion":"1.0","id":"body","source":"s","type":"t","time":"2024-01-01T00:00:00Z","data":1}'
    headers = {"ce-id": "hdr", "ce-source": "shop", "ce-type": "webhook", "ce-specversion": "1.0", "ce-subject": "order",
               "ce-time": "2024-01-01T00:00:00Z", "content-type": "application/json"}
    await bus.js.publish(bus.stream.subject("shop", "order"), body, headers=headers)
    upper = {k.upper() if k.startswith("ce-") else k: v for k, v in headers.items()}
    upper["CE-ID"] = "hdr2"
    await bus.js.publish(bus.stream.subject("shop", "order"), body, headers=upper)
    got = await fetch_all(sub, 2)
    assert [d.event.id for d in got] == ["hdr", "hdr2"], [d.error for d in got]
    assert all(d.raw is None for d in got)
    assert got[0].event.data == orjson.loads(body)
    for d in got:
        _, back = journaled(d.event, d.raw)
        assert back == d.event


# --------------------------------------------------------------------------- 5. headers through a real server

ODD_BLOCKS = [
    b"NATS/1.0\r\nA: 1\r\nA: 2\r\n\r\n",
    b"NATS/1.0\r\n a : spaced \r\n\r\n",
    b"NATS/1.0\r\nx:\r\ny: a: b\r\n\r\n",
    b"NATS/1.0\r\nNo-Colon\r\nK: v\r\n\r\n",
    b"NATS/1.0\r\nK: caf\xc3\xa9\r\n\r\n",
    b"NATS/1.0\r\nStatus: 200\r\nDescription: fake\r\n\r\n",
    b"NATS/1.0\r\nce-id: i\r\nce-source: s\r\nce-type: t\r\n\r\n",
    b"NATS/1.0\r\nKV-Operation: DEL\r\nNats-TTL: 5\r\n\r\n",
]


@pytest.mark.parametrize("block", ODD_BLOCKS, ids=[f"block{i}" for i in range(len(ODD_BLOCKS))])
async def test_routed_headers_equal_what_a_plain_subscriber_sees(bus: EventBus, block):
    sub = await bus.subscribe(unique_name("d"), "shop", "order", deliver="all")
    seen: list = []
    async def cb(m) -> None:
        seen.append(m)

    plain = await bus.nc.subscribe(bus.stream.subject("shop", "order"), cb=cb)
    try:
        async with hostile(bus.nc.connected_url.geturl()) as evil:
            await raw_pub(evil, bus.stream.subject("shop", "order").encode(), encode(ev(i=1)), b"", block)
        got = await fetch_all(sub, 1)
        await until(lambda: bool(seen), 10, "plain subscriber")
    finally:
        await plain.unsubscribe()
    assert len(got) == 1
    assert got[0].msg.headers == seen[0].headers


def test_raw_module_is_what_the_pipeline_uses():
    """The attacks above patch ``pipeline.send_encoded``: it must be raw's."""
    assert pipeline_mod.send_encoded is raw.send_encoded
