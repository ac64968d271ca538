"""Argo's sns event source: an HTTP endpoint (the webhook server) subscribed to an SNS topic.

On start the endpoint ``webhook.url + webhook.endpoint`` is subscribed to ``topicArn``
(protocol http or https from the URL); a ``SubscriptionConfirmation`` is confirmed with
``ConfirmSubscription``; each ``Notification`` becomes an event and SNS gets 200 only once
the bus stored it (SNS retries otherwise); on stop the subscription is removed.

Payload (``SNSEventData``): ``{"header": {name: [values]}, "body": <the SNS message JSON>,
"metadata"}``. The event id derives from the SNS MessageId, so a retried delivery is
stored once. With ``validateSignature`` the message's signature is checked against the
certificate at ``SigningCertURL`` (an https URL on ``sns.<region>.amazonaws.com``, as Argo
requires; fetched from ``endpoint`` instead when one is set), for SignatureVersion 1
(SHA1, the only one Argo checks) and 2 (SHA256).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.sources.aws import client_args
from airflow_argo_events.core.sources.base import SourceEvent, with_metadata
from airflow_argo_events.core.sources.webhook import (
    DEFAULT_MAX_PAYLOAD,
    MASKED_AUTH,
    BodyTooLarge,
    WebhookSource,
    event_id,
    read_body,
)
from airflow_argo_events.core.spec.eventsource import WebhookEventSource

log = logging.getLogger("airflow_argo_events.sources.sns")

CERT_HOST = re.compile(r"^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$")
SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
MAX_CERT_BYTES = 65 * 1024
CERT_CACHE = 16


def string_to_sign(msg: dict[str, Any]) -> bytes:
    """AWS's canonical form: ``key\\nvalue\\n`` for each signed key present, in this order."""
    out = []
    for key in SIGNED_KEYS.get(str(msg.get("Type")), ()):
        value = msg.get(key)
        if isinstance(value, str) and value:
            out.append(f"{key}\n{value}\n")
    return "".join(out).encode()


class SNSSource(WebhookSource):
    type = "sns"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sns = self.cfg.spec
        # the webhook server reads port, endpoint, method, limits and TLS from ``spec``
        self.spec = WebhookEventSource.model_validate(self.sns.webhook.dump() if self.sns.webhook else {})
        self.subscription_arn: str | None = None
        self._certs: OrderedDict[str, Any] = OrderedDict()

    @property
    def _where(self) -> str:
        return f"spec.sns.{self.cfg.name}.webhook"

    def metadata(self) -> dict[str, str] | None:
        return self.sns.metadata or None

    def _client(self, session: Any, args: dict[str, Any]) -> Any:
        return session.create_client("sns", **args)

    async def events(self) -> AsyncIterator[SourceEvent]:
        from aiobotocore.session import get_session

        if not self.spec.url:
            raise SpecError([(f"{self._where}.url", "is required: the public URL SNS posts to")],
                            source=self.cfg.source)
        session = get_session()
        self._args = await client_args(self.sns, self.ctx.secrets, f"spec.sns.{self.cfg.name}", self.cfg.source,
                                       session)
        self._session = session
        subscriber = asyncio.create_task(self._subscribe_when_listening())
        try:
            async for ev in super().events():
                yield ev
        finally:
            subscriber.cancel()
            await asyncio.gather(subscriber, return_exceptions=True)
            await self._unsubscribe()

    async def _subscribe_when_listening(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        while self._server is None:  # super().events() starts the server on its first step
            await asyncio.sleep(0.05)
        url = self.spec.url.rstrip("/") + self.spec.endpoint
        pause = 1.0
        while True:
            try:
                async with self._client(self._session, self._args) as sns:
                    reply = await sns.subscribe(TopicArn=self.sns.topic_arn, Endpoint=url,
                                                Protocol="https" if url.startswith("https://") else "http",
                                                ReturnSubscriptionArn=True)
                arn = reply.get("SubscriptionArn", "")
                if arn and arn != "pending confirmation":
                    self.subscription_arn = arn
                log.info("sns %s: subscribed %s to %s", self.label, url, self.sns.topic_arn)
                return
            except (BotoCoreError, ClientError, OSError) as err:
                log.warning("sns %s: subscribe to %s failed: %s; retrying in %.0fs", self.label, self.sns.topic_arn,
                            err, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 60.0)

    async def _unsubscribe(self) -> None:
        arn, self.subscription_arn = self.subscription_arn, None
        if arn is None:
            return
        try:
            async with self._client(self._session, self._args) as sns:
                await asyncio.wait_for(sns.unsubscribe(SubscriptionArn=arn), 10)
            log.info("sns %s: unsubscribed %s", self.label, arn)
        except Exception as err:  # noqa: BLE001 - stopping goes on; SNS drops the endpoint after failed deliveries
            log.warning("sns %s: unsubscribe %s failed: %s", self.label, arn, err)

    async def _handle(self, request: web.Request) -> web.Response:
        if request.method.upper() != self.spec.method.upper():
            return self._refuse(400, f"method {request.method} not allowed, use {self.spec.method}")
        limit = self.spec.max_payload_size or DEFAULT_MAX_PAYLOAD
        try:
            body = await asyncio.wait_for(read_body(request.content, limit), self.limits.read_timeout)
        except BodyTooLarge:
            return self._refuse(413, f"body exceeds maxPayloadSize {limit}", close=True)
        except asyncio.TimeoutError:
            return self._refuse(408, f"body not received within {self.limits.read_timeout:g}s", close=True)
        try:
            msg = json.loads(body)
        except ValueError:
            return self._refuse(400, "body is not an SNS message (not JSON)")
        if not isinstance(msg, dict) or not isinstance(msg.get("Type"), str):
            return self._refuse(400, "bad request, not a valid SNS notification")
        if self.sns.validate_signature:
            problem = await self._verify(msg)
            if problem:
                return self._refuse(401, f"SNS signature: {problem}")
        kind = msg["Type"]
        if kind == "SubscriptionConfirmation":
            return await self._confirm(msg)
        if kind != "Notification":
            return web.Response(status=200, text="ignored")
        header = {k: request.headers.getall(k) for k in request.headers.keys()}
        for name in [k for k in header if k.lower() == "authorization"]:
            header[name] = [MASKED_AUTH]
        ev = SourceEvent(with_metadata({"header": header, "body": msg}, self)).expect_ack()
        if isinstance(msg.get("MessageId"), str) and msg["MessageId"]:
            ev.id = event_id(self.cfg.source, self.cfg.name, msg["MessageId"])
        return await self._hand_over(ev)

    async def _confirm(self, msg: dict[str, Any]) -> web.Response:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            async with self._client(self._session, self._args) as sns:
                reply = await sns.confirm_subscription(TopicArn=self.sns.topic_arn, Token=str(msg.get("Token", "")))
        except (BotoCoreError, ClientError, OSError) as err:
            log.error("sns %s: confirming the subscription failed: %s", self.label, err)
            return web.Response(status=502, text="subscription not confirmed")
        self.subscription_arn = reply.get("SubscriptionArn") or self.subscription_arn
        log.info("sns %s: subscription confirmed (%s)", self.label, self.subscription_arn)
        return web.Response(status=200, text="confirmed")

    async def _verify(self, msg: dict[str, Any]) -> str | None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            signature = base64.b64decode(str(msg.get("Signature", "")), validate=True)
        except ValueError:
            return "Signature is not base64"
        algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(msg.get("SignatureVersion", "1")))
        if algorithm is None:
            return f"unknown SignatureVersion {msg.get('SignatureVersion')!r}"
        url = str(msg.get("SigningCertURL", ""))
        parts = urlsplit(url)
        if parts.scheme != "https" or not CERT_HOST.match(parts.hostname or ""):
            return f"SigningCertURL {url[:200]!r} is not an https URL on sns.<region>.amazonaws.com"
        try:
            cert = await self._cert(url)
        except Exception as err:  # noqa: BLE001 - any failure to get the certificate refuses the message
            return f"signing certificate not usable: {type(err).__name__}: {err}"
        try:
            cert.public_key().verify(signature, string_to_sign(msg), padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            return "signature does not match"
        return None

    async def _cert(self, url: str) -> Any:
        import aiohttp
        from cryptography import x509

        if url in self._certs:
            self._certs.move_to_end(url)
            return self._certs[url]
        fetch, headers = url, {}
        if self.sns.endpoint:  # a local SNS (LocalStack, moto) serves its certificates itself, routed by Host
            fetch = self.sns.endpoint.rstrip("/") + urlsplit(url).path
            headers["Host"] = urlsplit(url).netloc
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http, \
                http.get(fetch, headers=headers) as resp:
            resp.raise_for_status()
            pem = await resp.content.read(MAX_CERT_BYTES)
        cert = x509.load_pem_x509_certificate(pem)
        self._certs[url] = cert
        if len(self._certs) > CERT_CACHE:
            self._certs.popitem(last=False)
        return cert


SOURCES = {"sns": SNSSource}
