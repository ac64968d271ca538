"""Sensor state in a JetStream key/value bucket, written with compare-and-set.

Every NATS error is translated here, at the bus seam, into :class:`EventBusError` (or its
:class:`StateConflict` for a lost compare-and-set), so the runtime's retry paths see one
kind of failure whatever the client raised (timeouts, a stalled or restarting server,
no responders, a closed connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import (
    APIError,
    BucketNotFoundError,
    KeyDeletedError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KeyValue

from airflow_argo_events.core.exceptions import EventBusError

if TYPE_CHECKING:
    from airflow_argo_events.core.bus.pipeline import Pipeline

T = TypeVar("T")
log = logging.getLogger(__name__)
NATS_ERRORS = (nats.errors.Error, APIError, asyncio.TimeoutError, TimeoutError, ConnectionError)


_EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
_DELETE = {"KV-Operation": "DEL"}
_MSG_TTL = "Nats-TTL"


class StateConflict(EventBusError):
    """Another writer changed the key since we read it: re-read and decide again."""


class StateTooLarge(EventBusError):
    """A value is larger than the server accepts (max_payload)."""


@dataclass(frozen=True, slots=True)
class KvEntry:
    """One current value of a key (``deleted`` for a delete/purge marker)."""

    key: str
    value: bytes
    revision: int
    created: datetime | None
    deleted: bool = False


async def translated(aw: Awaitable[T], what: str) -> T:
    """Await a NATS call; any client error becomes EventBusError naming ``what``."""
    try:
        return await aw
    except KeyWrongLastSequenceError as err:
        raise StateConflict(f"{what}: revision is stale") from err
    except nats.errors.MaxPayloadError as err:
        raise StateTooLarge(f"{what}: value exceeds the server's max payload") from err
    except EventBusError:
        raise
    except NATS_ERRORS as err:
        raise EventBusError(f"{what}: {type(err).__name__}: {err}".rstrip(": ")) from err


class StateStore:
    """JSON values by key with revisions; ``put(..., revision=r)`` fails if the key moved on.

    Revision 0 means "the key must not exist yet", so two processes racing to store the
    first state of a trigger cannot both win.
    """

    def __init__(self, kv: KeyValue, bucket: str, js: JetStreamContext | None = None,
                 pipeline: Pipeline | None = None) -> None:
        self._kv = kv
        self._js = js
        self._pipeline = pipeline
        self.bucket = bucket
        self.created = False
        """``open`` created the bucket: it held nothing then (what another process wrote since is
        what a read a moment earlier would have missed too)."""
        self.expiring_markers = False
        """The server removes a delete marker by itself once the lifetime it was written with
        is over (per-message TTL, NATS 2.11 and later, enabled on the bucket's stream by
        ``open``): :meth:`delete_many` with ``ttl`` then needs no purge request later."""

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, history: int = 1, replicas: int = 1,
                   pipeline: Pipeline | None = None, msg_ttl: bool = False) -> StateStore:
        """Open the bucket, creating it with ``replicas`` copies (as the event stream: on a
        cluster, the state must survive the loss of a node just as the events do; a single
        server falls back to one). ``msg_ttl`` (the server is 2.11 or newer): make sure the
        bucket's stream accepts per-message TTLs (:attr:`expiring_markers`)."""
        created = False

        async def _open() -> KeyValue:
            nonlocal created
            try:
                return await js.key_value(bucket)
            except BucketNotFoundError:
                pass
            try:
                kv = await js.create_key_value(bucket=bucket, history=history, replicas=replicas)
            except APIError as err:
                if replicas > 1 and "replicas" in str(err).lower():
                    kv = await js.create_key_value(bucket=bucket, history=history, replicas=1)
                else:
                    raise
            created = True
            return kv

        store = cls(await translated(_open(), f"KV bucket {bucket}"), bucket, js, pipeline)
        store.created = created
        if msg_ttl:
            store.expiring_markers = await _allow_msg_ttl(js, f"KV_{bucket}")
        return store

    # ---------------------------------------------------------------- raw bytes

    async def get_raw(self, key: str) -> tuple[bytes | None, int]:
        """``(value, revision)``; ``(None, 0)`` when the key is absent or deleted."""
        try:
            entry = await translated(self._get(key), f"KV get {self.bucket}/{key}")
        except KeyError:
            return None, 0
        if entry.value is None or entry.operation in ("DEL", "PURGE"):
            return None, 0
        return entry.value, entry.revision or 0

    async def _get(self, key: str) -> Any:
        try:
            return await self._kv.get(key)
        except (KeyNotFoundError, KeyDeletedError) as err:
            raise KeyError(key) from err

    async def seen(self, key: str) -> bool:
        """True when the key has a value or a delete marker (a tombstone) in the bucket."""
        try:
            await translated(self._get(key), f"KV get {self.bucket}/{key}")
        except KeyError as err:
            cause = err.__cause__
            # nats-py raises KeyDeletedError for a marker, or (newer releases) KeyNotFoundError
            # carrying the marker's operation
            return isinstance(cause, KeyDeletedError) or getattr(cause, "op", None) in ("DEL", "PURGE")
        return True

    async def put_raw(self, key: str, data: bytes, revision: int | None = None) -> int:
        """Store bytes; with ``revision`` only if the key is still at it (0: must not exist)."""
        what = f"KV put {self.bucket}/{key}"
        if revision is None:
            return await translated(self._kv.put(key, data), what)
        if revision == 0:
            return await translated(self._kv.create(key, data), what)
        return await translated(self._kv.update(key, data, last=revision), what)

    async def put_many(self, items: list[tuple[str, bytes, int | None]]) -> list[int | BaseException]:
        """:meth:`put_raw` for many ``(key, data, revision)`` at once: one result per item,
        the new revision or the error (:class:`StateConflict`, :class:`EventBusError`), never
        raised. The writes go out together and are confirmed together (see ``pipeline.py``);
        each is still checked against its own revision."""
        if self._pipeline is None:
            return list(await asyncio.gather(*(self.put_raw(k, d, r) for k, d, r in items), return_exceptions=True))
        requests = [(self._subject(k), d, {_EXPECTED_LAST: str(r)} if r is not None else None) for k, d, r in items]
        results = await self._pipeline.publish(requests)
        for i, ((key, data, rev), res) in enumerate(zip(items, results, strict=True)):
            if rev == 0 and isinstance(res, StateConflict):
                # the key may hold a delete marker, which "must not exist yet" accepts (as nats-py's create)
                try:
                    results[i] = await self.put_raw(key, data, 0)
                except EventBusError as err:
                    results[i] = err
        return results

    async def delete_many(self, keys: list[str], confirm_each: bool = True,
                          ttl: float | None = None) -> list[BaseException | None]:
        """:meth:`delete` for many keys at once (each leaves its marker): None or the error per key.

        ``confirm_each=False`` waits for the server's confirmation of the last delete only
        (``Pipeline.publish_in_order``): for deletes whose loss costs a repetition, not a
        wrong result. An error then counts for every key. ``ttl`` (seconds, with
        :attr:`expiring_markers` only) is how long the server keeps each marker."""
        headers = _DELETE
        if ttl is not None:
            if not self.expiring_markers:
                raise ValueError(f"KV bucket {self.bucket}: the server does not expire markers (NATS < 2.11)")
            headers = {**_DELETE, _MSG_TTL: str(max(1, math.ceil(ttl)))}  # whole seconds, never shorter
        if self._pipeline is None:
            if ttl is None:
                return list(await asyncio.gather(*(self.delete(k) for k in keys), return_exceptions=True))
            assert self._js is not None
            sent = await asyncio.gather(
                *(translated(self._js.publish(self._subject(k), b"", headers=headers), f"KV delete {self.bucket}/{k}")
                  for k in keys), return_exceptions=True)
            return [r if isinstance(r, BaseException) else None for r in sent]
        requests = [(self._subject(k), b"", headers) for k in keys]
        if not confirm_each:
            err = await self._pipeline.publish_in_order(requests)
            return [err] * len(keys)
        results = await self._pipeline.publish(requests)
        return [r if isinstance(r, BaseException) else None for r in results]

    def _subject(self, key: str) -> str:
        return f"$KV.{self.bucket}.{key}"

    async def delete(self, key: str, revision: int | None = None) -> None:
        """Delete, leaving a marker (a tombstone with a timestamp) that :meth:`scan` reports."""
        await translated(self._kv.delete(key, last=revision), f"KV delete {self.bucket}/{key}")

    async def erase(self, key: str, revision: int | None = None) -> None:
        """Remove every message of a key, marker included (no tombstone left behind).

        With ``revision``, only messages up to it go: a value written since (by another
        process) stays, so erasing what one read never destroys a newer write."""
        if self._js is None:
            await self.delete(key, revision)
            return
        subject = f"$KV.{self.bucket}.{key}"
        await translated(self._js.purge_stream(f"KV_{self.bucket}", subject=subject,
                                               seq=revision + 1 if revision else None),
                         f"KV erase {self.bucket}/{key}")

    async def erase_many(self, keys: list[str]) -> list[BaseException | None]:
        """:meth:`erase` for many keys at once (no revision bound): None or the error per key.

        One purge request per key still (JetStream purges one subject filter a request), but
        sent together through the pipeline and answered on one reply subscription: a third of
        the client's CPU of one ``purge_stream`` call each (a sensor erases its finished journal
        chunks so)."""
        if self._pipeline is None or self._js is None:
            return list(await asyncio.gather(*(self.erase(k) for k in keys), return_exceptions=True))
        api = f"{getattr(self._js, '_prefix', '$JS.API')}.STREAM.PURGE.KV_{self.bucket}"
        requests = [(api, json.dumps({"filter": self._subject(k)}).encode(), None) for k in keys]
        out: list[BaseException | None] = []
        for key, reply in zip(keys, await self._pipeline.send(requests), strict=True):
            if isinstance(reply, BaseException):
                out.append(reply)
                continue
            try:
                resp = json.loads(reply.data)
            except ValueError:
                resp = None
            if isinstance(resp, dict) and resp.get("success") is True:
                out.append(None)
            else:
                err = resp.get("error") if isinstance(resp, dict) else None
                what = err.get("description", err) if isinstance(err, dict) else reply.data[:80]
                out.append(EventBusError(f"KV erase {self.bucket}/{key}: {what}"))
        return out

    async def scan(self, prefix: str = ">", values: bool = True, timeout: float = 10.0) -> AsyncIterator[KvEntry]:
        """Every current key under ``prefix`` (``"s.>"``), markers included, in one pass."""
        watcher = await translated(self._kv.watch(prefix, meta_only=not values), f"KV scan {self.bucket}/{prefix}")
        seen_any = False
        try:
            while True:
                try:
                    entry = await watcher.updates(timeout=timeout)
                    if entry is None and not seen_any and await self._delivered_anyway(watcher):
                        continue  # the entries are on their way: the last one says when it is over
                except NATS_ERRORS as err:
                    raise EventBusError(f"KV scan {self.bucket}/{prefix}: {type(err).__name__}") from err
                if entry is None:
                    return
                seen_any = True
                yield KvEntry(entry.key, entry.value or b"", entry.revision or 0,
                              getattr(entry, "created", None), entry.operation in ("DEL", "PURGE"))
                if not entry.delta:
                    return
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()

    @staticmethod
    async def _delivered_anyway(watcher: Any) -> bool:
        """nats-py's watcher says "no keys" when its consumer reported nothing pending before
        its callback had handled a message: both are true while delivered messages still wait
        for the callback (seen right after a KV leader change), and a start would then load
        no journal. The consumer's own count of what it delivered settles it."""
        info = await watcher._sub.consumer_info()
        return bool(info.delivered and info.delivered.consumer_seq)

    # ---------------------------------------------------------------- JSON

    async def get(self, key: str) -> tuple[Any, int]:
        data, rev = await self.get_raw(key)
        return (json.loads(data), rev) if data is not None else (None, 0)

    async def put(self, key: str, value: Any, revision: int | None = None) -> int:
        """Store ``value`` as JSON; with ``revision`` only if the key is still at it. Returns the new revision."""
        return await self.put_raw(key, json.dumps(value, separators=(",", ":")).encode(), revision)

    async def keys(self) -> list[str]:
        return [e.key async for e in self.scan(">", values=False) if not e.deleted]


async def _allow_msg_ttl(js: JetStreamContext, stream: str) -> bool:
    """Turn on per-message TTLs on a bucket's stream (nats-py creates new buckets with them;
    a bucket made on an older server has them off). True once the server says they are on;
    False when it refuses (a cluster node older than 2.11, no permission): markers are then
    purged one by one, as before."""
    try:
        info = await js.stream_info(stream)
        if info.config.allow_msg_ttl:
            return True
        updated = await js.update_stream(dataclasses.replace(info.config, allow_msg_ttl=True))
        return bool(updated.config.allow_msg_ttl)
    except NATS_ERRORS as err:
        log.info("stream %s: per-message TTLs not available (%s); delete markers stay until purged", stream, err)
        return False
