"""Start an Airflow DAG run through the REST API v2, one run per firing.

``POST /api/v2/dags/{dag_id}/dagRuns`` with ``dag_run_id = <prefix><firing id>`` and
``conf`` = the payload. 409 (the run exists) counts as success: a retried firing finds
its run. Authentication is Airflow 3's: ``POST /auth/token`` with a user and password
gives a JWT, refreshed once on 401; or a ready token (a JWT from the API, e.g. a long-lived
one an administrator issued) in the connection's extra ``{"token": "..."}``, sent as is.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp

from airflow_argo_events.core.actions.base import Action, ActionContext, ActionResult
from airflow_argo_events.core.redact import redact_text, redact_url
from airflow_argo_events.core.spec.sensor import AirflowDagRunTrigger

if TYPE_CHECKING:
    from airflow_argo_events.core.sensor.engine import Firing


class _TokenUnavailable(OSError):
    """``/auth/token`` answered 5xx or 429: the API is away or busy, which is worth a retry."""


def run_id_for(prefix: str, firing_id: str) -> str:
    return f"{prefix}{firing_id}"


async def conn_from_env(conn_id: str) -> tuple[str, str | None, str | None, str | None]:
    """``AIRFLOW_CONN_<ID>`` without importing Airflow: a URI (``http://user:pass@host:8080``, a
    token as ``?token=...``) or Airflow's JSON form (``{"host": ..., "extra": {"token": ...}}``)."""
    uri = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if not uri:
        raise LookupError(f"connection {conn_id!r} not found (set AIRFLOW_CONN_{conn_id.upper()})")
    if uri.lstrip().startswith("{"):
        try:
            doc = json.loads(uri)
        except ValueError:
            raise LookupError(f"connection {conn_id!r}: AIRFLOW_CONN_{conn_id.upper()} is not valid JSON") from None
        extra = doc.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra or "{}")
        return (api_base(doc.get("host"), doc.get("port"), doc.get("schema") or doc.get("conn_type")),
                doc.get("login"), doc.get("password"), extra.get("token"))
    p = urlsplit(uri)
    token = (parse_qs(p.query).get("token") or [None])[0]
    scheme = "https" if p.scheme in ("https",) else "http"
    return (api_base(p.hostname, p.port, scheme), unquote(p.username) if p.username else None,
            unquote(p.password) if p.password else None, token)


def api_base(host: str | None, port: int | str | None, scheme: str | None) -> str:
    """The API's base URL from a connection's host (which may carry its own scheme), port and schema."""
    host = host or "localhost"
    base = host if "://" in host else f"{scheme if scheme in ('http', 'https') else 'http'}://{host}"
    return f"{base}:{port}" if port else base


class AirflowDagRunAction(Action):
    kind = "airflow"

    def __init__(self, name: str, ctx: ActionContext) -> None:
        super().__init__(name, ctx)
        self._tokens: dict[str, str] = {}

    async def _endpoint(self, spec: AirflowDagRunTrigger) -> tuple[str, str | None, str | None, str | None]:
        where = f"trigger {self.name}"
        token = None
        if spec.conn_id:
            resolver = self.ctx.airflow_conn or conn_from_env
            base, user, password, *rest = await resolver(spec.conn_id)
            token = rest[0] if rest else None
        else:
            base, user, password = spec.url, None, None
        if spec.username:
            user = self.ctx.secrets.get(spec.username, f"{where}.airflow.username")
        if spec.password:
            password = self.ctx.secrets.get(spec.password, f"{where}.airflow.password")
        return base.rstrip("/"), user, password, token

    async def _token(self, session: aiohttp.ClientSession, base: str, user: str | None, password: str | None,
                     fresh: bool = False) -> str | None:
        if user is None:
            return None
        if fresh or base not in self._tokens:
            async with session.post(f"{base}/auth/token", json={"username": user, "password": password or ""},
                                    timeout=aiohttp.ClientTimeout(total=30)) as resp:
                if resp.status >= 500 or resp.status == 429:
                    raise _TokenUnavailable(f"POST {base}/auth/token: {resp.status} {(await resp.text())[:200]}")
                if resp.status >= 300:
                    raise PermissionError(f"POST {redact_url(base)}/auth/token: {resp.status} "
                                          f"{(await resp.text())[:200]}")
                self._tokens[base] = (await resp.json())["access_token"]
        return self._tokens[base]

    async def execute(self, firing: Firing) -> ActionResult:
        spec = AirflowDagRunTrigger.model_validate(firing.body or {})
        try:
            base, user, password, static_token = await self._endpoint(spec)
        except LookupError as err:
            return ActionResult(False, str(err), retryable=False)
        run_id = run_id_for(spec.run_id_prefix, firing.id)
        body: dict[str, Any] = {"dag_run_id": run_id, "logical_date": None,
                                "conf": firing.resolved if isinstance(firing.resolved, dict) else {
                                    "payload": firing.resolved}}
        if spec.note:
            body["note"] = spec.note
        url = f"{base}/api/v2/dags/{spec.dag_id}/dagRuns"
        session = await self.ctx.http()
        try:
            for attempt in (0, 1):
                # A token from the connection is used as is (no user to refresh it with).
                token = static_token or await self._token(session, base, user, password, fresh=attempt == 1)
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with session.post(url, json=body, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=30)) as resp:
                    text = await resp.text()
                    status = resp.status
                if status == 401 and attempt == 0 and user is not None and not static_token:
                    continue
                break
        except PermissionError as err:
            return ActionResult(False, str(err), retryable=False)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as err:
            return ActionResult(False, f"POST {redact_url(url)}: {type(err).__name__}: {redact_text(str(err))}")
        if status in (200, 201):
            return ActionResult(True, f"DAG run {spec.dag_id}/{run_id} created", status=status, ref=run_id)
        if status == 409:
            return ActionResult(True, f"DAG run {spec.dag_id}/{run_id} already exists", status=status, ref=run_id)
        if status == 401 and static_token:
            return ActionResult(False, f"POST {redact_url(url)}: 401: the connection's token was refused "
                                       "(expired or not a token of this API)", status=status, retryable=False)
        retryable = status >= 500 or status == 429
        return ActionResult(False, f"POST {redact_url(url)}: {status} {text[:300]}", status=status,
                            retryable=retryable)
