"""Prefect actions over Prefect's REST API: a flow run of a deployment, or a Prefect event, per firing.

The core never imports ``prefect`` (DESIGN.md): these actions speak Prefect's HTTP API with
aiohttp, as the Airflow action speaks Airflow's. Where the API is comes from
:class:`PrefectApiSettings`: ``PREFECT_API_URL`` / ``PREFECT_API_KEY`` /
``PREFECT_API_AUTH_STRING`` from the environment, else the active profile of Prefect's
``profiles.toml``; ``airflow_argo_events.prefect`` passes Prefect's own resolved settings
when Prefect is installed.

- ``prefect`` (kind): ``POST /deployments/{id}/create_flow_run`` with ``idempotency_key`` =
  the firing id. Prefect answers a repeated key with the run it already made, so a
  retried or re-run firing (after a crash) never makes a second flow run.
- ``prefectEvent`` (kind): ``POST /events`` with an event id derived from the firing id.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from airflow_argo_events.core.actions.base import Action, ActionContext, ActionResult
from airflow_argo_events.core.redact import redact_text, redact_url
from airflow_argo_events.core.spec.sensor import PrefectEventTrigger, PrefectTrigger

if TYPE_CHECKING:
    from airflow_argo_events.core.sensor.engine import Firing

FIRING_NAMESPACE = uuid.UUID("6f1d7c8e-52a4-4f0e-9a57-3b9c2f0e8a11")
"""uuid5 namespace of the Prefect event ids derived from firing ids."""

DEFAULT_API_URL = "http://127.0.0.1:4200/api"
RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})
MAX_CONCURRENT_CREATES = int(os.environ.get("ARGO_EVENTS_PREFECT_CONCURRENCY", "1"))
"""Flow runs one trigger creates at once. A Prefect server on SQLite answers 503 ("database is
locked") to concurrent writes: one at a time is faster here (22 runs/s) than several that back off;
raise it for a server on PostgreSQL or Prefect Cloud."""


@dataclass(frozen=True)
class PrefectApiSettings:
    """Where Prefect's API is and how to authenticate (an API key for Cloud, an auth string
    for a self-hosted server with ``PREFECT_SERVER_API_AUTH_STRING``).

    >>> PrefectApiSettings("http://127.0.0.1:4200/api").headers()
    {}
    """

    url: str
    api_key: str | None = None
    auth_string: str | None = None

    def headers(self) -> dict[str, str]:
        if self.auth_string:
            return {"Authorization": "Basic " + base64.b64encode(self.auth_string.encode()).decode()}
        if self.api_key:
            return {"Authorization": f"Bearer {self.api_key}"}
        return {}

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> PrefectApiSettings:
        """The environment first, then the active profile of Prefect's profiles file, as Prefect reads them."""
        env = os.environ if environ is None else environ
        profile = _active_profile(env)
        url = env.get("PREFECT_API_URL") or profile.get("PREFECT_API_URL") or DEFAULT_API_URL
        return cls(url.rstrip("/"), env.get("PREFECT_API_KEY") or profile.get("PREFECT_API_KEY") or None,
                   env.get("PREFECT_API_AUTH_STRING") or profile.get("PREFECT_API_AUTH_STRING") or None)


def _active_profile(env: Any) -> dict[str, str]:
    """``[profiles.<active>]`` of ``$PREFECT_PROFILES_PATH`` (default ``$PREFECT_HOME/profiles.toml``)."""
    home = Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(env.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    if sys.version_info < (3, 11) or not path.is_file():
        return {}
    import tomllib

    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    name = env.get("PREFECT_PROFILE") or doc.get("active") or "ephemeral"
    profile = (doc.get("profiles") or {}).get(name) or {}
    return {k: str(v) for k, v in profile.items() if isinstance(v, (str, int, float))}


def event_id_for(firing_id: str) -> str:
    """The Prefect event id of a firing: the same firing always emits the same event."""
    return str(uuid.uuid5(FIRING_NAMESPACE, firing_id))


class _PrefectAction(Action):
    """What both Prefect actions share: the API's settings and one HTTP call with its error mapping."""

    def _settings(self) -> PrefectApiSettings:
        value = self.ctx.prefect_api
        return value if isinstance(value, PrefectApiSettings) else PrefectApiSettings.from_env()

    async def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, str]:
        """(status, JSON reply or None, text); connection errors raise aiohttp/asyncio errors."""
        settings = self._settings()
        session = await self.ctx.http()
        async with session.request(method, settings.url + path, json=body, headers=settings.headers(),
                                   timeout=aiohttp.ClientTimeout(total=30)) as resp:
            text = await resp.text()
            try:
                reply = await resp.json(content_type=None) if text else None
            except ValueError:
                reply = None
            return resp.status, reply, text

    def _failure(self, what: str, status: int, text: str) -> ActionResult:
        detail = text[:300]
        return ActionResult(False, f"{what}: {status} {redact_text(detail)}", status=status,
                            retryable=status in RETRYABLE)

    def _unreachable(self, what: str, err: BaseException) -> ActionResult:
        url = redact_url(self._settings().url)
        return ActionResult(False, f"{what} at {url}: {type(err).__name__}: {redact_text(str(err))}")


class PrefectRunDeploymentAction(_PrefectAction):
    """One flow run of a deployment per firing (``idempotency_key`` = firing id)."""

    kind = "prefect"

    def __init__(self, name: str, ctx: ActionContext) -> None:
        super().__init__(name, ctx)
        self._ids: dict[tuple[str, str], str] = {}
        self._gate = asyncio.Semaphore(max(1, MAX_CONCURRENT_CREATES))

    async def deployment_id(self, deployment: str) -> str | ActionResult:
        """The deployment's id ('flow/name' looked up once per API), or the failure."""
        try:
            return str(uuid.UUID(deployment))
        except ValueError:
            pass
        key = (self._settings().url, deployment)
        if key in self._ids:
            return self._ids[key]
        flow, _, name = deployment.partition("/")
        from urllib.parse import quote

        status, reply, text = await self._call("GET", f"/deployments/name/{quote(flow, safe='')}/"
                                                      f"{quote(name, safe='')}")
        if status == 404:
            return ActionResult(False, f"no deployment {deployment!r} on {redact_url(self._settings().url)} "
                                       "(check 'prefect deployment ls')", status=404, retryable=False)
        if status != 200 or not isinstance(reply, dict):
            return self._failure(f"GET deployment {deployment!r}", status, text)
        self._ids[key] = str(reply["id"])
        return self._ids[key]

    async def execute(self, firing: Firing) -> ActionResult:
        spec = PrefectTrigger.model_validate(firing.body or {})
        params = firing.resolved if isinstance(firing.resolved, dict) else {}
        body: dict[str, Any] = {"parameters": params, "idempotency_key": firing.id,
                                "tags": list(spec.tags or [])}
        if spec.job_variables:
            body["job_variables"] = spec.job_variables
        if spec.flow_run_name:
            body["name"] = spec.flow_run_name
        if spec.work_queue_name:
            body["work_queue_name"] = spec.work_queue_name
        try:
            found = await self.deployment_id(spec.deployment)
            if isinstance(found, ActionResult):
                return found
            async with self._gate:
                status, reply, text = await self._call("POST", f"/deployments/{found}/create_flow_run", body)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
            return self._unreachable("create flow run", err)
        if status in (200, 201) and isinstance(reply, dict):
            verb = "created" if status == 201 else "already exists (same idempotency key)"
            return ActionResult(True, f"flow run {reply.get('name')} ({reply.get('id')}) of {spec.deployment} {verb}",
                                status=status)
        if status == 404:  # the deployment was deleted since we looked it up
            self._ids.pop((self._settings().url, spec.deployment), None)
        return self._failure(f"create flow run of {spec.deployment}", status, text)


class PrefectEmitEventAction(_PrefectAction):
    """One Prefect event per firing, with an id derived from the firing id."""

    kind = "prefectEvent"

    def event_for(self, firing: Firing) -> dict[str, Any]:
        spec = PrefectEventTrigger.model_validate(firing.body or {})
        resource = {"prefect.resource.id": f"argo-events.sensor.{firing.sensor}", **(spec.resource or {})}
        related = list(spec.related or [])
        for dep, ev in firing.events.items():
            related.append({"prefect.resource.id": f"argo-events.event.{ev.id}",
                            "prefect.resource.role": f"dependency:{dep}", "argo-events.source": ev.source,
                            "argo-events.subject": ev.subject})
        return {"id": event_id_for(firing.id), "event": spec.event, "occurred": datetime.now(timezone.utc).isoformat(),
                "resource": resource, "related": related,
                "payload": firing.resolved if isinstance(firing.resolved, dict) else {"value": firing.resolved}}

    async def execute(self, firing: Firing) -> ActionResult:
        event = self.event_for(firing)
        try:
            status, _, text = await self._call("POST", "/events", [event])
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
            return self._unreachable("emit event", err)
        if status in (200, 201, 202, 204):
            return ActionResult(True, f"Prefect event {event['event']} ({event['id']}) emitted", status=status)
        return self._failure(f"emit Prefect event {event['event']}", status, text)
