"""Argo's github event source: GitHub webhook deliveries, signed, with the hooks managed through the API.

Payload (``GithubEventData``): ``{"headers": {Name: [values]}, "body": <the delivery's JSON
with "X-GitHub-Event" and "X-GitHub-Delivery" added>, "metadata"}``. A ``form`` delivery's
``payload`` field is the body. With ``webhookSecret`` the ``X-Hub-Signature-256`` (else
``X-Hub-Signature``, SHA-1) HMAC of the raw body must match, or the caller gets 400, as
go-github's ``ValidatePayload`` in Argo answers.

With ``apiToken`` (or ``githubApp``) and ``webhook.url``, the hook is found or created on
every repository (``repositories``) or organization (``organizations``) through GitHub's
REST API (``githubBaseURL`` for GitHub Enterprise), and deleted on stop with
``deleteHookOnFinish``.

>>> # X-Hub-Signature-256: sha256=<hex HMAC-SHA256(webhookSecret, body)>
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, quote

from aiohttp import web

from airflow_argo_events.core.limits import InputLimitError, loads_strict
from airflow_argo_events.core.sources.service_webhook import HookAPIError, HookManager, ServiceWebhook, go_headers, log

GITHUB_API = "https://api.github.com"
APP_TOKEN_SECONDS = 540
"""A GitHub App's JWT lives at most 10 minutes; 9 leaves room for clock skew."""


def content_type(header: str) -> str:
    msg = Message()
    msg["content-type"] = header
    return msg.get_content_type()


def check_signature(headers: Any, body: bytes, secret: bytes) -> str | None:
    """go-github's ValidateSignature: ``sha256=``/``sha1=``/``sha512=`` hex HMAC of the body."""
    given = headers.get("X-Hub-Signature-256", "") or headers.get("X-Hub-Signature", "")
    if not given:
        return "missing signature"
    algo, _, hexmac = given.partition("=")
    digest = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}.get(algo)
    if digest is None:
        return f"unknown hash type prefix: {algo[:20]!r}"
    want = hmac.new(secret, body, digest).hexdigest()
    if not hmac.compare_digest(hexmac.lower().encode("utf-8", "surrogatepass"), want.encode()):
        return "payload signature check failed"
    return None


class GithubSource(ServiceWebhook):
    type = "github"
    delivery_header = "X-GitHub-Delivery"
    caller_secret_field = "webhook_secret"

    def check(self, request: web.Request, body: bytes) -> str | None:
        if content_type(request.headers.get("Content-Type", "")) not in ("application/json",
                                                                        "application/x-www-form-urlencoded"):
            return f"webhook request has unsupported Content-Type {request.headers.get('Content-Type', '')!r}"
        return super().check(request, body)

    def verify(self, request: web.Request, body: bytes, secret: str) -> str | None:
        return check_signature(request.headers, body, secret.encode())

    def payloads(self, request: web.Request, body: bytes) -> list[dict[str, Any]] | web.Response:
        raw = body
        if content_type(request.headers.get("Content-Type", "")) == "application/x-www-form-urlencoded":
            raw = (parse_qs(body.decode("utf-8", "replace")).get("payload") or [""])[0].encode()
        try:
            doc = loads_strict(raw)
        except InputLimitError as err:
            return self._refuse(400, f"body is not valid JSON: {err}")
        if not isinstance(doc, dict):
            return self._refuse(400, "body is not a JSON object")
        for name in ("X-GitHub-Event", "X-GitHub-Delivery"):
            doc[name] = request.headers.get(name, "")
        return [{"headers": go_headers(request), "body": doc}]

    def hook_manager(self) -> HookManager | None:
        if not self.typed.needs_hooks():
            return None
        c = self.typed
        base = c.github_base_url or GITHUB_API
        if c.api_token is not None:
            return GithubHooks(self, base, {"Authorization": "token " + self.secret(c.api_token, "apiToken")})
        key = self.secret(c.github_app.private_key, "githubApp.privateKey")
        return GithubHooks(self, base, {}, app=(c.github_app.app_id, c.github_app.installation_id, key))


class GithubHooks(HookManager):
    """GitHub's repository and organization hooks (``/repos/{owner}/{repo}/hooks``, ``/orgs/{org}/hooks``)."""

    service = "github"

    def __init__(self, source: GithubSource, base_url: str, headers: dict[str, str],
                 app: tuple[int, int, str] | None = None) -> None:
        super().__init__(source, base_url, {"Accept": "application/vnd.github+json", **headers})
        self.app = app
        self.app_token_until = 0.0
        c = source.typed
        self.events = list(c.events)
        config: dict[str, Any] = {"url": self.url, "insecure_ssl": "1" if c.insecure else "0"}
        if c.content_type:
            config["content_type"] = c.content_type
        if source.caller_secret:
            config["secret"] = source.caller_secret
        self.hook = {"name": "web", "events": self.events, "active": c.active, "config": config}

    def targets(self) -> list[str]:
        c = self.source.typed
        orgs = [f"orgs/{quote(o, safe='')}" for o in c.organizations or []]
        return orgs + [f"repos/{quote(r.owner, safe='')}/{quote(n, safe='')}"
                       for r in c.owned_repositories() for n in r.names]

    async def ensure_all(self) -> None:
        if self.app is not None and time.time() >= self.app_token_until:
            try:
                await self._app_token()
            except HookAPIError as err:
                log.error("github %s: could not get a GitHub App installation token: %s", self.source.label, err)
                return
        await super().ensure_all()

    async def _app_token(self) -> None:
        app_id, installation, pem = self.app  # type: ignore[misc]
        self.headers.pop("Authorization", None)
        jwt = app_jwt(app_id, pem)
        reply = await self.call("POST", f"app/installations/{installation}/access_tokens",
                                headers={"Authorization": f"Bearer {jwt}"})
        token = reply.get("token") if isinstance(reply, dict) else None
        if not isinstance(token, str) or not token:
            raise HookAPIError("the installation token reply has no token")
        if self._http is not None:
            await self.close()  # the session carries the headers: start one with the new token
        self.headers["Authorization"] = "token " + token
        self.app_token_until = time.time() + 50 * 60  # installation tokens live an hour

    def matches(self, hook: dict[str, Any]) -> bool:
        if (hook.get("config") or {}).get("url") != self.url:
            return False
        events = hook.get("events") or []
        return sorted(events) == sorted(self.events) or ("*" in events and "*" in self.events)


def app_jwt(app_id: int, pem: str, now: float | None = None) -> str:
    """A GitHub App's RS256 JWT (what ghinstallation signs in Argo), from its PEM private key."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as err:
        raise HookAPIError(f"githubApp.privateKey is not a PEM private key: {err}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise HookAPIError("githubApp.privateKey must be an RSA key")
    issued = int(now if now is not None else time.time()) - 60  # GitHub allows a minute of clock skew

    def part(doc: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).rstrip(b"=").decode()

    signing = part({"alg": "RS256", "typ": "JWT"}) + "." + part(
        {"iat": issued, "exp": issued + APP_TOKEN_SECONDS, "iss": str(app_id)})
    signature = key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


SOURCES = {"github": GithubSource}
