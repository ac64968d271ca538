"""Argo's bitbucketserver event source: Bitbucket Server/Data Center webhook deliveries.

Payload (``BitbucketServerEventData``): ``{"headers": {Name: [values]}, "body": <the
delivery's JSON>, "metadata"}``. With ``webhookSecret`` the ``X-Hub-Signature`` header
(``sha256=<hex HMAC-SHA256 of the body>``) must match, else 400 ("missing signature header" /
"hmac verification failed"), as in Argo. (Argo reads the secret only when it also manages
the hook; here it is checked whenever it is set.)

With ``oneEventPerChange`` a ``repo:refs_changed`` delivery (``X-Event-Key``) becomes one
event per entry of its ``changes``, each body holding that one change. The event id derives
from Bitbucket's ``X-Request-Id``.

With ``accessToken`` (a bearer token), ``webhook.url`` and repositories or ``projects``
(every repository of each), the hook ("Argo Events", ``events``, the secret) is found by its
URL, updated when its events or secret differ, or created, through the REST API 1.0 at
``bitbucketserverBaseURL``, checked again every ``checkInterval`` (default 1m), and deleted
on stop with ``deleteHookOnFinish``. Not done here: ``skipBranchRefsChangedOnOpenPR`` and
``tls`` for the API calls; ``validate`` warns about the first.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import quote

from aiohttp import web

from airflow_argo_events.core.limits import InputLimitError, loads_strict
from airflow_argo_events.core.sources.service_webhook import HookAPIError, HookManager, ServiceWebhook, go_headers, log
from airflow_argo_events.core.spec.durations import parse_duration


def check_hub_signature(headers: Any, body: bytes, secret: str) -> str | None:
    """Argo's validateBitbucketServerRequest: ``X-Hub-Signature: sha256=<hex>``."""
    given = headers.get("X-Hub-Signature", "")
    if not given:
        return "missing signature header"
    want = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # Argo slices off the 7-character "sha256=" prefix whatever it is
    if len(given) < 7 or not hmac.compare_digest(given[7:].encode("utf-8", "surrogatepass"), want.encode()):
        return "hmac verification failed"
    return None


class BitbucketServerSource(ServiceWebhook):
    type = "bitbucketserver"
    delivery_header = "X-Request-Id"
    caller_secret_field = "webhook_secret"

    def verify(self, request: web.Request, body: bytes, secret: str) -> str | None:
        problem = check_hub_signature(request.headers, body, secret)
        return f"failed to validate bitbucketserver webhook request: {problem}" if problem else None

    def payloads(self, request: web.Request, body: bytes) -> list[dict[str, Any]] | web.Response:
        try:
            doc = loads_strict(body)
        except InputLimitError as err:
            return self._refuse(400, f"body is not valid JSON: {err}")
        headers = go_headers(request)
        changes = doc.get("changes") if isinstance(doc, dict) else None
        if (self.typed.one_event_per_change and request.headers.get("X-Event-Key") == "repo:refs_changed"
                and isinstance(changes, list)):
            return [{"headers": headers, "body": {**doc, "changes": [change]}} for change in changes]
        return [{"headers": headers, "body": doc}]

    def hook_manager(self) -> HookManager | None:
        c = self.typed
        if c.access_token is None or not self.spec.url or not (c.repos() or c.projects):
            return None
        token = self.secret(c.access_token, "accessToken")
        return BitbucketServerHooks(self, c.bitbucketserver_base_url.rstrip("/") + "/api/1.0",
                                    {"Authorization": f"Bearer {token}"})


class BitbucketServerHooks(HookManager):
    """Bitbucket Server's repository webhooks (``/projects/{key}/repos/{slug}/webhooks``)."""

    service = "bitbucketserver"
    hooks_path = "webhooks"
    list_params = {"limit": "100"}
    list_key = "values"

    def __init__(self, source: BitbucketServerSource, base_url: str, headers: dict[str, str]) -> None:
        super().__init__(source, base_url, headers)
        c = source.typed
        if c.check_interval:
            self.interval = parse_duration(c.check_interval)
        self.events = list(c.events or [])
        self.secret = source.caller_secret
        self.hook = {"name": "Argo Events", "url": self.url, "active": True, "events": self.events}
        if self.secret:  # Argo leaves configuration out when there is no secret
            self.hook["configuration"] = {"secret": self.secret}
        self._targets = [self._repo(r.project_key, r.repository_slug) for r in c.repos()]

    @staticmethod
    def _repo(project: str, slug: str) -> str:
        return f"projects/{quote(project, safe='')}/repos/{quote(slug, safe='')}"

    def targets(self) -> list[str]:
        return self._targets

    async def ensure_all(self) -> None:
        c = self.source.typed
        targets = [self._repo(r.project_key, r.repository_slug) for r in c.repos()]
        for project in c.projects or []:
            try:
                targets += [self._repo(project, slug) for slug in await self._project_repos(project)]
            except HookAPIError as err:
                log.error("bitbucketserver %s: could not list the repositories of project %s: %s", self.source.label,
                          project, err)
        self._targets = list(dict.fromkeys(targets))
        await super().ensure_all()

    async def _project_repos(self, project: str) -> list[str]:
        slugs, start = [], 0
        while True:
            page = await self.call("GET", f"projects/{quote(project, safe='')}/repos",
                                   params={"start": str(start), "limit": "100"})
            slugs += [r["slug"] for r in page.get("values", []) if isinstance(r, dict) and r.get("slug")]
            if page.get("isLastPage", True) or not isinstance(page.get("nextPageStart"), int):
                return slugs
            start = page["nextPageStart"]

    async def find(self, target: str) -> Any | None:
        """As the base class, and Argo: a found hook whose events or secret differ is updated."""
        for hook in await self.listed(target):
            if not self.matches(hook):
                continue
            secret = (hook.get("configuration") or {}).get("secret", "")
            if sorted(hook.get("events") or []) != sorted(self.events) or secret != self.secret:
                await self.call("PUT", f"{self.hooks_url(target)}/{hook.get('id')}", json=self.hook)
            return hook.get("id")
        return None


SOURCES = {"bitbucketserver": BitbucketServerSource}
