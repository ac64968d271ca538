"""The JetStream stream behind an EventBus, created only when absent (as Argo does)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext, api
from nats.js.errors import APIError, NotFoundError

from airflow_argo_events.core.exceptions import EventBusError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamSettings:
    """Argo's default JetStream stream: ``default``, subjects ``default.>``.

    Defaults follow Argo's EventBus (maxMsgs 50000, maxAge 168h, duplicates 300 s,
    limits retention, discard old). Replicas fall back to 1 on a single server.
    """

    name: str = "default"
    max_msgs: int = 50_000
    max_age_seconds: float = 168 * 3600
    max_bytes: int = -1
    replicas: int = 3
    duplicate_window_seconds: float = 300.0

    @property
    def subjects(self) -> str:
        return f"{self.name}.>"

    def subject(self, event_source: str, event_name: str) -> str:
        """``<stream>.<eventSourceName>.<eventName>``, Argo's subject for one event."""
        return f"{self.name}.{event_source}.{event_name}"


async def ensure_stream(js: JetStreamContext, settings: StreamSettings) -> api.StreamInfo:
    """Create the stream if absent; never delete, shrink or re-type an existing one."""
    try:
        info = await js.stream_info(settings.name)
    except NotFoundError:
        return await _create(js, settings)
    cfg = info.config
    if cfg.retention == api.RetentionPolicy.WORK_QUEUE:
        raise EventBusError(
            f"stream {settings.name!r} has WorkQueue retention: sensors need Limits retention "
            "(several consumers read each event); recreate the stream"
        )
    subjects = list(cfg.subjects or [])
    if settings.subjects not in subjects:
        cfg.subjects = [*subjects, settings.subjects]
        info = await js.update_stream(cfg)
        log.info("stream %s: added subjects %s", settings.name, settings.subjects)
    return info


async def _create(js: JetStreamContext, settings: StreamSettings) -> api.StreamInfo:
    def config(replicas: int) -> api.StreamConfig:
        return api.StreamConfig(
            name=settings.name,
            subjects=[settings.subjects],
            retention=api.RetentionPolicy.LIMITS,
            discard=api.DiscardPolicy.OLD,
            max_msgs=settings.max_msgs,
            max_age=settings.max_age_seconds,
            max_bytes=settings.max_bytes,
            num_replicas=replicas,
            duplicate_window=settings.duplicate_window_seconds,
            storage=api.StorageType.FILE,
        )

    try:
        return await js.add_stream(config(settings.replicas))
    except APIError as err:
        if settings.replicas > 1 and "replicas" in str(err).lower():
            log.info("stream %s: single server, creating with 1 replica", settings.name)
            return await js.add_stream(config(1))
        raise EventBusError(f"stream {settings.name!r}: cannot create ({err})") from err
