"""github, gitlab, slack, stripe, bitbucketserver and bitbucket sources: signed deliveries onto the real bus.

The services' hook APIs are local fakes (:class:`FakeHookAPI`, an aiohttp app answering the
few endpoints Argo calls, with the service's auth header checked); deliveries are signed here
exactly as each service signs them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from airflow_argo_events.core.bus.embedded import free_port

from .test_sources import Running, manifest

pytestmark = pytest.mark.timeout(60)


class FakeHookAPI:
    """A hook API: ``GET|POST <target>/hooks``, ``DELETE <target>/hooks/<id>``, under any prefix.

    ``auth`` is the header (name, value) every call must carry, else 401 with a JSON
    ``message`` as GitHub and GitLab answer. ``hooks`` maps the target path to its hooks.
    """

    def __init__(self, auth: tuple[str, str], list_status: int = 200, extra_routes: tuple = (),
                 collection: str = "hooks", paged: bool = False, id_key: str = "id") -> None:
        self.auth = auth
        self.collection = collection
        self.paged = paged  # Bitbucket's {"values": [...], "isLastPage": true}
        self.id_key = id_key  # Bitbucket Cloud names hooks by "uuid": "{...}"
        self.list_status = list_status
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.hooks: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[tuple[str, str]] = []
        self.next_id = 100
        self.extra_routes = list(extra_routes)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get(self.auth[0]) == self.auth[1]

    async def _hooks(self, request: web.Request) -> web.Response:
        target = request.match_info["target"]
        self.calls.append((request.method, request.path))
        if not self._authorized(request):
            return web.json_response({"message": "Bad credentials"}, status=401)
        if request.method == "GET":
            if self.list_status != 200:
                return web.json_response({"message": "Not Found"}, status=self.list_status)
            hooks = self.hooks.get(target, [])
            return web.json_response({"values": hooks, "isLastPage": True} if self.paged else hooks)
        hook = {**await request.json(), self.id_key: self.next_id if self.id_key == "id" else f"{{{self.next_id}}}"}
        self.next_id += 1
        self.hooks.setdefault(target, []).append(hook)
        return web.json_response(hook, status=201)

    async def _hook(self, request: web.Request) -> web.Response:
        target, hook_id, key = request.match_info["target"], request.match_info["id"], self.id_key
        self.calls.append((request.method, request.path))
        if not self._authorized(request):
            return web.json_response({"message": "Bad credentials"}, status=401)
        before = self.hooks.get(target, [])
        if request.method == "PUT":
            self.hooks[target] = [{**await request.json(), key: h[key]} if str(h[key]) == hook_id else h
                                  for h in before]
            return web.json_response({key: hook_id})
        self.hooks[target] = [h for h in before if str(h[key]) != hook_id]
        return web.Response(status=204 if len(before) != len(self.hooks[target]) else 404)

    async def __aenter__(self) -> FakeHookAPI:
        app = web.Application()
        for method, path, handler in self.extra_routes:
            app.router.add_route(method, path, handler)
        app.router.add_route("*", "/{target:.+}/" + self.collection, self._hooks)
        app.router.add_route("*", "/{target:.+}/" + self.collection + "/{id:[^/]+}", self._hook)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.runner.cleanup()


async def wait_for(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.1)
    return check()


def hook_block(port: int, endpoint: str, url: str = "") -> dict[str, Any]:
    block = {"port": str(port), "endpoint": endpoint, "method": "POST"}
    return {**block, "url": url} if url else block


async def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.post(f"http://127.0.0.1:{port}{path}", data=body,
                                                          headers=headers) as resp:
        return resp.status, await resp.text()


# ---------------------------------------------------------------------------- github

def github_sign(secret: str, body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


async def test_github_signed_delivery_is_published_in_argos_shape_and_forgeries_are_refused(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_GH_SECRET", "s3cret")
    port = free_port()
    es = manifest("gh", {"github": {"push": {
        "repositories": [{"owner": "argoproj", "names": ["argo-events"]}], "events": ["push"],
        "webhookSecret": {"name": "gh", "key": "secret"}, "webhook": hook_block(port, "/push"),
        "metadata": {"team": "ci"}}}})
    body = json.dumps({"ref": "refs/heads/main", "after": "abc"}).encode()
    delivery = str(uuid.uuid4())
    base = {"Content-Type": "application/json", "x-github-event": "push", "X-GitHub-Delivery": delivery}
    async with Running(es, bus) as r:
        refusals = [
            ({}, "missing signature"),
            (github_sign("other", body), "payload signature check failed"),
            ({"X-Hub-Signature-256": "sha256=zz"}, "payload signature check failed"),
            ({"X-Hub-Signature-256": "md5=00"}, "unknown hash type"),
        ]
        for headers, why in refusals:
            status, text = await post(port, "/push", body, {**base, **headers})
            assert (status, why in text) == (400, True), (headers, text)
        status, text = await post(port, "/push", body, {**base, "Content-Type": "text/plain", **github_sign(
            "s3cret", body)})
        assert status == 400 and "unsupported Content-Type" in text
        assert await r.events(1, timeout=1.0) == []
        assert await post(port, "/push", body, {**base, **github_sign("s3cret", body)}) == (200, "success")
        # GitHub's redelivery keeps X-GitHub-Delivery: the bus stores it once
        assert await post(port, "/push", body, {**base, **github_sign("s3cret", body)}) == (200, "success")
        # the legacy SHA-1 header alone is still accepted (go-github falls back to it)
        sha1 = {"X-Hub-Signature": "sha1=" + hmac.new(b"s3cret", body, hashlib.sha1).hexdigest()}
        assert (await post(port, "/push", body, {**base, "X-GitHub-Delivery": "d2", **sha1}))[0] == 200
        events = await r.events(3, timeout=3.0)
    assert len(events) == 2
    ev = events[0]
    assert (ev.source, ev.subject, ev.type) == ("gh", "push", "github")
    assert ev.data["body"] == {"ref": "refs/heads/main", "after": "abc", "X-GitHub-Event": "push",
                               "X-GitHub-Delivery": delivery}
    assert ev.data["headers"]["X-Github-Event"] == ["push"]  # Go's canonical header names, as in Argo
    assert ev.data["headers"]["X-Github-Delivery"] == [delivery]
    assert ev.data["metadata"] == {"team": "ci"} and "header" not in ev.data


async def test_github_form_delivery_and_no_secret(bus):
    port = free_port()
    es = manifest("ghform", {"github": {"push": {"organizations": ["argoproj"], "webhook": hook_block(port, "/f")}}})
    from urllib.parse import urlencode

    form = urlencode({"payload": json.dumps({"zen": "Keep it simple."})}).encode()
    async with Running(es, bus) as r:
        status, _ = await post(port, "/f", form, {"Content-Type": "application/x-www-form-urlencoded",
                                                  "X-GitHub-Event": "ping"})
        assert status == 200
        status, text = await post(port, "/f", b"[1,2]", {"Content-Type": "application/json"})
        assert status == 400 and "not a JSON object" in text
        (ev,) = await r.events(1)
    assert ev.data["body"] == {"zen": "Keep it simple.", "X-GitHub-Event": "ping", "X-GitHub-Delivery": ""}


async def test_github_registers_its_hook_and_deletes_it_on_finish(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_GH_TOKEN", "ghp_token")
    monkeypatch.setenv("ARGO_EVENTS_SECRET_GH_SECRET", "s3cret")
    port = free_port()
    async with FakeHookAPI(("Authorization", "token ghp_token")) as api:
        # a hook this endpoint already has on one repository is found, not duplicated
        api.hooks["repos/o/kept"] = [{"id": 7, "events": ["push", "pull_request"],
                                      "config": {"url": f"http://hooks.example.com:{port}/gh"}}]
        es = manifest("ghhooks", {"github": {"ev": {
            "repositories": [{"owner": "o", "names": ["a", "kept"]}], "events": ["pull_request", "push"],
            "apiToken": {"name": "gh", "key": "token"}, "webhookSecret": {"name": "gh", "key": "secret"},
            "active": True, "contentType": "json", "deleteHookOnFinish": True,
            "githubBaseURL": api.url, "githubUploadURL": api.url,
            "webhook": hook_block(port, "/gh", f"http://hooks.example.com:{port}")}}})
        async with Running(es, bus) as r:
            assert await wait_for(lambda: api.hooks.get("repos/o/a"))
            (hook,) = api.hooks["repos/o/a"]
            assert hook["name"] == "web" and hook["events"] == ["pull_request", "push"] and hook["active"] is True
            assert hook["config"] == {"url": f"http://hooks.example.com:{port}/gh", "insecure_ssl": "0",
                                      "content_type": "json", "secret": "s3cret"}
            assert r.rt.sources[0].hooks.ids == {"repos/o/a": hook["id"], "repos/o/kept": 7}
            assert len(api.hooks["repos/o/kept"]) == 1
        assert api.hooks["repos/o/a"] == [] and api.hooks["repos/o/kept"] == []
        assert ("DELETE", "/repos/o/kept/hooks/7") in api.calls


async def test_github_api_failure_is_one_error_line_and_events_still_flow(bus, monkeypatch, caplog):
    caplog.set_level(logging.INFO, "airflow_argo_events")
    monkeypatch.setenv("ARGO_EVENTS_SECRET_GH_TOKEN", "wrong")
    port = free_port()
    async with FakeHookAPI(("Authorization", "token right")) as api:
        es = manifest("ghfail", {"github": {"ev": {
            "organizations": ["acme"], "events": ["*"], "apiToken": {"name": "gh", "key": "token"},
            "githubBaseURL": api.url, "githubUploadURL": api.url,
            "webhook": hook_block(port, "/gh", "https://hooks.example.com")}}})
        async with Running(es, bus) as r:
            await wait_for(lambda: api.calls)
            body = b'{"action": "created"}'
            assert (await post(port, "/gh", body, {"Content-Type": "application/json"}))[0] == 200
            assert len(await r.events(1)) == 1
    errors = [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert "could not register the hook at orgs/acme" in errors[0] and "401 Bad credentials" in errors[0]
    assert "wrong" not in caplog.text  # the token never reaches a log


async def test_github_app_credentials_get_an_installation_token(bus, monkeypatch):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    monkeypatch.setenv("ARGO_EVENTS_SECRET_GHAPP_KEY", pem)
    port, seen = free_port(), {}

    async def access_token(request: web.Request) -> web.Response:
        import base64

        jwt = request.headers["Authorization"].removeprefix("Bearer ")
        head, claims, sig = jwt.split(".")
        pad = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))  # noqa: E731
        key.public_key().verify(pad(sig), f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
        seen["claims"] = json.loads(pad(claims))
        seen["installation"] = request.match_info["id"]
        return web.json_response({"token": "ghs_installation"}, status=201)

    routes = (("POST", "/app/installations/{id}/access_tokens", access_token),)
    async with FakeHookAPI(("Authorization", "token ghs_installation"), extra_routes=routes) as api:
        es = manifest("ghapp", {"github": {"ev": {
            "repositories": [{"owner": "o", "names": ["r"]}], "events": ["push"],
            "githubApp": {"privateKey": {"name": "ghapp", "key": "key"}, "appID": 42, "installationID": 7},
            "githubBaseURL": api.url, "githubUploadURL": api.url,
            "webhook": hook_block(port, "/app", "https://hooks.example.com")}}})
        async with Running(es, bus):
            assert await wait_for(lambda: api.hooks.get("repos/o/r"))
    assert seen["installation"] == "7" and seen["claims"]["iss"] == "42"
    assert seen["claims"]["exp"] - seen["claims"]["iat"] <= 600  # GitHub refuses longer-lived JWTs


# ---------------------------------------------------------------------------- gitlab

async def test_gitlab_token_checked_payload_in_argos_shape_and_hook_managed(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_GL_ACCESS", "glpat-x")
    monkeypatch.setenv("ARGO_EVENTS_SECRET_GL_TOKEN", "hook-token")
    port = free_port()
    async with FakeHookAPI(("PRIVATE-TOKEN", "glpat-x")) as api:
        es = manifest("gl", {"gitlab": {"mr": {
            "projects": ["group/project", "42"], "groups": ["platform"],
            "events": ["PushEvents", "MergeRequestsEvents"], "gitlabBaseURL": api.url,
            "accessToken": {"name": "gl", "key": "access"}, "secretToken": {"name": "gl", "key": "token"},
            "enableSSLVerification": True, "deleteHookOnFinish": True,
            "webhook": hook_block(port, "/gl", "https://hooks.example.com/")}}})
        body = json.dumps({"object_kind": "merge_request", "project": {"id": 42}}).encode()
        base = {"Content-Type": "application/json", "X-Gitlab-Event": "Merge Request Hook",
                "X-Gitlab-Event-UUID": str(uuid.uuid4())}
        async with Running(es, bus) as r:
            assert await wait_for(lambda: len(r.rt.sources[0].hooks.ids) == 3)
            (hook,) = api.hooks["api/v4/projects/group/project"]  # the path was sent URL-encoded
            assert hook["url"] == "https://hooks.example.com/gl" and hook["token"] == "hook-token"
            assert hook["push_events"] is True and hook["merge_requests_events"] is True
            assert hook["tag_push_events"] is False and hook["enable_ssl_verification"] is True
            assert set(api.hooks) == {"api/v4/projects/group/project", "api/v4/projects/42", "api/v4/groups/platform"}
            for headers in ({}, {"X-Gitlab-Token": "nope"}):
                assert await post(port, "/gl", body, {**base, **headers}) == (400, "token mismatch")
            status, text = await post(port, "/gl", b"{not json", {**base, "X-Gitlab-Token": "hook-token"})
            assert status == 400 and text.startswith("body is not valid JSON")
            assert await post(port, "/gl", body, {**base, "X-Gitlab-Token": "hook-token"}) == (200, "success")
            (ev,) = await r.events(1)
            assert await r.events(1, timeout=1.0) == []
        assert all(hooks == [] for hooks in api.hooks.values())  # deleteHookOnFinish
    assert (ev.type, ev.subject) == ("gitlab", "mr")
    assert ev.data["body"] == {"object_kind": "merge_request", "project": {"id": 42}}
    assert ev.data["headers"]["X-Gitlab-Event"] == ["Merge Request Hook"]
    assert ev.data["headers"]["X-Gitlab-Token"] == ["hook-token"]  # Argo passes every header on


async def test_gitlab_hook_kept_when_delete_hook_on_finish_is_off(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_GL_ACCESS", "glpat-x")
    port = free_port()
    async with FakeHookAPI(("PRIVATE-TOKEN", "glpat-x")) as api:
        es = manifest("glkeep", {"gitlab": {"push": {
            "projectID": "9", "events": ["TagPushEvents"], "gitlabBaseURL": api.url + "/api/v4",
            "accessToken": {"name": "gl", "key": "access"}, "webhook": hook_block(port, "/gl", "http://h")}}})
        async with Running(es, bus):
            assert await wait_for(lambda: api.hooks.get("api/v4/projects/9"))
        (hook,) = api.hooks["api/v4/projects/9"]
    assert hook["tag_push_events"] is True and "token" not in hook


# ---------------------------------------------------------------------------- slack

def slack_sign(secret: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    mac = hmac.new(secret.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": "v0=" + mac}


@pytest.fixture
def slack_es(monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_SLACK_SIGNING", "sign-me")
    monkeypatch.setenv("ARGO_EVENTS_SECRET_SLACK_TOKEN", "verif")
    port = free_port()
    es = manifest("sl", {"slack": {"ev": {"signingSecret": {"name": "slack", "key": "signing"},
                                          "token": {"name": "slack", "key": "token"},
                                          "webhook": hook_block(port, "/slack"), "metadata": {"m": "1"}}}})
    return es, port


async def test_slack_events_api_challenge_callback_and_forgeries(bus, slack_es):
    es, port = slack_es
    challenge = json.dumps({"token": "verif", "type": "url_verification", "challenge": "3eZbrw1a"}).encode()
    inner = {"type": "app_mention", "user": "U1", "text": "<@U0> deploy", "ts": "1.2", "channel": "C1"}
    callback = json.dumps({"token": "verif", "type": "event_callback", "event_id": "Ev1", "event": inner}).encode()
    js = {"Content-Type": "application/json"}
    async with Running(es, bus) as r:
        assert await post(port, "/slack", challenge, {**js, **slack_sign("sign-me", challenge)}) == (200, "3eZbrw1a")
        refusals = [
            ({}, "missing headers"),
            (slack_sign("other", callback), "signature validation failed"),
            (slack_sign("sign-me", callback, ts=int(time.time()) - 600), "timestamp is too old"),
            ({**slack_sign("sign-me", callback), "X-Slack-Request-Timestamp": "soon"}, "not a unix time"),
        ]
        for headers, why in refusals:
            status, text = await post(port, "/slack", callback, {**js, **headers})
            assert (status, why in text) == (401, True), (headers, text)
        wrong_token = callback.replace(b'"verif"', b'"stolen"')
        status, text = await post(port, "/slack", wrong_token, {**js, **slack_sign("sign-me", wrong_token)})
        assert status == 500 and "invalid verification token" in text
        assert await r.events(1, timeout=1.0) == []
        for _ in range(2):  # Slack's retry of the same event_id is stored once
            assert await post(port, "/slack", callback, {**js, **slack_sign("sign-me", callback),
                                                         "X-Slack-Retry-Num": "1"}) == (200, "success")
        events = await r.events(2, timeout=3.0)
    assert len(events) == 1
    assert events[0].data == {"type": "app_mention", "Data": inner}  # slack-go's EventsAPIInnerEvent, no metadata


async def test_slack_interaction_and_slash_command(bus, slack_es):
    from urllib.parse import urlencode

    es, port = slack_es
    action = {"type": "block_actions", "trigger_id": "T9", "user": {"id": "U1"}, "actions": [{"action_id": "ok"}]}
    interaction = urlencode({"payload": json.dumps(action)}).encode()
    command = urlencode({"token": "verif", "team_id": "T0", "team_domain": "acme", "channel_id": "C1",
                         "channel_name": "ops", "user_id": "U1", "user_name": "ann", "command": "/deploy",
                         "text": "prod", "response_url": "https://hooks.slack.com/commands/1", "trigger_id": "T10",
                         "api_app_id": "A1"}).encode()
    nothing = urlencode({"other": "x"}).encode()
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with Running(es, bus) as r:
        assert (await post(port, "/slack", interaction, {**form, **slack_sign("sign-me", interaction)}))[0] == 200
        assert (await post(port, "/slack", command, {**form, **slack_sign("sign-me", command)}))[0] == 200
        status, text = await post(port, "/slack", nothing, {**form, **slack_sign("sign-me", nothing)})
        assert status == 500 and "could not determine slack type" in text
        first, second = await r.events(2)
    assert first.data == action
    assert second.data == {"token": "verif", "team_id": "T0", "team_domain": "acme", "is_enterprise_install": False,
                           "channel_id": "C1", "channel_name": "ops", "user_id": "U1", "user_name": "ann",
                           "command": "/deploy", "text": "prod", "response_url": "https://hooks.slack.com/commands/1",
                           "trigger_id": "T10", "api_app_id": "A1"}


# ---------------------------------------------------------------------------- stripe

def stripe_sign(secret: str, body: bytes, ts: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if ts is None else ts
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={ts},v1={mac}"}


async def test_stripe_signed_event_filtered_and_published_as_argo(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_STRIPE_WHSEC", "whsec_test")
    port = free_port()
    es = manifest("st", {"stripe": {"charges": {
        "eventFilter": ["charge.succeeded"], "signingSecret": {"name": "stripe", "key": "whsec"},
        "webhook": hook_block(port, "/stripe"), "metadata": {"shop": "eu"}}}})
    event = {"id": "evt_1", "object": "event", "type": "charge.succeeded", "data": {"object": {"amount": 100}}}
    body = json.dumps(event).encode()
    other = json.dumps({**event, "id": "evt_2", "type": "charge.failed"}).encode()
    async with Running(es, bus) as r:
        for headers, why in [({}, "t= is not a unix time"),
                             (stripe_sign("whsec_other", body), "invalid Stripe signature"),
                             (stripe_sign("whsec_test", body, ts=int(time.time()) - 3600), "outside tolerance")]:
            status, text = await post(port, "/stripe", body, headers)
            assert (status, why in text) == (400, True), text
        assert await post(port, "/stripe", other, stripe_sign("whsec_test", other)) == (400, "invalid event")
        assert await post(port, "/stripe", b"[]", stripe_sign("whsec_test", b"[]")) == (400, "failed to parse the event")
        for _ in range(2):  # Stripe's retry keeps the event id: stored once
            assert await post(port, "/stripe", body, stripe_sign("whsec_test", body)) == (200, "success")
        events = await r.events(2, timeout=3.0)
    assert len(events) == 1
    assert events[0].data == {"event": event, "metadata": {"shop": "eu"}}
    assert events[0].type == "stripe"


async def test_stripe_create_webhook_registers_the_endpoint_once(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_STRIPE_KEY", "sk_test_1")
    created: list[dict[str, Any]] = []

    async def endpoints(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer sk_test_1":
            return web.json_response({"error": {"message": "Invalid API Key"}}, status=401)
        if request.method == "GET":
            return web.json_response({"object": "list", "data": created})
        form = await request.post()
        created.append({"id": f"we_{len(created)}", "url": form["url"],
                        "enabled_events": form.getall("enabled_events[]")})
        return web.json_response(created[-1])

    port = free_port()
    routes = (("*", "/v1/webhook_endpoints", endpoints),)
    async with FakeHookAPI(("x", "y"), extra_routes=routes) as api:
        monkeypatch.setenv("ARGO_EVENTS_STRIPE_API_URL", api.url)
        es = manifest("stc", {"stripe": {"ev": {"createWebhook": True, "apiKey": {"name": "stripe", "key": "key"},
                                                "eventFilter": ["invoice.paid", "charge.succeeded"],
                                                "webhook": hook_block(port, "/st", "https://pay.example.com")}}})
        for _ in range(2):  # a restart finds the endpoint it made
            async with Running(es, bus) as r:
                await wait_for(lambda: r.rt.sources[0].hooks.ids)
    assert created == [{"id": "we_0", "url": "https://pay.example.com/st",
                        "enabled_events": ["invoice.paid", "charge.succeeded"]}]


# ---------------------------------------------------------------------------- bitbucketserver, bitbucket

def hub_sign(secret: str, body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


REFS_CHANGED = {"eventKey": "repo:refs_changed", "date": "2026-01-01T00:00:00+0000",
                "repository": {"slug": "app", "project": {"key": "PRJ"}},
                "changes": [{"ref": {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"},
                             "refId": "refs/heads/main", "fromHash": "a", "toHash": "b", "type": "UPDATE"},
                            {"ref": {"id": "refs/tags/v1", "displayId": "v1", "type": "TAG"},
                             "refId": "refs/tags/v1", "fromHash": "0", "toHash": "c", "type": "ADD"}]}


async def test_bitbucketserver_signed_delivery_one_event_per_change_and_forgeries(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_BBS_SECRET", "bbs-secret")
    port = free_port()
    es = manifest("bbs", {"bitbucketserver": {"refs": {
        "bitbucketserverBaseURL": "https://bitbucket.example.com/rest", "oneEventPerChange": True,
        "webhookSecret": {"name": "bbs", "key": "secret"}, "webhook": hook_block(port, "/bbs"),
        "metadata": {"k": "v"}}}})
    body = json.dumps(REFS_CHANGED).encode()
    base = {"Content-Type": "application/json; charset=UTF-8", "X-Event-Key": "repo:refs_changed",
            "X-Request-Id": str(uuid.uuid4())}
    async with Running(es, bus) as r:
        for headers, why in [({}, "missing signature header"), (hub_sign("other", body), "hmac verification failed"),
                             ({"X-Hub-Signature": "sha"}, "hmac verification failed")]:
            status, text = await post(port, "/bbs", body, {**base, **headers})
            assert (status, why in text) == (400, True), text
        assert await r.events(1, timeout=1.0) == []
        for _ in range(2):  # a redelivery (same X-Request-Id) is stored once
            assert await post(port, "/bbs", body, {**base, **hub_sign("bbs-secret", body)}) == (200, "success")
        push = json.dumps({"eventKey": "pr:opened"}).encode()
        assert (await post(port, "/bbs", push, {"X-Event-Key": "pr:opened", **hub_sign("bbs-secret", push)}))[0] == 200
        events = await r.events(4, timeout=3.0)
    assert [e.data["body"]["changes"] for e in events[:2]] == [[c] for c in REFS_CHANGED["changes"]]
    assert events[0].data["body"]["repository"] == REFS_CHANGED["repository"]
    assert events[0].data["headers"]["X-Event-Key"] == ["repo:refs_changed"] and events[0].data["metadata"] == {"k": "v"}
    assert len(events) == 3 and events[2].data["body"] == {"eventKey": "pr:opened"}


async def test_bitbucket_cloud_delivery_and_optional_signature(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_BB_SECRET", "bb-secret")
    port, port2 = free_port(), free_port()
    plain = manifest("bb", {"bitbucket": {"push": {
        "repositories": [{"owner": "team", "repositorySlug": "app"}], "auth": {"oauthToken": {"name": "bb", "key": "t"}},
        "webhook": hook_block(port, "/bb")}}})
    signed = manifest("bbsig", {"bitbucket": {"push": {
        "repositories": [{"owner": "team", "repositorySlug": "app"}], "auth": {"oauthToken": {"name": "bb", "key": "t"}},
        "webhookSecret": {"name": "bb", "key": "secret"}, "webhook": hook_block(port2, "/bb")}}})
    body = json.dumps({"push": {"changes": []}, "repository": {"full_name": "team/app"}}).encode()
    headers = {"Content-Type": "application/json", "X-Event-Key": "repo:push", "X-Request-UUID": str(uuid.uuid4())}
    async with Running(plain, bus) as r:
        assert await post(port, "/bb", body, headers) == (200, "success")  # Argo checks nothing
        (ev,) = await r.events(1)
    assert ev.data == {"headers": ev.data["headers"], "body": json.loads(body)}
    assert ev.data["headers"]["X-Request-Uuid"] == [headers["X-Request-UUID"]]
    async with Running(signed, bus) as r:
        assert (await post(port2, "/bb", body, headers))[0] == 400
        assert (await post(port2, "/bb", body, {**headers, **hub_sign("bb-secret", body)}))[0] == 200
        assert len(await r.events(2, timeout=2.0)) == 1


# ---------------------------------------------------------------------------- shared behaviour

async def test_hostile_input_is_refused_and_the_source_keeps_serving(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_GL_TOKEN", "t")
    port = free_port()
    es = manifest("glhostile", {"gitlab": {"ev": {
        "projects": ["1"], "events": ["PushEvents"], "gitlabBaseURL": "https://gitlab.example.com",
        "accessToken": {"name": "gl", "key": "access"},  # no webhook.url: no hook is managed, the token is not read
        "secretToken": {"name": "gl", "key": "token"},
        "webhook": {**hook_block(port, "/gl"), "maxPayloadSize": 1024}}}})
    ok = {"X-Gitlab-Token": "t", "Content-Type": "application/json"}
    async with Running(es, bus) as r:
        assert (await post(port, "/gl", b"[" * 2000 + b"]" * 2000, ok))[0] == 413
        assert (await post(port, "/gl", b"[" * 500 + b"]" * 500, ok))[0] == 400  # deeper than the JSON limit
        assert (await post(port, "/gl", b'{"x": NaN}', ok))[0] == 400
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/gl", headers=ok) as resp:
            assert resp.status == 400  # the method is POST
        assert (await post(port, "/gl", b'{"object_kind": "push"}', ok))[0] == 200
        (ev,) = await r.events(1)
        assert r.rt.sources[0].refused == 4
    assert ev.data["body"] == {"object_kind": "push"}


async def test_runs_under_the_event_source_trigger(monkeypatch):
    from airflow_argo_events.triggers import EventSourceTrigger

    monkeypatch.setenv("ARGO_EVENTS_SECRET_GH_SECRET", "s3cret")
    port = free_port()
    doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource", "metadata": {"name": "ght"},
           "spec": {"github": {"push": {"repositories": [{"owner": "o", "names": ["r"]}],
                                        "webhookSecret": {"name": "gh", "key": "secret"},
                                        "webhook": hook_block(port, "/push")}}}}
    gen = EventSourceTrigger(eventsource=doc, event_name="push", nats_conn_id=None).run()
    first = asyncio.ensure_future(anext(gen))
    body = b'{"ref": "refs/heads/main"}'
    try:
        async def delivered():
            try:
                return await post(port, "/push", body, {"Content-Type": "application/json", "X-GitHub-Event": "push",
                                                        **github_sign("s3cret", body)})
            except aiohttp.ClientConnectionError:
                return None

        deadline = time.monotonic() + 20
        while await delivered() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        event = await asyncio.wait_for(first, 30)
    finally:
        first.cancel()
        await gen.aclose()
    assert event.payload["type"] == "github" and event.payload["data"]["body"]["ref"] == "refs/heads/main"


async def test_bitbucketserver_registers_updates_and_deletes_hooks_on_repos_and_projects(bus, monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_BBS_TOKEN", "bbs-token")
    monkeypatch.setenv("ARGO_EVENTS_SECRET_BBS_SECRET", "bbs-secret")
    port = free_port()
    url = f"https://hooks.example.com/bbs{port}"

    async def project_repos(request: web.Request) -> web.Response:
        start = int(request.query.get("start", "0"))  # two pages, as Bitbucket pages its lists
        if start == 0:
            return web.json_response({"values": [{"slug": "one"}], "isLastPage": False, "nextPageStart": 1})
        return web.json_response({"values": [{"slug": "two"}], "isLastPage": True})

    routes = (("GET", "/rest/api/1.0/projects/TEAM/repos", project_repos),)
    async with FakeHookAPI(("Authorization", "Bearer bbs-token"), extra_routes=routes, collection="webhooks",
                           paged=True) as api:
        # an existing hook with this URL but old events is updated in place
        api.hooks["rest/api/1.0/projects/PRJ/repos/app"] = [{"id": 5, "url": url, "events": ["pr:opened"]}]
        es = manifest("bbshooks", {"bitbucketserver": {"ev": {
            "bitbucketserverBaseURL": api.url + "/rest", "repositories": [{"projectKey": "PRJ", "repositorySlug": "app"}],
            "projects": ["TEAM"], "events": ["repo:refs_changed"], "accessToken": {"name": "bbs", "key": "token"},
            "webhookSecret": {"name": "bbs", "key": "secret"}, "deleteHookOnFinish": True,
            "webhook": hook_block(port, f"/bbs{port}", "https://hooks.example.com")}}})
        async with Running(es, bus) as r:
            assert await wait_for(lambda: len(r.rt.sources[0].hooks.ids) == 3)
            assert set(api.hooks) == {f"rest/api/1.0/projects/{p}" for p in ("PRJ/repos/app", "TEAM/repos/one",
                                                                             "TEAM/repos/two")}
            (updated,) = api.hooks["rest/api/1.0/projects/PRJ/repos/app"]
            assert updated == {"id": 5, "name": "Argo Events", "url": url, "active": True,
                               "events": ["repo:refs_changed"], "configuration": {"secret": "bbs-secret"}}
            (created,) = api.hooks["rest/api/1.0/projects/TEAM/repos/two"]
            assert created["events"] == ["repo:refs_changed"] and created["url"] == url
        assert all(hooks == [] for hooks in api.hooks.values())


@pytest.mark.parametrize("auth, header", [
    ({"oauthToken": {"name": "bb", "key": "token"}}, ("Authorization", "Bearer bb-oauth")),
    ({"basic": {"username": {"name": "bb", "key": "user"}, "password": {"name": "bb", "key": "password"}}},
     ("Authorization", "Basic " + __import__("base64").b64encode(b"ann:app-pass").decode())),
], ids=["oauthToken", "basic"])
async def test_bitbucket_registers_and_deletes_its_hook(bus, monkeypatch, auth, header):
    for key, value in (("TOKEN", "bb-oauth"), ("USER", "ann"), ("PASSWORD", "app-pass")):
        monkeypatch.setenv(f"ARGO_EVENTS_SECRET_BB_{key}", value)
    port = free_port()
    async with FakeHookAPI(header, paged=True, id_key="uuid") as api:
        monkeypatch.setenv("ARGO_EVENTS_BITBUCKET_API_URL", api.url + "/2.0")
        es = manifest("bbhooks", {"bitbucket": {"ev": {
            "repositories": [{"owner": "team", "repositorySlug": "app"}], "auth": auth, "events": ["repo:push"],
            "deleteHookOnFinish": True, "webhook": hook_block(port, "/bb", "https://hooks.example.com")}}})
        async with Running(es, bus) as r:
            assert await wait_for(lambda: api.hooks.get("2.0/repositories/team/app"))
            (hook,) = api.hooks["2.0/repositories/team/app"]
            assert hook == {"description": "Argo Events", "url": "https://hooks.example.com/bb", "active": True,
                            "events": ["repo:push"], "uuid": "{100}"}
            assert r.rt.sources[0].hooks.ids == {"repositories/team/app": "{100}"}
        assert api.hooks["2.0/repositories/team/app"] == []
        assert ("DELETE", "/2.0/repositories/team/app/hooks/{100}") in api.calls  # request.path is decoded
