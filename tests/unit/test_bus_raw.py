"""``core/bus/raw.py`` against nats-py itself: the routed inboxes and the pipeline's batched
sends must read and write exactly what nats-py would.

- ``parse_headers`` gives what ``Client._process_headers`` gives for any header block
  (inline statuses with and without descriptions, repeated, empty, non-ASCII and spaced
  names, values with colons);
- ``ack_fields`` reads what ``Msg.metadata`` reads from any ack subject, and refuses what
  nats-py refuses;
- ``encode_pub`` writes the bytes ``Client.publish`` writes, and raises its errors (and
  MaxPayloadError where headers and payload together pass the server's max_payload, which
  nats-py lets through and the server answers by closing the connection).
"""

from __future__ import annotations

import asyncio
from typing import Any

import nats.errors
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NotJSMessageError

from airflow_argo_events.core.bus import raw


def _nats_headers(block: bytes) -> Any:
    return asyncio.run(Client()._process_headers(block))


_name = st.one_of(
    st.sampled_from(["Nats-Msg-Id", "KV-Operation", "ce-id", "Ce-Id", "Status", "Description", "a", "X"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), min_size=0, max_size=8),
    st.text(max_size=4),  # non-ASCII and control characters
)
_value = st.one_of(st.text(max_size=12).filter(lambda v: "\r" not in v and "\n" not in v),
                   st.sampled_from(["", " x ", "a: b", "DEL", "0"]))
_line = st.builds(lambda n, sep, v: f"{n}{sep}{v}".encode(), _name, st.sampled_from([": ", ":", ":\t", " : ", ""]),
                  _value)
_status = st.one_of(
    st.none(),
    st.builds(lambda code, desc: f" {code}{desc}", st.sampled_from(["100", "404", "408", "409", "503", "12", "abc"]),
              st.sampled_from(["", " Idle Heartbeat", " Request Timeout", " Consumer Deleted", " No Messages"])),
)


@settings(max_examples=600, deadline=None)
@given(status=_status, lines=st.lists(_line, max_size=4), end=st.sampled_from([b"\r\n\r\n", b"\r\n", b""]))
def test_parse_headers_reads_what_nats_py_reads(status: str | None, lines: list[bytes], end: bytes) -> None:
    head = b"NATS/1.0" + (status or "").encode()
    block = head + b"".join(b"\r\n" + line for line in lines) + end
    try:
        expected = _nats_headers(block)
    except (IndexError, UnicodeDecodeError):  # nats-py fails on "NATS/1.0" alone, a non-UTF-8 status
        raw.parse_headers(block)  # ours reads it without failing
        return
    assert raw.parse_headers(block) == expected


@pytest.mark.parametrize("block", [
    b"NATS/1.0\r\nNats-Msg-Id: abc\r\n\r\n",
    b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 5\r\nNats-Last-Stream: 9\r\n\r\n",
    b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 3\r\nNats-Pending-Bytes: 0\r\n\r\n",
    b"NATS/1.0 503\r\n\r\n",
    b"NATS/1.0\r\nKV-Operation: DEL\r\nNats-TTL: 3600\r\n\r\n",
    b"NATS/1.0\r\nStatus: 7\r\nA: 1\r\nA: 2\r\n\r\n",
])
def test_parse_headers_on_what_servers_send(block: bytes) -> None:
    assert raw.parse_headers(block) == _nats_headers(block)


@pytest.mark.parametrize(("block", "status"), [
    (None, None), (b"", None), (b"NATS/1.0\r\nA: b\r\n\r\n", None),
    (b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 5\r\n\r\n", ("100", "Idle Heartbeat")),
    (b"NATS/1.0 409 Consumer Deleted\r\n\r\n", ("409", "Consumer Deleted")),
    (b"NATS/1.0 503\r\n\r\n", ("503", "")),
])
def test_status_of(block: bytes | None, status: tuple[str, str] | None) -> None:
    assert raw.status_of(block) == status
    if block:  # the same code and description nats-py reports
        hdr = _nats_headers(block) or {}
        assert (hdr.get("Status"), hdr.get("Description", "")) == (status or (None, ""))


_token = st.one_of(st.integers(0, 10**12).map(str), st.sampled_from(["", "x", "-1", "1.5", "_", "KV_b", "d"]))


@settings(max_examples=600, deadline=None)
@given(prefix=st.sampled_from(["$JS.ACK", "$JS.ACK.", "$JS.NAK", "JS.ACK", "$JS.ACK.x"]),
       tokens=st.lists(_token, min_size=0, max_size=13))
def test_ack_fields_reads_what_nats_py_reads(prefix: str, tokens: list[str]) -> None:
    reply = ".".join([prefix, *tokens]) if tokens else prefix
    try:
        meta = Msg.Metadata._from_reply(reply)
    except (NotJSMessageError, ValueError, IndexError):
        assert raw.ack_fields(reply) is None
        return
    assert raw.ack_fields(reply) == (meta.sequence.stream, meta.sequence.consumer, meta.num_delivered, meta.consumer)


@pytest.mark.parametrize("reply", [
    "$JS.ACK.default.group-abc.1.42.7.1733300000000000000.0",
    "$JS.ACK.hub.ACCHASH.default.group-abc.3.42.7.1733300000000000000.5.rand",
    "$JS.ACK._.ACCHASH.default.d.1.9.9.1733300000000000000.0",
])
def test_ack_fields_on_server_subjects(reply: str) -> None:
    meta = Msg.Metadata._from_reply(reply)
    assert raw.ack_fields(reply) == (meta.sequence.stream, meta.sequence.consumer, meta.num_delivered, meta.consumer)


def _nats_bytes(subject: str, payload: bytes, reply: str, headers: dict[str, str] | None) -> bytes | type:
    nc = Client()
    nc._max_payload = 64
    sent: list[bytes] = []

    async def capture(cmd: bytes, priority: bool = False) -> None:
        sent.append(cmd)

    nc._send_command = capture  # type: ignore[method-assign]
    nc._flush_queue = None
    nc._status = Client.CONNECTED
    try:
        asyncio.run(nc.publish(subject, payload, reply=reply, headers=headers))
    except nats.errors.Error as err:
        return type(err)
    return b"".join(sent)


_subject = st.one_of(st.sampled_from(["$KV.b.j.x", "a.b", "", "a b", "a\r\nPUB x 1", "$JS.ACK.s.c.1.2.3.4.0"]),
                     st.text(alphabet="abc.$_-> \t", min_size=0, max_size=10))
_headers = st.one_of(st.none(), st.dictionaries(
    st.one_of(st.sampled_from(["KV-Operation", "Nats-TTL", "Nats-Expected-Last-Subject-Sequence", " pad ", ""]),
              st.text(max_size=5)),
    st.text(max_size=8), max_size=3))


@settings(max_examples=600, deadline=None)
@given(subject=_subject, reply=st.one_of(st.just(""), _subject), payload=st.binary(max_size=80), headers=_headers)
def test_encode_pub_writes_what_nats_py_writes(subject: str, reply: str, payload: bytes,
                                                headers: dict[str, str] | None) -> None:
    expected = _nats_bytes(subject, payload, reply, headers)
    if isinstance(expected, bytes) and expected.startswith(b"HPUB") and \
            int(expected.split(b"\r\n", 1)[0].split()[-1]) > 64:
        # on purpose stricter than nats-py: the server counts headers + payload against
        # max_payload, and closes the connection over an oversized HPUB
        expected = nats.errors.MaxPayloadError
    nc = Client()
    nc._max_payload = 64
    try:
        got: bytes | type = raw.encode_pub(nc, subject, payload, reply, headers)
    except nats.errors.Error as err:
        got = type(err)
    assert got == expected
