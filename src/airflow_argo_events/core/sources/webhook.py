"""Argo's webhook event source (aiohttp), with signature checks and a body size limit.

Payload: ``{"header": {name: [values]}, "body": <JSON body>, "metadata": {...}}``; GET
carries the query string and a form POST the form, both as ``{name: [values]}``. A body
that is not JSON is refused with 400, as Argo does. The caller gets 200 only after the
bus acknowledged the event, so a client retry can never lose one. Events sharing a
port share one server; ``GET /health`` answers 200.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from airflow_argo_events.core.sources.base import Source, SourceEvent, with_metadata

log = logging.getLogger("airflow_argo_events.sources.webhook")
DEFAULT_MAX_PAYLOAD = 1_048_576
STRIPE_TOLERANCE_SECONDS = 300


class _PortServer:
    """One aiohttp server per port, routing endpoints to the sources that registered them."""

    servers: dict[tuple[int, int], _PortServer] = {}

    def __init__(self, port: int) -> None:
        self.port = port
        self.routes: dict[str, WebhookSource] = {}
        self.runner: web.AppRunner | None = None

    @classmethod
    async def acquire(cls, port: int, source: WebhookSource) -> _PortServer:
        key = (id(asyncio.get_running_loop()), port)
        server = cls.servers.get(key)
        if server is None:
            server = cls.servers[key] = cls(port)
            try:
                await server._start()
            except OSError:
                del cls.servers[key]
                raise
        if source.spec.endpoint in server.routes:
            raise ValueError(f"port {port}: endpoint {source.spec.endpoint} is already served")
        server.routes[source.spec.endpoint] = source
        return server

    async def release(self, source: WebhookSource) -> None:
        self.routes.pop(source.spec.endpoint, None)
        if not self.routes and self.runner is not None:
            self.servers.pop((id(asyncio.get_running_loop()), self.port), None)
            runner, self.runner = self.runner, None
            await runner.cleanup()

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/health", lambda _r: web.Response(text="ok"))
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "0.0.0.0", self.port).start()

    async def _dispatch(self, request: web.Request) -> web.Response:
        source = self.routes.get(request.path)
        if source is None:
            return web.Response(status=404, text=f"no endpoint {request.path}")
        return await source.handle(request)


class WebhookSource(Source):
    """``spec.webhook.<name>``: accept HTTP calls and turn them into events.

    >>> # curl -X POST -d '{"message":"hi"}' http://localhost:12000/example
    """

    type = "webhook"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: asyncio.Queue[SourceEvent] = asyncio.Queue(maxsize=1000)
        self._server: _PortServer | None = None
        self.received = 0
        self.refused = 0

    async def events(self) -> AsyncIterator[SourceEvent]:
        self._server = await _PortServer.acquire(int(self.spec.port), self)
        log.info("webhook %s listening on :%s%s", self.label, self.spec.port, self.spec.endpoint)
        try:
            while True:
                yield await self._queue.get()
        finally:
            await self.close()

    async def close(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.release(self)

    def _refuse(self, status: int, why: str) -> web.Response:
        self.refused += 1
        log.warning("webhook %s: %d %s", self.label, status, why)
        return web.Response(status=status, text=why)

    async def handle(self, request: web.Request) -> web.Response:
        spec = self.spec
        if request.method.upper() != spec.method.upper():
            return self._refuse(400, f"method {request.method} not allowed, use {spec.method}")
        limit = spec.max_payload_size or DEFAULT_MAX_PAYLOAD
        if request.content_length is not None and request.content_length > limit:
            return self._refuse(413, f"body of {request.content_length} bytes exceeds maxPayloadSize {limit}")
        body = await request.content.read(limit + 1)
        if len(body) > limit:
            return self._refuse(413, f"body exceeds maxPayloadSize {limit}")
        if spec.auth_secret is not None:
            token = self.ctx.secrets.get(spec.auth_secret, f"{self.label}.authSecret")
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return self._refuse(401, "invalid or missing bearer token")
        if spec.signature is not None:
            problem = self._check_signature(request, body)
            if problem:
                return self._refuse(401 if "signature" in problem else 400, problem)
        header = {k: request.headers.getall(k) for k in request.headers.keys()}
        if request.method.upper() == "GET":
            payload_body: Any = {k: request.query.getall(k) for k in request.query.keys()}
        elif request.content_type == "application/x-www-form-urlencoded":
            form = await request.post() if not body else _parse_form(body)
            payload_body = form
        else:
            try:
                payload_body = json.loads(body) if body else None
            except ValueError:
                return self._refuse(400, "body is not valid JSON")
        ev = SourceEvent(with_metadata({"header": header, "body": payload_body}, self)).expect_ack()
        self.received += 1
        await self._queue.put(ev)
        assert ev.published is not None
        try:
            ok = await asyncio.wait_for(asyncio.shield(ev.published), timeout=60)
        except asyncio.TimeoutError:
            return web.Response(status=503, text="event bus did not acknowledge in time; retry")
        return web.Response(status=200, text="success") if ok else web.Response(status=503, text="event not stored")

    def _check_signature(self, request: web.Request, body: bytes) -> str | None:
        sig = self.spec.signature
        secret = self.ctx.secrets.get(sig.secret, f"{self.label}.signature.secret")
        h = request.headers
        if sig.kind == "github":
            given = h.get("X-Hub-Signature-256", "")
            want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            if not given:
                given = h.get("X-Hub-Signature", "")
                want = "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
            return None if given and hmac.compare_digest(given, want) else "invalid GitHub signature"
        if sig.kind == "gitlab":
            return None if hmac.compare_digest(h.get("X-Gitlab-Token", ""), secret) else "invalid GitLab token signature"
        if sig.kind == "bitbucket":
            given = h.get("X-Hub-Signature", "")
            want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            return None if given and hmac.compare_digest(given, want) else "invalid Bitbucket signature"
        if sig.kind == "stripe":
            parts = dict(p.split("=", 1) for p in h.get("Stripe-Signature", "").split(",") if "=" in p)
            ts = parts.get("t", "")
            if not ts.isdigit():
                return "invalid Stripe signature header"
            if abs(time.time() - int(ts)) > STRIPE_TOLERANCE_SECONDS:
                return "Stripe signature timestamp outside tolerance"
            want = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
            return None if hmac.compare_digest(parts.get("v1", ""), want) else "invalid Stripe signature"
        header = sig.header or "X-Signature"
        given = h.get(header, "")
        given = given.split("=", 1)[1] if "=" in given else given
        want = hmac.new(secret.encode(), body, getattr(hashlib, sig.algorithm)).hexdigest()
        return None if given and hmac.compare_digest(given.lower(), want) else f"invalid HMAC signature in {header}"


def _parse_form(body: bytes) -> dict[str, list[str]]:
    from urllib.parse import parse_qs

    return {k: v for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


SOURCES = {"webhook": WebhookSource}
