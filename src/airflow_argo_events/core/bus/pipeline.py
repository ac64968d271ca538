"""Many confirmed requests in flight at once, awaited together: the live path's writes and acks.

nats-py's ``request`` (under ``js.publish``, ``kv.create``, ``msg.ack_sync``) costs a future,
a timer and a task per call; a sensor that writes a journal entry and confirms an ack per
event spends more time there than on anything else. A :class:`Pipeline` sends a whole
batch of requests on one reply subscription and waits once, for all the replies, with one
timer. Every request is still confirmed one by one (a JetStream publish by its PubAck,
an ack by the server's reply, as ``AckSync``): only the bookkeeping is shared.

>>> results = await bus.pipeline().send([("$KV.b.j.x", b"{}", {"KV-Operation": "DEL"})])  # doctest: +SKIP
>>> ok = [r for r in results if not isinstance(r, BaseException)]                        # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Coroutine, Sequence
from typing import Any

import nats.errors
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js.errors import APIError

from airflow_argo_events.core.bus.kv import StateConflict, StateTooLarge, translated
from airflow_argo_events.core.bus.raw import RawMsg, encode_pub, route, send_encoded, unroute
from airflow_argo_events.core.exceptions import EventBusError

Request = tuple[str, bytes, "dict[str, str] | None"]
"""``(subject, payload, headers)``."""


class _Batch:
    __slots__ = ("done", "left", "replies")

    def __init__(self, n: int, loop: asyncio.AbstractEventLoop) -> None:
        self.replies: list[Msg | None] = [None] * n
        self.left = n
        self.done: asyncio.Future[None] = loop.create_future()


class Pipeline:
    """One reply subscription (``<inbox>.*``) shared by every batch sent through it.

    :param nc: the connection (the subscription is made on first use, and re-made by
        nats-py after a reconnect like any other).
    """

    def __init__(self, nc: Client) -> None:
        self._nc = nc
        self._prefix = ""
        self._sub: NatsSubscription | None = None
        self._waiting: dict[str, tuple[_Batch, int]] = {}
        self._ids = itertools.count()
        self._lock = asyncio.Lock()

    async def _start(self) -> None:
        async with self._lock:
            if self._sub is None:
                prefix = self._nc.new_inbox()
                sub = await translated(self._nc.subscribe(prefix + ".*"), "reply subscription")
                route(self._nc, sub, self._on_reply)  # raw.py: straight from the parser
                self._sub = sub
                self._prefix = prefix + "."

    def _on_reply(self, subject: bytes, reply: bytes, data: bytes, block: bytes | None) -> None:
        slot = self._waiting.pop(subject[len(self._prefix):].decode("ascii", "replace"), None)
        if slot is None:  # late (its batch timed out) or not ours
            return
        batch, i = slot
        batch.replies[i] = RawMsg(self._nc, subject.decode("utf-8", "replace"), reply.decode("utf-8", "replace"),
                                  data, block)
        batch.left -= 1
        if not batch.left and not batch.done.done():
            batch.done.set_result(None)

    async def send(self, requests: Sequence[Request], timeout: float = 5.0) -> list[Msg | BaseException]:
        """Send every request, then wait (at most ``timeout`` in all) for their replies.

        Returns one item per request, in order: the reply, or an :class:`EventBusError`
        (a timeout, no responders, a send that failed). Never raises for one request.
        """
        return await (await self.submit(requests, timeout))

    async def submit(self, requests: Sequence[Request],
                     timeout: float = 5.0) -> Coroutine[Any, Any, list[Msg | BaseException]]:
        """Send every request now; the coroutine returned waits for their replies (as :meth:`send`).

        For requests whose answers need not hold the caller up (the acks of a batch whose
        state is stored): they are on the wire in order when this returns."""
        if not requests:
            return _nothing()
        if self._sub is None:
            await self._start()
        batch = _Batch(len(requests), asyncio.get_running_loop())
        tokens: list[str] = []
        unsent: dict[int, BaseException] = {}
        commands: list[bytes] = []
        size = 0
        try:
            for i, (subject, payload, headers) in enumerate(requests):
                token = f"{next(self._ids):x}"
                try:
                    commands.append(encode_pub(self._nc, subject, payload, self._prefix + token, headers))
                except nats.errors.Error as err:  # this request only (too large, a bad subject)
                    unsent[i] = err
                    batch.left -= 1
                    continue
                size += len(payload)
                tokens.append(token)
                self._waiting[token] = (batch, i)
            try:
                await send_encoded(self._nc, commands, size)
            except (nats.errors.Error, ConnectionError, OSError) as err:
                for token in tokens:
                    _, i = self._waiting.pop(token)
                    unsent[i] = err
                    batch.left -= 1
        except BaseException:
            for token in tokens:
                self._waiting.pop(token, None)
            raise
        return self._replies(requests, batch, tokens, unsent, timeout)

    async def _replies(self, requests: Sequence[Request], batch: _Batch, tokens: list[str],
                       unsent: dict[int, BaseException], timeout: float) -> list[Msg | BaseException]:
        try:
            if batch.left:
                await asyncio.wait((batch.done,), timeout=timeout)
        finally:
            for token in tokens:
                self._waiting.pop(token, None)
        out: list[Msg | BaseException] = []
        for i, ((subject, _, _), reply) in enumerate(zip(requests, batch.replies, strict=True)):
            if i in unsent:
                err = unsent[i]
                cls = StateTooLarge if isinstance(err, nats.errors.MaxPayloadError) else EventBusError
                failed = cls(f"request to {subject} failed: {type(err).__name__}: {err}".rstrip(": "))
                failed.__cause__ = err
                out.append(failed)
            elif reply is None:
                out.append(EventBusError(f"request to {subject} failed: no reply within {timeout:g}s"))
            elif reply.headers and reply.headers.get("Status") == "503":
                out.append(EventBusError(f"request to {subject} failed: no responders"))
            else:
                out.append(reply)
        return out

    async def publish(self, requests: Sequence[Request], timeout: float = 5.0) -> list[int | BaseException]:
        """JetStream publishes: the stream sequence of each, or its error translated at the
        bus seam (:class:`StateConflict` for a failed expected-last-sequence check)."""
        out: list[int | BaseException] = []
        for (subject, _, _), reply in zip(requests, await self.send(requests, timeout), strict=True):
            out.append(reply if isinstance(reply, BaseException) else _pub_ack(subject, reply))
        return out

    async def publish_in_order(self, requests: Sequence[Request], timeout: float = 5.0) -> BaseException | None:
        """JetStream publishes of which only the last is confirmed: the server stores one
        connection's messages to a stream in the order sent, so the last one's PubAck stands
        for them all. For writes where a lost one only costs a repetition (deleting the
        journal entries of finished firings). None, or the error (then resend them all)."""
        if not requests:
            return None
        failed = await self.send_only(requests[:-1])
        if failed is not None:
            return failed
        (last,) = await self.publish(requests[-1:], timeout)
        return last if isinstance(last, BaseException) else None

    async def send_only(self, requests: Sequence[Request]) -> BaseException | None:
        """Publish without asking for replies (plain acks, unconfirmed deletes): None once all
        are handed to the connection, or the first send's error (the rest are not sent)."""
        commands: list[bytes] = []
        size = 0
        try:
            for subject, payload, headers in requests:
                try:
                    commands.append(encode_pub(self._nc, subject, payload, "", headers))
                except nats.errors.Error:
                    # the ones before it go; it and the rest do not (as one publish at a time)
                    await send_encoded(self._nc, commands, size)
                    raise
                size += len(payload)
            await send_encoded(self._nc, commands, size)
        except (nats.errors.Error, ConnectionError, OSError) as err:
            failed = EventBusError(f"publish to {subject} failed: {type(err).__name__}: {err}".rstrip(": "))
            failed.__cause__ = err
            return failed
        return None

    async def close(self) -> None:
        sub, self._sub = self._sub, None
        for batch, _ in list(self._waiting.values()):
            if not batch.done.done():
                batch.done.set_result(None)
        self._waiting.clear()
        if sub is not None:
            unroute(self._nc, sub)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


async def _nothing() -> list[Msg | BaseException]:
    return []


def _pub_ack(subject: str, reply: Msg) -> int | BaseException:
    try:
        resp: Any = orjson.loads(reply.data)
    except orjson.JSONDecodeError:
        return EventBusError(f"publish to {subject}: unreadable reply {reply.data[:80]!r}")
    err = resp.get("error") if isinstance(resp, dict) else None
    if err is not None:
        try:
            APIError.from_error(err)  # raises the error's class (BadRequestError, ServiceUnavailableError...)
            api = APIError(**err)
        except APIError as raised:
            api = raised
        except (TypeError, KeyError):
            return EventBusError(f"publish to {subject}: unexpected reply {reply.data[:80]!r}")
        if getattr(api, "err_code", None) in (10071, 10164):  # the revision moved on (compare-and-set lost)
            return StateConflict(f"publish to {subject}: revision is stale")
        if getattr(api, "err_code", None) == 10054:
            return StateTooLarge(f"publish to {subject}: message is larger than the stream allows")
        wrapped = EventBusError(f"publish to {subject}: {type(api).__name__}: {api}")
        wrapped.__cause__ = api
        return wrapped
    if not isinstance(resp, dict) or "seq" not in resp:
        return EventBusError(f"publish to {subject}: unexpected reply {reply.data[:80]!r}")
    return int(resp["seq"])
