"""The sns event source against moto's server mode: subscribe, real signed deliveries, confirmation, unsubscribe."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from airflow_argo_events.core.bus.embedded import free_port
from airflow_argo_events.testing.plugin import unique_name

from .test_sources import Running, manifest
from .test_sqs import KEYS, aws_secrets  # noqa: F401 - the same AWS keys (an autouse fixture)

pytestmark = pytest.mark.timeout(90)

class CertServingProxy:
    """moto, plus what moto's server mode cannot answer: an unsigned GET of the signing certificate.

    Real SNS (and LocalStack) serve certificates at their endpoint; moto keeps them in its
    in-process backend. API calls are forwarded to moto unchanged.
    """

    def __init__(self, moto_url: str) -> None:
        self.moto_url = moto_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    async def __aenter__(self):
        from aiohttp import web

        async def pem(request):
            from moto.core import DEFAULT_ACCOUNT_ID
            from moto.sns.models import sns_backends

            key = sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]._message_public_keys.get(request.match_info["name"])
            return web.Response(body=key) if key else web.Response(status=404)

        async def forward(request):
            async with aiohttp.ClientSession() as http, http.request(
                    request.method, self.moto_url + request.path_qs, data=await request.read(),
                    headers={k: v for k, v in request.headers.items() if k.lower() != "host"}) as resp:
                return web.Response(status=resp.status, body=await resp.read(),
                                    headers={"Content-Type": resp.headers.get("Content-Type", "text/xml")})

        app = web.Application()
        app.router.add_get("/{name:SimpleNotificationService-[^/]+\\.pem}", pem)
        app.router.add_route("*", "/{tail:.*}", forward)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()


def sns_client(url: str):
    from aiobotocore.session import get_session

    return get_session().create_client("sns", region_name="us-east-1", endpoint_url=url,
                                       aws_access_key_id="testing", aws_secret_access_key="testing")


async def new_topic(url: str) -> str:
    async with sns_client(url) as sns:
        return (await sns.create_topic(Name=unique_name("topic")))["TopicArn"]


async def subscriptions(url: str, topic: str) -> list[str]:
    async with sns_client(url) as sns:
        reply = await sns.list_subscriptions_by_topic(TopicArn=topic)
    return [s["Endpoint"] for s in reply["Subscriptions"]]


def sns_es(name: str, moto_url: str, topic: str, port: int, **cfg):
    return manifest(name, {"sns": {"ev": {
        "topicArn": topic, "region": "us-east-1", "endpoint": moto_url, **KEYS,
        "webhook": {"port": str(port), "endpoint": "/sns", "method": "POST", "url": f"http://127.0.0.1:{port}"},
        **cfg}}})


async def wait_for(check, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.2)
    return await check()


async def test_subscribes_receives_signed_notifications_and_unsubscribes(bus, moto_server):
    topic, port = await new_topic(moto_server.url), free_port()
    async with CertServingProxy(moto_server.url) as proxy, Running(sns_es(
            "sns", proxy.url, topic, port, validateSignature=True, metadata={"team": "data"}), bus) as r:
        assert await wait_for(lambda: subscriptions(moto_server.url, topic)) == [f"http://127.0.0.1:{port}/sns"]
        async with sns_client(moto_server.url) as sns:
            # no Subject: moto leaves it out of the string it signs, which AWS includes (string_to_sign does)
            sent = await sns.publish(TopicArn=topic, Message='{"order": 7}')
        (ev,) = await r.events(1, timeout=30)
        assert r.rt.sources[0].refused == 0
    assert (ev.source, ev.subject, ev.type) == ("sns", "ev", "sns")
    body = ev.data["body"]
    assert body["Type"] == "Notification" and body["MessageId"] == sent["MessageId"]
    assert json.loads(body["Message"]) == {"order": 7}
    assert body["TopicArn"] == topic and ev.data["metadata"] == {"team": "data"}
    assert "Content-Type" in ev.data["header"]
    assert await wait_for(lambda: _none(moto_server.url, topic)) == "none"  # unsubscribed on stop


async def _none(url, topic):
    return "none" if not await subscriptions(url, topic) else None


async def test_bad_signatures_are_refused_and_nothing_is_published(bus, moto_server):
    topic, port = await new_topic(moto_server.url), free_port()
    base = {"Type": "Notification", "MessageId": "m1", "TopicArn": topic, "Message": "hi",
            "Timestamp": "2026-01-01T00:00:00.000Z", "SignatureVersion": "2", "Signature": "AAAA"}
    cases = [
        ({**base, "SigningCertURL": "https://evil.example.com/cert.pem"}, "not an https URL on sns"),
        ({**base, "SigningCertURL": "http://sns.us-east-1.amazonaws.com/x.pem"}, "not an https URL on sns"),
        ({**base, "Signature": "%%%", "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem"}, "not base64"),
        ({**base, "SignatureVersion": "9", "SigningCertURL": "https://sns.us-east-1.amazonaws.com/x.pem"},
         "unknown SignatureVersion"),
        ({**base, "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-nope.pem"},
         "signing certificate not usable"),
    ]
    async with CertServingProxy(moto_server.url) as proxy, Running(sns_es(
            "snsbad", proxy.url, topic, port, validateSignature=True), bus) as r, aiohttp.ClientSession() as http:
        await wait_for(lambda: subscriptions(moto_server.url, topic))
        for msg, why in cases:
            async with http.post(f"http://127.0.0.1:{port}/sns", data=json.dumps(msg)) as resp:
                assert resp.status == 401, why
                assert why in await resp.text()
        async with http.post(f"http://127.0.0.1:{port}/sns", data=b"[1]") as resp:
            assert resp.status == 400
        # a genuine delivery passes, then the same message tampered with is refused
        async with sns_client(moto_server.url) as sns:
            await sns.publish(TopicArn=topic, Message="genuine")
        (ev,) = await r.events(1, timeout=30)
        forged = {**ev.data["body"], "Message": "forged"}
        async with http.post(f"http://127.0.0.1:{port}/sns", data=json.dumps(forged)) as resp:
            assert resp.status == 401 and "signature does not match" in await resp.text()
        assert await r.events(1, timeout=1.0) == []
    assert ev.data["body"]["Message"] == "genuine"


async def test_subscription_confirmation_calls_confirm_subscription(bus, moto_server, caplog):
    import logging

    caplog.set_level(logging.INFO, "airflow_argo_events.sources.sns")
    topic, port = await new_topic(moto_server.url), free_port()
    es = sns_es("snsconf", moto_server.url, topic, port)
    async with Running(es, bus), aiohttp.ClientSession() as http:
        await wait_for(lambda: subscriptions(moto_server.url, topic))
        msg = {"Type": "SubscriptionConfirmation", "MessageId": "c1", "TopicArn": topic, "Token": "a" * 64,
               "Message": "confirm", "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
               "Timestamp": "2026-01-01T00:00:00.000Z"}
        async with http.post(f"http://127.0.0.1:{port}/sns", data=json.dumps(msg)) as resp:
            assert resp.status == 200 and await resp.text() == "confirmed"
    assert any("subscription confirmed" in r.getMessage() for r in caplog.records)


def test_string_to_sign_is_awss_canonical_form():
    from airflow_argo_events.core.sources.sns import string_to_sign

    msg = {"Type": "Notification", "MessageId": "m", "TopicArn": "t", "Subject": "s", "Message": "hi",
           "Timestamp": "ts", "Signature": "x", "UnsubscribeURL": "u"}
    assert string_to_sign(msg) == b"Message\nhi\nMessageId\nm\nSubject\ns\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n"
    confirm = {"Type": "SubscriptionConfirmation", "MessageId": "m", "Token": "k", "TopicArn": "t", "Message": "c",
               "SubscribeURL": "https://x", "Timestamp": "ts"}
    assert string_to_sign(confirm) == (b"Message\nc\nMessageId\nm\nSubscribeURL\nhttps://x\nTimestamp\nts\n"
                                       b"Token\nk\nTopicArn\nt\nType\nSubscriptionConfirmation\n")


async def test_runs_under_the_event_source_trigger(moto_server):
    from airflow_argo_events.triggers import EventSourceTrigger

    topic, port = await new_topic(moto_server.url), free_port()
    doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource", "metadata": {"name": "snst"},
           "spec": {"sns": {"ev": {"topicArn": topic, "region": "us-east-1", "endpoint": moto_server.url, **KEYS,
                                   "webhook": {"port": str(port), "endpoint": "/sns", "method": "POST",
                                               "url": f"http://127.0.0.1:{port}"}}}}}
    gen = EventSourceTrigger(eventsource=doc, event_name="ev", nats_conn_id=None).run()
    first = asyncio.ensure_future(anext(gen))
    try:
        await wait_for(lambda: subscriptions(moto_server.url, topic))
        async with sns_client(moto_server.url) as sns:
            await sns.publish(TopicArn=topic, Message="via trigger")
        event = await asyncio.wait_for(first, 40)
    finally:
        first.cancel()
        await gen.aclose()
    assert event.payload["data"]["body"]["Message"] == "via trigger" and event.payload["type"] == "sns"
