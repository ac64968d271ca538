"""Sensor state in a JetStream key/value bucket, written with compare-and-set."""

from __future__ import annotations

import json
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from airflow_argo_events.core.exceptions import EventBusError


class StateConflict(EventBusError):
    """Another writer changed the key since we read it: re-read and decide again."""


class StateStore:
    """JSON values by key with revisions; ``put(..., revision=r)`` fails if the key moved on.

    Revision 0 means "the key must not exist yet", so two processes racing to store the
    first state of a trigger cannot both win.
    """

    def __init__(self, kv: KeyValue, bucket: str) -> None:
        self._kv = kv
        self.bucket = bucket

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, history: int = 1) -> StateStore:
        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kv = await js.create_key_value(bucket=bucket, history=history)
        return cls(kv, bucket)

    async def get(self, key: str) -> tuple[Any, int]:
        """``(value, revision)``; ``(None, 0)`` when the key is absent or deleted."""
        try:
            entry = await self._kv.get(key)
        except (KeyNotFoundError, KeyDeletedError):
            return None, 0
        if entry.value is None or entry.operation in ("DEL", "PURGE"):
            return None, 0
        return json.loads(entry.value), entry.revision or 0

    async def put(self, key: str, value: Any, revision: int | None = None) -> int:
        """Store ``value``; with ``revision`` only if the key is still at it. Returns the new revision."""
        data = json.dumps(value, separators=(",", ":")).encode()
        try:
            if revision is None:
                return await self._kv.put(key, data)
            if revision == 0:
                return await self._kv.create(key, data)
            return await self._kv.update(key, data, last=revision)
        except KeyWrongLastSequenceError as err:
            raise StateConflict(f"KV {self.bucket}/{key}: revision {revision} is stale") from err

    async def delete(self, key: str) -> None:
        await self._kv.delete(key)

    async def keys(self) -> list[str]:
        try:
            return list(await self._kv.keys())
        except Exception as err:  # nats-py raises NoKeysError, a plain Error subclass
            if "no keys" in str(err).lower():
                return []
            raise
