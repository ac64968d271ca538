"""What every event source shares: the raw event, the context, the base class and the registry.

A source knows nothing of the bus: it yields ``SourceEvent``s whose payload has the shape
of Argo's ``event-data.go`` for its type. ``adaptor.to_event`` turns them into CloudEvents
exactly as Argo's ``eventing.go`` does, and the runtime publishes them. A source that must
answer its caller only after the bus has the event (webhook) awaits ``SourceEvent.published``.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_argo_events.core.secrets import Secrets
from airflow_argo_events.core.spec.eventsource import EventConfig


@dataclass
class SourceEvent:
    payload: dict[str, Any]
    time: datetime | None = None
    id: str | None = None
    """A deterministic id when the source has one (so a re-emitted event is de-duplicated)."""
    published: asyncio.Future[bool] | None = field(default=None, repr=False)
    """Resolved by the runtime: True once the bus acknowledged the event, False if it was not stored
    (retry), or an exception when it can never be (too large for the bus, a bug)."""

    def expect_ack(self) -> SourceEvent:
        self.published = asyncio.get_running_loop().create_future()
        return self


@dataclass
class SourceContext:
    """Services a source may need."""

    secrets: Secrets = field(default_factory=Secrets)
    state_get: Callable[[str], Awaitable[Any]] | None = None
    state_put: Callable[[str, Any], Awaitable[None]] | None = None
    """Small persistent state (calendar catch-up), kept in the bus's KV by the runtime."""
    health: Callable[[], str | None] | None = None
    """None while the runtime can publish events, else why not (a webhook's ``/health`` answers 503)."""


class Source(ABC):
    """One event of an EventSource manifest, as an async iterator of SourceEvents."""

    type = ""
    concurrent = False
    """True when the source's events have no order among themselves (each HTTP request is
    its own caller): the runtime then publishes several at once. Queue-like sources keep
    False, so their events reach the bus one at a time, in the order they were read."""

    def __init__(self, cfg: EventConfig, ctx: SourceContext | None = None) -> None:
        self.cfg = cfg
        self.spec = cfg.spec
        self.ctx = ctx or SourceContext()

    @property
    def label(self) -> str:
        return f"{self.cfg.source}/{self.cfg.name} ({self.type})"

    @abstractmethod
    def events(self) -> AsyncIterator[SourceEvent]: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def metadata(self) -> dict[str, str] | None:
        return getattr(self.spec, "metadata", None) or None


def with_metadata(payload: dict[str, Any], source: Source) -> dict[str, Any]:
    meta = source.metadata()
    if meta:
        payload["metadata"] = dict(meta)
    return payload


def source_class(type_name: str) -> type[Source]:
    """The Source class for an Argo event source type (imports its module lazily)."""
    from importlib import import_module

    modules = {"webhook": "webhook", "calendar": "calendar", "file": "file", "hdfs": "hdfs", "nats": "nats",
               "amqp": "amqp", "mqtt": "mqtt", "redis": "redis", "redisStream": "redis", "kafka": "kafka",
               "sqs": "sqs", "sns": "sns", "github": "github", "gitlab": "gitlab", "slack": "slack",
               "stripe": "stripe", "bitbucketserver": "bitbucketserver", "bitbucket": "bitbucket", "prefect": "prefect",
               "resource": "resource", "sftp": "sftp", "generic": "generic"}
    if type_name not in modules:
        raise NotImplementedError(f"event source type {type_name!r} is not supported by airflow-argo-events; "
                                  f"supported: {', '.join(sorted(modules))}")
    module = import_module(f"airflow_argo_events.core.sources.{modules[type_name]}")
    return module.SOURCES[type_name]  # type: ignore[no-any-return]
