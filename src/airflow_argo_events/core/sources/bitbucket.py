"""Argo's bitbucket (Cloud) event source: Bitbucket Cloud webhook deliveries.

Payload (``BitbucketEventData``): ``{"headers": {Name: [values]}, "body": <the delivery's
JSON>, "metadata"}``; the event id derives from Bitbucket's ``X-Request-UUID``. Argo checks
nothing about the caller. Extension (not in Argo): with ``webhookSecret`` the
``X-Hub-Signature: sha256=<hex>`` header Bitbucket Cloud sends for a hook with a secret must
match, else 400.

With ``auth`` (``basic`` username/app password, or ``oauthToken``) and ``webhook.url`` the
hook ("Argo Events", ``events``) is found by its URL or created on every repository through
Bitbucket's API 2.0 once the server listens (Argo deletes and re-creates an existing one;
here it is kept), checked again every minute, and deleted on stop with
``deleteHookOnFinish``. ``ARGO_EVENTS_BITBUCKET_API_URL`` points it at another API (a test
double); by default https://api.bitbucket.org/2.0.
"""

from __future__ import annotations

import os
from urllib.parse import quote

import aiohttp
from aiohttp import web

from airflow_argo_events.core.sources.bitbucketserver import check_hub_signature
from airflow_argo_events.core.sources.service_webhook import HookManager, ServiceWebhook

BITBUCKET_API = "https://api.bitbucket.org/2.0"


class BitbucketSource(ServiceWebhook):
    type = "bitbucket"
    delivery_header = "X-Request-UUID"
    caller_secret_field = "webhook_secret"

    def verify(self, request: web.Request, body: bytes, secret: str) -> str | None:
        return check_hub_signature(request.headers, body, secret)

    def hook_manager(self) -> HookManager | None:
        c = self.typed
        if c.auth is None or not self.spec.url:
            return None
        base = os.environ.get("ARGO_EVENTS_BITBUCKET_API_URL") or BITBUCKET_API
        if c.auth.oauth_token is not None:
            token = self.secret(c.auth.oauth_token, "auth.oauthToken")
            return BitbucketHooks(self, base, {"Authorization": f"Bearer {token}"})
        if c.auth.basic is not None:
            auth = aiohttp.BasicAuth(self.secret(c.auth.basic.username, "auth.basic.username"),
                                     self.secret(c.auth.basic.password, "auth.basic.password"))
            return BitbucketHooks(self, base, {}, auth)
        return None


class BitbucketHooks(HookManager):
    """Bitbucket Cloud's repository hooks (``/repositories/{owner}/{slug}/hooks``, ids are ``{uuid}``)."""

    service = "bitbucket"
    list_params = {"pagelen": "100"}
    list_key = "values"
    id_field = "uuid"  # ``{...}``: quoted in the URL

    def __init__(self, source: BitbucketSource, base_url: str, headers: dict[str, str],
                 auth: aiohttp.BasicAuth | None = None) -> None:
        super().__init__(source, base_url, headers, auth)
        self.hook = {"description": "Argo Events", "url": self.url, "active": True,
                     "events": list(source.typed.events or [])}

    def targets(self) -> list[str]:
        return [f"repositories/{quote(r.owner, safe='')}/{quote(r.repository_slug, safe='')}"
                for r in self.source.typed.repos()]


SOURCES = {"bitbucket": BitbucketSource}
