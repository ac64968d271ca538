"""Argo's http trigger: send the payload built from parameters; ``Idempotency-Key`` = firing id."""

from __future__ import annotations

import asyncio
import json
import ssl
import tempfile
from typing import TYPE_CHECKING, Any

import aiohttp

from airflow_argo_events.core.actions.base import Action, ActionContext, ActionResult
from airflow_argo_events.core.redact import redact_text, redact_url
from airflow_argo_events.core.sensor.params import apply_params, compile_parameters
from airflow_argo_events.core.spec.sensor import HTTPTrigger

if TYPE_CHECKING:
    from airflow_argo_events.core.sensor.engine import Firing

DEFAULT_TIMEOUT = 60


def tls_context(tls: Any, ctx: ActionContext, where: str) -> ssl.SSLContext | None:
    """An SSL context from Argo's TLSConfig (secrets hold PEM text)."""
    if tls is None:
        return None
    sslctx = ssl.create_default_context()
    ca = ctx.secrets.maybe(tls.ca_cert_secret, f"{where}.tls.caCertSecret")
    if ca:
        sslctx.load_verify_locations(cadata=ca)
    cert = ctx.secrets.maybe(tls.client_cert_secret, f"{where}.tls.clientCertSecret")
    key = ctx.secrets.maybe(tls.client_key_secret, f"{where}.tls.clientKeySecret")
    if cert and key:
        with tempfile.NamedTemporaryFile("w", suffix=".pem") as cf, tempfile.NamedTemporaryFile("w", suffix=".pem") as kf:
            cf.write(cert)
            kf.write(key)
            cf.flush()
            kf.flush()
            sslctx.load_cert_chain(cf.name, kf.name)
    if tls.insecure_skip_verify:
        sslctx.check_hostname = False
        sslctx.verify_mode = ssl.CERT_NONE
    return sslctx


class HttpAction(Action):
    kind = "http"

    async def execute(self, firing: Firing) -> ActionResult:
        spec = HTTPTrigger.model_validate(firing.body or {})
        where = f"trigger {self.name}"
        headers = dict(spec.headers or {})
        for h in spec.secure_headers or []:
            if h.value_from and h.value_from.secret_key_ref:
                headers[h.name] = self.ctx.secrets.get(h.value_from.secret_key_ref, f"{where}.secureHeaders")
        if spec.dynamic_headers:
            dyn = apply_params({}, compile_parameters(spec.dynamic_headers), firing.events, firing.id)
            headers.update({k: str(v) for k, v in dyn.items()})
        if spec.host:
            headers["Host"] = spec.host
        headers["Idempotency-Key"] = firing.id
        auth = None
        if spec.basic_auth:
            auth = aiohttp.BasicAuth(
                self.ctx.secrets.get(spec.basic_auth.username, f"{where}.basicAuth.username"),
                self.ctx.secrets.get(spec.basic_auth.password, f"{where}.basicAuth.password"),
            )
        payload = firing.resolved
        if isinstance(payload, (dict, list)):
            data = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        elif payload is None:
            data = b""
        else:
            data = str(payload).encode()
        method = (spec.method or "POST").upper()
        shown = redact_url(spec.url)  # the outcome detail is logged at INFO on every firing
        session = await self.ctx.http()
        try:
            async with session.request(
                method, spec.url, data=data if method not in ("GET", "HEAD") else None, headers=headers, auth=auth,
                ssl=tls_context(spec.tls, self.ctx, where) or True,
                timeout=aiohttp.ClientTimeout(total=spec.timeout or DEFAULT_TIMEOUT),
            ) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as err:
            # aiohttp's errors may quote the URL (yarl keeps the password in str(URL)); a
            # ValueError is e.g. basicAuth given together with credentials in the URL.
            return ActionResult(False, f"{method} {shown}: {type(err).__name__}: {redact_text(str(err))}")
        policy = firing.trigger_spec.policy if firing.trigger_spec else None
        allow = policy.status.allow if policy and policy.status else None
        if allow is not None and status not in allow:
            return ActionResult(False, f"{method} {shown}: status {status} not in policy.status.allow {allow}",
                                status=status)
        return ActionResult(True, f"{method} {shown}: {status}", status=status)
