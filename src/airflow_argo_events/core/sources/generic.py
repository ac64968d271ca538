"""Argo's generic event source: a gRPC server of your own streams the events (grpc.aio).

The protocol is Argo's ``Eventing`` service, one server-streaming call::

    package generic;
    service Eventing { rpc StartEventSource(EventSource) returns (stream Event); }
    message EventSource { string name = 1; bytes config = 2; }   // the event's name, `config` as written
    message Event       { string name = 1; bytes payload = 2; }

The two messages are built here from descriptors with protobuf's runtime, so no generated
code is shipped. The source dials ``url`` (plaintext with ``insecure: true``, else TLS with
gRPC's default roots), calls ``StartEventSource`` with the event's name and ``config``
(plus ``authorization: Bearer <authSecret>`` metadata when set) and turns every ``Event``
into ``{"body": <payload>, "metadata": {...}}``: the payload as base64 (Go's ``[]byte``),
or as JSON with ``jsonBody``. ``Event.name`` is ignored, as in Argo. When the stream ends
or fails, the source calls again with backoff (Argo: every 5 s).

The protocol has no acknowledgement: an event the server sent is gone from its side.
Events wait for the bus in the runtime's bounded buffer; while it is full the stream is
not read, so gRPC's flow control holds the server back.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.limits import InputLimitError, loads_strict
from airflow_argo_events.core.secrets import SecretNotFound
from airflow_argo_events.core.sources.base import Source, SourceEvent, with_metadata
from airflow_argo_events.core.sources.queues import Backoff

log = logging.getLogger("airflow_argo_events.sources")

METHOD = "/generic.Eventing/StartEventSource"


@functools.lru_cache(maxsize=1)
def messages() -> tuple[Any, Any]:
    """The protocol's (EventSource, Event) message classes, from descriptors in a pool of their own."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="argo_events/generic.proto", package="generic", syntax="proto3")
    for message, second in (("EventSource", "config"), ("Event", "payload")):
        m = proto.message_type.add(name=message)
        m.field.add(name="name", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL, json_name="name")
        m.field.add(name=second, number=2, type=f.TYPE_BYTES, label=f.LABEL_OPTIONAL, json_name=second)
    proto.service.add(name="Eventing").method.add(
        name="StartEventSource", input_type=".generic.EventSource", output_type=".generic.Event", server_streaming=True)
    pool = descriptor_pool.DescriptorPool()  # not the default pool: another "generic" package may live there
    pool.Add(proto)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("generic.EventSource")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("generic.Event")))


class StreamEnded(Exception):
    """The server closed the stream without an error; the source calls again."""


class GenericSource(Source):
    type = "generic"

    @property
    def where(self) -> str:
        return f"spec.generic.{self.cfg.name}"

    def _metadata(self) -> list[tuple[str, str]]:
        if self.spec.auth_secret is None:
            return []
        try:
            token = self.ctx.secrets.get(self.spec.auth_secret, f"{self.where}.authSecret")
        except SecretNotFound as err:  # it names the field: end the run with that one line
            raise SpecError([("", str(err))], source=self.cfg.source) from None
        return [("authorization", f"Bearer {token}")]

    def _channel(self) -> Any:
        import grpc

        if self.spec.insecure:
            return grpc.aio.insecure_channel(self.spec.url)
        return grpc.aio.secure_channel(self.spec.url, grpc.ssl_channel_credentials())

    def payload(self, data: bytes) -> dict[str, Any] | None:
        """Argo's GenericEventData; None when ``jsonBody`` is set and the payload is not JSON (Argo drops it)."""
        if not self.spec.json_body:
            return with_metadata({"body": base64.b64encode(data).decode()}, self)
        try:
            body = loads_strict(data)
        except InputLimitError as err:
            log.warning("%s: an event's payload is not JSON (jsonBody): %s; dropped", self.label, err)
            return None
        return with_metadata({"body": body}, self)

    async def events(self) -> AsyncIterator[SourceEvent]:
        import grpc

        request_cls, event_cls = messages()
        request = request_cls(name=self.cfg.name, config=self.spec.config.encode())
        backoff = Backoff()
        while True:
            try:
                metadata = self._metadata()
                async with self._channel() as channel:
                    call = channel.unary_stream(METHOD, request_serializer=request_cls.SerializeToString,
                                                response_deserializer=event_cls.FromString)(request, metadata=metadata)
                    try:
                        async for message in call:
                            backoff.reset()
                            payload = self.payload(message.payload)
                            if payload is not None:
                                yield SourceEvent(payload)
                    finally:
                        call.cancel()
                raise StreamEnded("the server ended the stream")
            except asyncio.CancelledError:
                raise
            except SpecError:
                raise
            except grpc.aio.AioRpcError as err:
                await backoff.wait(self.label, _RpcFailed(f"{err.code().name}: {err.details()}"))
            except (StreamEnded, OSError) as err:
                await backoff.wait(self.label, err)


class _RpcFailed(Exception):
    """A gRPC status, as one line for the reconnect warning."""


SOURCES = {"generic": GenericSource}
