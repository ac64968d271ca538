"""What Argo's github, gitlab, slack, stripe, bitbucketserver and bitbucket sources share.

Each is a webhook (``spec.<type>.<name>.webhook``: port, endpoint, method, url, TLS,
maxPayloadSize) on the shared webhook server, with its service's check of the caller and
its own payload shape. The caller gets 200 only once the bus stored the event, as for the
plain webhook; the event id derives from the service's delivery id (``X-GitHub-Delivery``,
``X-Gitlab-Event-UUID``, Bitbucket's ``X-Request-UUID``/``X-Request-Id``, Stripe's and
Slack's event ids), so a redelivery is stored once.

Header names in the payload are in Go's canonical form (``X-Github-Event``), as Argo's
``http.Header`` gives them, so sensors written for Argo find them under the same names.

Where Argo manages the service's hook (github, gitlab, bitbucketserver, bitbucket, when
credentials and ``webhook.url`` are given) a :class:`HookManager` registers it once the
server listens, re-checks it periodically (the service may have lost it), and deletes it on
stop when ``deleteHookOnFinish`` is set. A failing API call is one error line naming the
repository and the HTTP status, and is retried on the next check; events keep flowing.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.limits import InputLimitError, loads_strict
from airflow_argo_events.core.secrets import SecretNotFound
from airflow_argo_events.core.sources.base import SourceEvent, with_metadata
from airflow_argo_events.core.sources.webhook import DEFAULT_MAX_PAYLOAD, MASKED_AUTH, WebhookSource, event_id
from airflow_argo_events.core.spec.base import to_camel
from airflow_argo_events.core.spec.eventsource import WebhookEventSource

log = logging.getLogger("airflow_argo_events.sources.hooks")

HOOK_CHECK_SECONDS = 60.0
"""How often a managed hook is checked (and re-created if the service lost it), as Argo does."""
API_TIMEOUT_SECONDS = 10.0
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def go_header_key(name: str) -> str:
    """Go's ``textproto.CanonicalMIMEHeaderKey``: what Argo's payload calls a header.

    >>> go_header_key("x-github-event"), go_header_key("X-GitHub-Delivery"), go_header_key("bad key")
    ('X-Github-Event', 'X-Github-Delivery', 'bad key')
    """
    if not _TOKEN.match(name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def go_headers(request: web.Request) -> dict[str, list[str]]:
    """``http.Header`` as JSON: canonical names, every value; Authorization masked."""
    out: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        out.setdefault(go_header_key(name), []).append(value)
    if "Authorization" in out:
        out["Authorization"] = [MASKED_AUTH]
    return out


class ServiceWebhook(WebhookSource):
    """Base of the service sources: subclasses set ``type``, read their secrets in :meth:`prepare`
    and write :meth:`check`; :meth:`payloads` and :meth:`delivery` when Argo's usual
    ``{"headers", "body"}`` and a delivery header do not fit.
    """

    refuse_status = 400
    """Argo answers a failed check with 400 (``SendErrorResponse``); slack with 401."""
    delivery_header: str | None = None
    """The request header with the service's id of the delivery (kept across its retries)."""
    caller_secret_field: str | None = None
    """The spec field (``webhook_secret``, ...) of the secret the caller proves itself with;
    when the manifest sets it, :meth:`verify` checks each request against it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.typed = self.cfg.spec
        # the webhook server reads port, endpoint, method, limits and TLS from ``spec``
        self.spec = WebhookEventSource.model_validate(self.typed.webhook.dump() if self.typed.webhook else {})
        self.hooks: HookManager | None = None

    @property
    def _where(self) -> str:
        return f"spec.{self.type}.{self.cfg.name}.webhook"

    @property
    def where(self) -> str:
        """Field path of this event's block, for error lines."""
        return f"spec.{self.type}.{self.cfg.name}"

    def metadata(self) -> dict[str, str] | None:
        return self.typed.metadata or None

    def secret(self, selector: Any, field: str) -> str:
        """A secret the manifest names; SpecError (one line, the field path) when it cannot be found."""
        try:
            return self.ctx.secrets.get(selector, f"{self.where}.{field}")
        except SecretNotFound as err:
            raise SpecError([(f"{self.where}.{field}", str(err))], source=self.cfg.source) from None

    def optional_secret(self, selector: Any, field: str) -> str:
        """:meth:`secret` when the manifest names one, else ``""`` (the check it guards is off)."""
        return self.secret(selector, field) if selector is not None else ""

    def prepare(self) -> None:
        """Read secrets before listening, so a missing one stops the source with one line at start."""
        self.caller_secret = ""
        if self.caller_secret_field:
            self.caller_secret = self.optional_secret(getattr(self.typed, self.caller_secret_field),
                                                      to_camel(self.caller_secret_field))

    def hook_manager(self) -> HookManager | None:
        """The manager of this event's hooks at the service, when Argo would manage them."""
        return None

    async def events(self) -> AsyncIterator[SourceEvent]:
        self.prepare()
        self.hooks = self.hook_manager()
        manager = None
        if self.hooks is not None:
            manager = asyncio.create_task(self._manage_when_listening(self.hooks))
        try:
            async for ev in super().events():
                yield ev
        finally:
            if manager is not None:
                manager.cancel()
                await asyncio.gather(manager, return_exceptions=True)
                if getattr(self.typed, "delete_hook_on_finish", False):
                    await self.hooks.delete_all()
                await self.hooks.close()

    async def _manage_when_listening(self, hooks: HookManager) -> None:
        while self._server is None:  # super().events() starts the server on its first step
            await asyncio.sleep(0.05)
        while True:
            await hooks.ensure_all()
            await asyncio.sleep(hooks.interval)

    # ------------------------------------------------------------------ a request

    def check(self, request: web.Request, body: bytes) -> str | None:
        """Why the caller is not the service (refused with ``refuse_status``), or None."""
        return self.verify(request, body, self.caller_secret) if self.caller_secret else None

    def verify(self, request: web.Request, body: bytes, secret: str) -> str | None:
        """Why the request's signature or token does not match ``secret``, or None."""
        return None

    def payloads(self, request: web.Request, body: bytes) -> list[dict[str, Any]] | web.Response:
        """The events this delivery gives (Argo's event data, before metadata), or the answer to give."""
        return self.headers_and_body(request, body)

    def delivery(self, request: web.Request, payload: dict[str, Any]) -> str | None:
        """The service's id of this delivery, kept across its retries."""
        if self.delivery_header is None:
            return None
        return request.headers.get(self.delivery_header) or None

    def headers_and_body(self, request: web.Request, body: bytes) -> list[dict[str, Any]] | web.Response:
        """Argo's usual event data, ``{"headers", "body": <JSON>}``; 400 when the body is not JSON."""
        try:
            doc = loads_strict(body)
        except InputLimitError as err:
            return self._refuse(400, f"body is not valid JSON: {err}")
        return [{"headers": go_headers(request), "body": doc}]

    async def _handle(self, request: web.Request) -> web.Response:
        if request.method.upper() != self.spec.method.upper():
            return self._refuse(400, f"method {request.method} not allowed, use {self.spec.method}")
        limit = self.spec.max_payload_size or DEFAULT_MAX_PAYLOAD
        if request.content_length is not None and request.content_length > limit:
            return self._refuse(413, f"body of {request.content_length} bytes exceeds maxPayloadSize {limit}",
                                close=True)
        body = await self._read(request, limit)
        if isinstance(body, web.Response):
            return body
        problem = self.check(request, body)
        if problem:
            return self._refuse(self.refuse_status, problem)
        out = self.payloads(request, body)
        if isinstance(out, web.Response):
            return out
        answer = web.Response(status=200, text="success")
        for i, payload in enumerate(out):
            delivery = self.delivery(request, payload)
            ev = SourceEvent(with_metadata(payload, self)).expect_ack()
            if delivery is not None:
                ev.id = event_id(self.cfg.source, self.cfg.name, delivery if len(out) == 1 else f"{delivery}#{i}")
            answer = await self._hand_over(ev)
            if answer.status != 200:
                return answer  # the sender retries the whole delivery; ids drop what was stored
        return answer


# ---------------------------------------------------------------------- hooks at the service

class HookAPIError(Exception):
    """A call to the service's API failed; the message is one line (method, URL path, status, reason)."""


class HookManager:
    """Registers this endpoint's hook at each target (repository, organization, project, group).

    Subclasses name the targets and describe the service's REST shape (where hooks are
    listed, how a reply names them); the list/find/create/delete calls are the same for
    every service. ``ids`` keeps the hook id per target, so stopping can delete exactly what
    was found or made.
    """

    service = ""
    interval = HOOK_CHECK_SECONDS
    hooks_path = "hooks"
    """A target's hooks are listed, created and deleted under ``<target>/<hooks_path>``."""
    list_params: dict[str, str] = {"per_page": "100"}
    list_key: str | None = None
    """The field of the listing reply that holds the hooks (None: the reply is the list)."""
    id_field = "id"
    noun = "hook"

    def __init__(self, source: ServiceWebhook, base_url: str, headers: Mapping[str, str],
                 auth: aiohttp.BasicAuth | None = None) -> None:
        self.source = source
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self.auth = auth
        self.url = source.spec.url.rstrip("/") + source.spec.endpoint
        """The hook's target: Argo's FormattedURL(webhook.url, webhook.endpoint)."""
        self.ids: dict[str, Any] = {}
        self._http: aiohttp.ClientSession | None = None

    def targets(self) -> list[str]:
        raise NotImplementedError

    def hooks_url(self, target: str) -> str:
        return f"{target}/{self.hooks_path}" if self.hooks_path else target

    async def listed(self, target: str) -> list[dict[str, Any]]:
        """The hooks at ``target`` (the first page of 100: one endpoint's hook is among the few)."""
        reply = await self.call("GET", self.hooks_url(target), params=self.list_params)
        if self.list_key is not None:
            reply = reply.get(self.list_key) if isinstance(reply, dict) else None
        return [hook for hook in reply if isinstance(hook, dict)] if isinstance(reply, list) else []

    def matches(self, hook: dict[str, Any]) -> bool:
        """Is ``hook`` (as the service lists it) this endpoint's?"""
        return hook.get("url") == self.url

    async def find(self, target: str) -> Any | None:
        """The id of this endpoint's hook at ``target``, if it has one."""
        for hook in await self.listed(target):
            if self.matches(hook):
                return hook.get(self.id_field)
        return None

    hook: dict[str, Any] = {}
    """What :meth:`create` posts (JSON) to ``<target>/<hooks_path>``."""

    def create_body(self) -> dict[str, Any]:
        """The request body of :meth:`create`, as ``call`` keywords."""
        return {"json": self.hook}

    async def create(self, target: str) -> Any:
        url = self.hooks_url(target)
        reply = await self.call("POST", url, **self.create_body())
        if not isinstance(reply, dict) or self.id_field not in reply:
            raise HookAPIError(f"POST {url}: the reply has no {self.noun} {self.id_field}")
        return reply[self.id_field]

    async def delete(self, target: str, hook_id: Any) -> None:
        await self.call("DELETE", f"{self.hooks_url(target)}/{quote(str(hook_id), safe='')}")

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; the decoded JSON reply (None when empty); HookAPIError on any failure."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=API_TIMEOUT_SECONDS),
                                               headers=self.headers, auth=self.auth)
        url = f"{self.base_url}/{path.lstrip('/')}"
        try:
            async with self._http.request(method, url, **kwargs) as resp:
                text = await resp.text()
                if resp.status >= 300:
                    raise HookAPIError(f"{method} {url} answered {resp.status} {_reason(text, resp.reason)}")
                if not text.strip():
                    return None
                return await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as err:
            raise HookAPIError(f"{method} {url} failed: {type(err).__name__}: {err}") from None

    async def ensure_all(self) -> None:
        """Find or create the hook at every target; one error line per target that fails."""
        for target in self.targets():
            try:
                hook_id = await self.find(target)
                if hook_id is None:
                    hook_id = await self.create(target)
                    log.info("%s %s: created a hook for %s at %s (id %s)", self.service, self.source.label,
                             self.url, target, hook_id)
                self.ids[target] = hook_id
            except HookAPIError as err:
                log.error("%s %s: could not register the hook at %s: %s (retrying in %.0fs)", self.service,
                          self.source.label, target, err, self.interval)

    async def delete_all(self) -> None:
        for target, hook_id in list(self.ids.items()):
            try:
                await self.delete(target, hook_id)
                del self.ids[target]
                log.info("%s %s: deleted the hook at %s", self.service, self.source.label, target)
            except HookAPIError as err:
                log.error("%s %s: could not delete the hook at %s: %s", self.service, self.source.label, target, err)

    async def close(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()


def _reason(text: str, fallback: str | None) -> str:
    """A short reason from an API error body: its ``message``/``error`` when JSON, else its first line."""
    import json

    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for key in ("message", "error", "error_description"):
            value = doc.get(key)
            if isinstance(value, str) and value:
                return value[:200]
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return value["message"][:200]
    line = text.strip().splitlines()[0] if text.strip() else (fallback or "")
    return line[:200]
