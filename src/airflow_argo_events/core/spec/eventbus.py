"""Argo's ``EventBus`` manifest (JetStream flavours), and the stream it implies.

>>> bus = EventBus.model_validate({"apiVersion": "argoproj.io/v1alpha1", "kind": "EventBus",
...     "metadata": {"name": "default"}, "spec": {"jetstream": {"version": "2.9.6"}}})
>>> bus.stream_settings().name
'default'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import Field, model_validator

from airflow_argo_events.core.spec.base import ArgoModel, ObjectMeta, OpenModel, SecretKeySelector
from airflow_argo_events.core.spec.durations import parse_duration

if TYPE_CHECKING:  # the bus package brings the NATS client: imported when a bus is used, not to validate
    from airflow_argo_events.core.bus.settings import NatsSettings
    from airflow_argo_events.core.bus.stream import StreamSettings


class JetStreamBus(OpenModel):
    """``spec.jetstream``: Argo runs the NATS StatefulSet; we only read stream settings.

    The Kubernetes deployment fields (containerTemplate, persistence, affinity, ...) are
    accepted and ignored: outside Kubernetes, NATS is yours to run.
    """

    version: str | None = None
    replicas: int | None = Field(None, description="NATS replicas; also the stream's replicas.")
    stream_config: str | None = Field(None, description="YAML: maxMsgs, maxAge, maxBytes, replicas, duplicates.")
    settings: str | None = None
    max_payload: str | None = None


class JetStreamExotic(ArgoModel):
    """``spec.jetstreamExotic``: an existing NATS JetStream deployment."""

    url: str = Field(description="NATS URL, e.g. nats://nats.example:4222.")
    access_secret: SecretKeySelector | None = Field(None, description="Secret holding the credentials.")
    stream_config: str | None = None
    tls: dict[str, Any] | None = None


class EventBusSpec(ArgoModel):
    jetstream: JetStreamBus | None = None
    jetstream_exotic: JetStreamExotic | None = None
    nats: dict[str, Any] | None = Field(None, description="NATS Streaming (STAN): accepted, not supported.")
    kafka: dict[str, Any] | None = Field(None, description="Kafka bus: accepted, not supported.")

    @model_validator(mode="after")
    def _one_kind(self) -> EventBusSpec:
        kinds = [k for k in ("jetstream", "jetstream_exotic", "nats", "kafka") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("exactly one of jetstream, jetstreamExotic, nats, kafka must be set")
        return self


class EventBus(ArgoModel):
    """An Argo EventBus manifest."""

    api_version: str = Field("argoproj.io/v1alpha1", alias="apiVersion")
    kind: Literal["EventBus"] = "EventBus"
    metadata: ObjectMeta
    spec: EventBusSpec
    status: dict[str, Any] | None = None

    def _stream_config(self) -> str | None:
        js = self.spec.jetstream or self.spec.jetstream_exotic
        return js.stream_config if js else None

    def stream_settings(self) -> StreamSettings:
        """The stream this bus uses: Argo's defaults, overridden by ``streamConfig``."""
        from airflow_argo_events.core.bus.stream import StreamSettings

        base = StreamSettings()
        cfg = yaml.safe_load(self._stream_config() or "") or {}
        replicas = cfg.get("replicas")
        if replicas is None and self.spec.jetstream and self.spec.jetstream.replicas:
            replicas = self.spec.jetstream.replicas
        return StreamSettings(
            name=base.name,
            max_msgs=int(cfg.get("maxMsgs", base.max_msgs)),
            max_age_seconds=parse_duration(cfg["maxAge"]) if "maxAge" in cfg else base.max_age_seconds,
            max_bytes=int(cfg.get("maxBytes", base.max_bytes)),
            replicas=int(replicas or base.replicas),
            duplicate_window_seconds=(
                parse_duration(cfg["duplicates"]) if "duplicates" in cfg else base.duplicate_window_seconds
            ),
        )

    def nats_settings(self) -> NatsSettings | None:
        """Servers for ``jetstreamExotic``; None for a bus Argo would run itself."""
        if self.spec.jetstream_exotic is None:
            return None
        from airflow_argo_events.core.bus.settings import NatsSettings

        return NatsSettings.from_url(self.spec.jetstream_exotic.url).with_label(f"EventBus {self.metadata.name}")
