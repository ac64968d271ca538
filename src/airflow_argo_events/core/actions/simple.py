"""Small actions: log, NATS publish, Slack message."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING

import aiohttp
import nats.errors

from airflow_argo_events.core.actions.base import Action, ActionContext, ActionResult
from airflow_argo_events.core.bus.connection import shared_connection
from airflow_argo_events.core.bus.settings import NatsSettings
from airflow_argo_events.core.redact import redact_text, redact_url, url_host
from airflow_argo_events.core.spec.sensor import LogTrigger, NATSTrigger, SlackTrigger

if TYPE_CHECKING:
    from airflow_argo_events.core.sensor.engine import Firing

firing_log = logging.getLogger("airflow_argo_events.firings")


class LogAction(Action):
    """Argo's log trigger: one line per firing (at most one per ``intervalSeconds``)."""

    kind = "log"

    def __init__(self, name: str, ctx: ActionContext) -> None:
        super().__init__(name, ctx)
        self._last = 0.0

    async def execute(self, firing: Firing) -> ActionResult:
        spec = LogTrigger.model_validate(firing.body or {})
        now = time.monotonic()
        if spec.interval_seconds and now - self._last < spec.interval_seconds:
            return ActionResult(True, "throttled by intervalSeconds")
        self._last = now
        events = {d: {"id": e.id, "source": e.source, "subject": e.subject, "data": e.data}
                  for d, e in firing.events.items()}
        firing_log.info("sensor %s trigger %s firing %s: %s", firing.sensor, firing.trigger, firing.id,
                        json.dumps(events, default=str))
        return ActionResult(True, "logged")


class NatsAction(Action):
    """Argo's nats trigger: publish the payload on a core NATS subject (``Nats-Msg-Id`` = firing id)."""

    kind = "nats"

    async def execute(self, firing: Firing) -> ActionResult:
        spec = NATSTrigger.model_validate(firing.body or {})
        where = f"trigger {self.name}"
        kwargs: dict[str, object] = {}
        if spec.auth:
            if spec.auth.token:
                kwargs["token"] = self.ctx.secrets.get(spec.auth.token, f"{where}.auth.token")
            if spec.auth.basic:
                kwargs["user"] = self.ctx.secrets.get(spec.auth.basic.username, f"{where}.auth.basic.username")
                kwargs["password"] = self.ctx.secrets.get(spec.auth.basic.password, f"{where}.auth.basic.password")
            if spec.auth.nkey:
                kwargs["nkey_seed"] = self.ctx.secrets.get(spec.auth.nkey, f"{where}.auth.nkey")
        settings = NatsSettings.from_url(spec.url, **kwargs).with_label(f"{where} ({redact_url(spec.url)})")
        payload = json.dumps(firing.resolved).encode()
        try:
            async with shared_connection(settings) as nc:
                await nc.publish(spec.subject, payload, headers={"Nats-Msg-Id": firing.id})
                await nc.flush(timeout=5)
        except (nats.errors.Error, OSError, asyncio.TimeoutError) as err:
            return ActionResult(False, f"publish to {spec.subject}: {redact_text(str(err)) or type(err).__name__}")
        return ActionResult(True, f"published to {spec.subject}")


class SlackAction(Action):
    """Argo's slack trigger: chat.postMessage at ``ActionContext.slack_api_url``."""

    kind = "slack"

    async def execute(self, firing: Firing) -> ActionResult:
        spec = SlackTrigger.model_validate(firing.body or {})
        token = self.ctx.secrets.get(spec.slack_token, f"trigger {self.name}.slackToken")
        body: dict[str, object] = {"channel": spec.channel, "text": spec.message}
        if spec.attachments:
            body["attachments"] = spec.attachments
        if spec.blocks:
            body["blocks"] = spec.blocks
        if spec.sender and spec.sender.username:
            body["username"] = spec.sender.username
        if spec.sender and spec.sender.icon:
            body["icon_emoji" if spec.sender.icon.startswith(":") else "icon_url"] = spec.sender.icon
        url = self.ctx.slack_api_url.rstrip("/") + "/chat.postMessage"
        session = await self.ctx.http()
        try:
            async with session.post(url, json=body, headers={"Authorization": f"Bearer {token}"},
                                    timeout=aiohttp.ClientTimeout(total=30)) as resp:
                reply = await resp.json(content_type=None)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as err:
            # The API URL may be a webhook whose path is the credential: show the host only.
            host = url_host(url)
            text = redact_text(str(err).replace(url, host).replace(self.ctx.slack_api_url, host))
            return ActionResult(False, f"slack {host}: {type(err).__name__}: {text}")
        if not reply.get("ok"):
            return ActionResult(False, f"slack: {reply.get('error', 'not ok')}", retryable=reply.get("error") in (
                "ratelimited", "internal_error", "service_unavailable"))
        return ActionResult(True, f"slack message in {spec.channel}")
