"""Argo's gitlab event source: GitLab webhook deliveries, with the hooks managed through the API.

Payload (``GitLabEventData``): ``{"headers": {Name: [values]}, "body": <the delivery's
JSON>, "metadata"}``. With ``secretToken`` the ``X-Gitlab-Token`` header must equal it, or
the caller gets 400 ("token mismatch"), as in Argo. (Argo compares only when it also
manages the hook; here the token is checked whenever it is set.)

With ``accessToken`` and ``webhook.url`` the hook is found (by URL) or created on every
project (``projects``, ids or ``group/project`` paths) and group (``groups``) through
GitLab's REST API v4 at ``gitlabBaseURL``, with the hook options named in ``events``
(``PushEvents``, ``MergeRequestsEvents``, ...) turned on and the others off, and deleted on
stop with ``deleteHookOnFinish``.
"""

from __future__ import annotations

import hmac
import re
from typing import Any
from urllib.parse import quote

from aiohttp import web

from airflow_argo_events.core.sources.service_webhook import HookManager, ServiceWebhook
from airflow_argo_events.core.spec.eventsource import GITLAB_HOOK_EVENTS


def snake(name: str) -> str:
    """go-gitlab's option name as GitLab's API field: ``MergeRequestsEvents`` -> ``merge_requests_events``."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def api_base(url: str) -> str:
    """go-gitlab's WithBaseURL: ``/api/v4`` is added unless the URL ends with it."""
    url = url.rstrip("/")
    return url if url.endswith("/api/v4") else url + "/api/v4"


class GitlabSource(ServiceWebhook):
    type = "gitlab"
    delivery_header = "X-Gitlab-Event-UUID"
    caller_secret_field = "secret_token"

    def verify(self, request: web.Request, body: bytes, secret: str) -> str | None:
        given = request.headers.get("X-Gitlab-Token", "").encode("utf-8", "surrogatepass")
        return None if hmac.compare_digest(given, secret.encode()) else "token mismatch"

    def hook_manager(self) -> HookManager | None:
        c = self.typed
        if not c.needs_hooks():
            return None
        return GitlabHooks(self, api_base(c.gitlab_base_url), {"PRIVATE-TOKEN": self.secret(c.access_token,
                                                                                              "accessToken")})


class GitlabHooks(HookManager):
    """GitLab's project and group hooks (``/projects/:id/hooks``, ``/groups/:id/hooks``)."""

    service = "gitlab"

    def __init__(self, source: GitlabSource, base_url: str, headers: dict[str, str]) -> None:
        super().__init__(source, base_url, headers)
        c = source.typed
        on = set(c.events or [])
        self.hook: dict[str, Any] = {"url": self.url, "enable_ssl_verification": c.enable_ssl_verification}
        self.hook.update({snake(name): name in on for name in GITLAB_HOOK_EVENTS})
        if source.caller_secret:
            self.hook["token"] = source.caller_secret

    def targets(self) -> list[str]:
        c = self.source.typed
        return [f"groups/{quote(g, safe='')}" for g in c.groups or []] + \
            [f"projects/{quote(p, safe='')}" for p in c.project_ids()]


SOURCES = {"gitlab": GitlabSource}
