"""Argo's stripe event source: Stripe events posted to the webhook, filtered by type.

Payload (``StripeEventData``): ``{"event": <the Stripe event>, "metadata"}``. A body that is
not a JSON object is refused with 400 ("failed to parse the event"), and so is an event whose
``type`` is not in ``eventFilter`` (when set), as in Argo. The event id derives from the
Stripe event's ``id`` (``evt_...``), so Stripe's retries are stored once.

Extension (not in Argo, which checks nothing): with ``signingSecret`` (the endpoint's
``whsec_...`` secret) the ``Stripe-Signature`` header (``t=<unix time>,v1=<hex>``, HMAC-SHA256
of ``"<t>.<body>"``) must match and ``t`` be within five minutes, else 400.

With ``createWebhook`` the endpoint is registered at Stripe (``POST /v1/webhook_endpoints``
with ``url`` and ``enabled_events``, the ``apiKey`` as bearer token) once the server listens,
unless Stripe already has an endpoint with this URL (Argo creates one on every start). Like
Argo, it is never deleted. ``ARGO_EVENTS_STRIPE_API_URL`` points it at another API (a test
double); by default https://api.stripe.com.
"""

from __future__ import annotations

import os
from typing import Any

from aiohttp import web

from airflow_argo_events.core.limits import InputLimitError, loads_strict
from airflow_argo_events.core.sources.service_webhook import HookManager, ServiceWebhook
from airflow_argo_events.core.sources.webhook import _check_stripe

STRIPE_API = "https://api.stripe.com"


class StripeSource(ServiceWebhook):
    type = "stripe"
    caller_secret_field = "signing_secret"

    def verify(self, request: web.Request, body: bytes, secret: str) -> str | None:
        return _check_stripe(request.headers.get("Stripe-Signature", ""), secret.encode(), body)

    def payloads(self, request: web.Request, body: bytes) -> list[dict[str, Any]] | web.Response:
        try:
            event = loads_strict(body)
        except InputLimitError:
            return self._refuse(400, "failed to parse the event")
        if not isinstance(event, dict):
            return self._refuse(400, "failed to parse the event")
        wanted = self.typed.event_filter
        if wanted is not None and event.get("type") not in wanted:
            return self._refuse(400, "invalid event")
        return [{"event": event}]

    def delivery(self, request: web.Request, payload: dict[str, Any]) -> str | None:
        event_id = payload["event"].get("id")
        return event_id if isinstance(event_id, str) and event_id else None

    def hook_manager(self) -> HookManager | None:
        c = self.typed
        if not c.create_webhook:
            return None
        key = self.secret(c.api_key, "apiKey")
        return StripeEndpoints(self, os.environ.get("ARGO_EVENTS_STRIPE_API_URL") or STRIPE_API,
                               {"Authorization": f"Bearer {key}"})


class StripeEndpoints(HookManager):
    """Stripe's webhook endpoints (``/v1/webhook_endpoints``, form-encoded as Stripe's API takes them)."""

    service = "stripe"
    hooks_path = ""  # the target is the endpoints' collection itself
    list_params = {"limit": "100"}
    list_key = "data"
    noun = "endpoint"

    def targets(self) -> list[str]:
        return ["v1/webhook_endpoints"]

    def create_body(self) -> dict[str, Any]:
        form: list[tuple[str, str]] = [("url", self.url)]
        form += [("enabled_events[]", name) for name in self.source.typed.event_filter or ["*"]]
        return {"data": form}

    async def delete(self, target: str, hook_id: Any) -> None:  # Argo never deletes it; neither does this
        return None


SOURCES = {"stripe": StripeSource}
