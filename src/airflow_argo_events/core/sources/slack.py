"""Argo's slack event source: Events API callbacks, interactive payloads and slash commands.

Each request must carry Slack's v0 signature: ``X-Slack-Signature: v0=<hex HMAC-SHA256 of
"v0:<X-Slack-Request-Timestamp>:<body>">`` with the timestamp within five minutes, else 401,
as slack-go's ``SecretsVerifier`` answers in Argo. Then, as Argo's handler:

- a JSON body is an Events API request whose ``token`` must equal ``token`` (else 500);
  ``url_verification`` is answered with its ``challenge`` (no event); ``event_callback``
  becomes the event ``{"type": <inner type>, "Data": <the inner event>}`` (slack-go's
  ``EventsAPIInnerEvent``); other types are answered 200 with no event;
- a form with ``payload`` is an interaction: the event is the payload's JSON;
- a form with ``command`` is a slash command: the event is slack-go's ``SlashCommand``.

The event id derives from the Events API ``event_id`` (or an interaction's or command's
``trigger_id``), so Slack's retries (``X-Slack-Retry-Num``) are stored once. As in Argo,
``metadata`` is not added to the event data (Slack's data is sent as it is).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from airflow_argo_events.core.limits import InputLimitError, loads_strict
from airflow_argo_events.core.sources.service_webhook import ServiceWebhook

TIMESTAMP_TOLERANCE_SECONDS = 300
SLASH_COMMAND_FIELDS = ("token", "team_id", "team_domain", "enterprise_id", "enterprise_name",
                        "is_enterprise_install", "channel_id", "channel_name", "user_id", "user_name", "command",
                        "text", "response_url", "trigger_id", "api_app_id")
"""slack-go's SlashCommand, in its field order."""


def check_slack_signature(headers: Any, body: bytes, secret: str, now: float | None = None) -> str | None:
    """slack-go's NewSecretsVerifier + Ensure; None when the request is Slack's."""
    given, ts = headers.get("X-Slack-Signature", ""), headers.get("X-Slack-Request-Timestamp", "")
    if not given or not ts:
        return "missing headers: X-Slack-Signature and X-Slack-Request-Timestamp are required"
    if not ts.isdigit() or len(ts) > 12:
        return "X-Slack-Request-Timestamp is not a unix time"
    if abs((now if now is not None else time.time()) - int(ts)) > TIMESTAMP_TOLERANCE_SECONDS:
        return "timestamp is too old"
    want = "v0=" + hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), want.encode()):
        return "signature validation failed: computed unexpected signature"
    return None


def slash_command(form: dict[str, list[str]]) -> dict[str, Any]:
    """slack-go's SlashCommandParse, marshalled: every field, empty when absent (the enterprise ones omitted)."""
    out: dict[str, Any] = {}
    for name in SLASH_COMMAND_FIELDS:
        value = (form.get(name) or [""])[0]
        if name == "is_enterprise_install":
            out[name] = value == "true"
        elif value or name not in ("enterprise_id", "enterprise_name"):
            out[name] = value
    return out


class SlackSource(ServiceWebhook):
    type = "slack"
    refuse_status = 401

    def metadata(self) -> dict[str, str] | None:
        return None  # Argo sends Slack's data as it is: ``metadata`` is not added to it

    def prepare(self) -> None:
        self.token = self.secret(self.typed.token, "token")
        self.caller_secret = self.secret(self.typed.signing_secret, "signingSecret")  # required, unlike the others

    def verify(self, request: web.Request, body: bytes, secret: str) -> str | None:
        return check_slack_signature(request.headers, body, secret)

    def _fail(self, why: str) -> web.Response:
        return self._refuse(500, why)  # Argo's SendInternalErrorResponse for what it cannot parse

    def payloads(self, request: web.Request, body: bytes) -> list[dict[str, Any]] | web.Response:
        # Argo compares the first Content-Type value exactly
        if request.headers.get("Content-Type", "") == "application/x-www-form-urlencoded":
            form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            if (form.get("payload") or [""])[0]:
                try:
                    interaction = loads_strict(form["payload"][0])
                except InputLimitError as err:
                    return self._fail(f"failed to parse interaction event, {err}")
                if not isinstance(interaction, dict):
                    return self._fail("failed to parse interaction event, not a JSON object")
                return [interaction]
            if (form.get("command") or [""])[0]:
                return [slash_command(form)]
            return self._fail("could not determine slack type from form parameters")
        try:
            outer = loads_strict(body)
        except InputLimitError as err:
            return self._fail(f"failed to extract event, {err}")
        if not isinstance(outer, dict):
            return self._fail("failed to extract event, not a JSON object")
        if not hmac.compare_digest(str(outer.get("token", "")).encode("utf-8", "surrogatepass"), self.token.encode()):
            return self._fail("failed to extract event, invalid verification token")
        kind = outer.get("type")
        if kind == "url_verification":
            return web.Response(status=200, text=str(outer.get("challenge", "")), content_type="text/plain")
        if kind != "event_callback":
            return web.Response(status=200, text="success")
        inner = outer.get("event")
        if not isinstance(inner, dict) or not isinstance(inner.get("type"), str):
            return self._fail("failed to extract event, event_callback without an inner event type")
        return [{"type": inner["type"], "Data": inner, "_event_id": outer.get("event_id")}]

    def delivery(self, request: web.Request, payload: dict[str, Any]) -> str | None:
        event = payload.pop("_event_id", None)  # carried here only to name the delivery
        if isinstance(event, str) and event:
            return event
        trigger = payload.get("trigger_id")
        return trigger if isinstance(trigger, str) and trigger else None


SOURCES = {"slack": SlackSource}
