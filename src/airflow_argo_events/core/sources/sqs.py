"""Argo's sqs event source (aiobotocore): long-poll a queue; delete each message once the bus has it.

Payload (``SQSEventData``): ``{"messageId", "messageAttributes", "body", "metadata"}``.
``messageAttributes`` keeps the shape aws-sdk-go v1 gives it in Argo (Go field names:
``{"BinaryListValues", "BinaryValue", "DataType", "StringListValues", "StringValue"}``,
binary values base64); ``body`` is base64 (Go's ``[]byte``) or, with ``jsonBody``, the JSON.

As in Argo: up to 10 messages a receive, ``waitTimeSeconds`` (default 3) of long polling,
a 120 s visibility timeout, and a message whose body is not JSON under ``jsonBody`` is
deleted, or left for the queue's redrive policy when ``dlq`` is set. Unlike Argo, the
event id is derived from the MessageId, so a message delivered twice (a crash between
publish and delete) is stored once on the bus.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.sources.aws import client_args
from airflow_argo_events.core.sources.base import Source, SourceEvent, with_metadata
from airflow_argo_events.core.sources.queues import Backoff

log = logging.getLogger("airflow_argo_events.sources")

MAX_MESSAGES = 10
VISIBILITY_TIMEOUT = 120
DEFAULT_WAIT = 3


def go_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """One message attribute as aws-sdk-go v1's MessageAttributeValue marshals to JSON."""

    def b64(v: Any) -> Any:
        return None if v is None else base64.b64encode(v).decode()

    binary_list = value.get("BinaryListValues")
    string_list = value.get("StringListValues")
    return {"BinaryListValues": [b64(v) for v in binary_list] if binary_list else None,
            "BinaryValue": b64(value.get("BinaryValue")),
            "DataType": value.get("DataType"),
            "StringListValues": list(string_list) if string_list else None,
            "StringValue": value.get("StringValue")}


class SQSSource(Source):
    type = "sqs"

    @property
    def where(self) -> str:
        return f"spec.sqs.{self.cfg.name}"

    async def events(self) -> AsyncIterator[SourceEvent]:
        from aiobotocore.session import get_session
        from botocore.exceptions import BotoCoreError, ClientError

        session = get_session()
        backoff = Backoff()
        while True:
            try:
                args = await client_args(self.spec, self.ctx.secrets, self.where, self.cfg.source, session)
                async with session.create_client("sqs", **args) as sqs:
                    queue: dict[str, Any] = {"QueueName": self.spec.queue}
                    if self.spec.queue_account_id:
                        queue["QueueOwnerAWSAccountId"] = self.spec.queue_account_id
                    url = (await sqs.get_queue_url(**queue))["QueueUrl"]
                    backoff.reset()
                    async for ev in self._poll(sqs, url):
                        yield ev
            except asyncio.CancelledError:
                raise
            except SpecError:
                raise
            except (BotoCoreError, ClientError, OSError, asyncio.TimeoutError) as err:
                # expired session tokens included: the next round reads the secrets again (Argo does the same)
                await backoff.wait(self.label, err)

    async def _poll(self, sqs: Any, url: str) -> AsyncIterator[SourceEvent]:
        s = self.spec
        while True:
            reply = await sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=MAX_MESSAGES, VisibilityTimeout=VISIBILITY_TIMEOUT,
                WaitTimeSeconds=s.wait_time_seconds or DEFAULT_WAIT, AttributeNames=["SentTimestamp"],
                MessageAttributeNames=["All"])
            handed: list[tuple[dict[str, Any], asyncio.Future[bool]]] = []
            done: list[dict[str, Any]] = []
            for m in reply.get("Messages", []):
                payload = self._payload(m)
                if payload is None:  # not JSON under jsonBody: Argo deletes it, or leaves it for the DLQ
                    log.warning("%s: message %s is not JSON (jsonBody); %s", self.label, m["MessageId"],
                                "left for the queue's dead-letter queue" if s.dlq else "deleted")
                    if not s.dlq:
                        done.append(m)
                    continue
                ev = SourceEvent(with_metadata(payload, self), id=self._event_id(m["MessageId"])).expect_ack()
                yield ev
                assert ev.published is not None
                handed.append((m, ev.published))
            # the whole batch is in the runtime's hands: now wait for the bus, then delete what it has
            for m, fut in handed:
                try:
                    if await fut:
                        done.append(m)
                except Exception:  # noqa: BLE001 - never storable (logged by the runtime); as Argo, it stays
                    if not s.dlq:  # without a DLQ it would come back forever
                        done.append(m)
            if done:
                await self._delete(sqs, url, done)

    async def _delete(self, sqs: Any, url: str, messages: list[dict[str, Any]]) -> None:
        reply = await sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
        for failed in reply.get("Failed", []):  # it comes back after the visibility timeout; the bus dedups it
            log.warning("%s: could not delete message %s: %s", self.label, messages[int(failed["Id"])]["MessageId"],
                        failed.get("Message") or failed.get("Code"))

    def _payload(self, m: dict[str, Any]) -> dict[str, Any] | None:
        raw = m.get("Body", "")
        body: Any
        if self.spec.json_body:
            try:
                body = json.loads(raw)
            except ValueError:
                return None
        else:
            body = base64.b64encode(raw.encode()).decode()
        attributes = m.get("MessageAttributes")  # Go's nil map marshals as null
        return {"messageId": m["MessageId"],
                "messageAttributes": {k: go_attribute(v) for k, v in attributes.items()} if attributes else None,
                "body": body}

    def _event_id(self, message_id: str) -> str:
        return hashlib.sha256(f"{self.cfg.source}/{self.cfg.name}/{message_id}".encode()).hexdigest()[:32]


SOURCES = {"sqs": SQSSource}
