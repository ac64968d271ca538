"""The sqs event source against moto's server mode (real aiobotocore over HTTP), started once per session."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time

import pytest

from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime
from airflow_argo_events.testing.plugin import unique_name

from ..brokers import sqs_client
from .test_kafka import GatedBus
from .test_sources import Running, manifest

pytestmark = pytest.mark.timeout(90)

KEYS = {"accessKey": {"name": "aws", "key": "access"}, "secretKey": {"name": "aws", "key": "secret"}}


@pytest.fixture(autouse=True)
def aws_secrets(monkeypatch):
    monkeypatch.setenv("ARGO_EVENTS_SECRET_AWS_ACCESS", "testing")
    monkeypatch.setenv("ARGO_EVENTS_SECRET_AWS_SECRET", "testing")


async def new_queue(url: str, **attributes) -> str:
    name = unique_name("q")
    async with sqs_client(url) as sqs:
        await sqs.create_queue(QueueName=name, Attributes=attributes)
    return name


async def send(url: str, queue: str, body: str, **attrs) -> str:
    async with sqs_client(url) as sqs:
        q = (await sqs.get_queue_url(QueueName=queue))["QueueUrl"]
        return (await sqs.send_message(QueueUrl=q, MessageBody=body, MessageAttributes=attrs))["MessageId"]


async def visible(url: str, queue: str) -> int:
    """Messages still in the queue, visible or in flight (what has not been deleted)."""
    async with sqs_client(url) as sqs:
        q = (await sqs.get_queue_url(QueueName=queue))["QueueUrl"]
        a = (await sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["All"]))["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def sqs_es(name: str, url: str, queue: str, **cfg):
    return manifest(name, {"sqs": {"ev": {"region": "us-east-1", "queue": queue, "endpoint": url,
                                          "waitTimeSeconds": 1, **KEYS, **cfg}}})


async def test_payload_is_argos_and_messages_are_deleted_after_the_bus_has_them(bus, moto_server):
    queue = await new_queue(moto_server.url)
    mid = await send(moto_server.url, queue, '{"order": 7}',
                     k={"DataType": "String", "StringValue": "v"}, b={"DataType": "Binary", "BinaryValue": b"\x00\x01"})
    plain = await send(moto_server.url, queue, "not json \xff")
    async with Running(sqs_es("sqs", moto_server.url, queue, metadata={"team": "data"}), bus) as r:
        first, second = sorted(await r.events(2), key=lambda e: e.data["messageId"] != mid)
        deadline = time.monotonic() + 20
        while await visible(moto_server.url, queue) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert await visible(moto_server.url, queue) == 0
    assert (first.source, first.subject, first.type) == ("sqs", "ev", "sqs")
    assert first.data == {
        "messageId": mid, "body": base64.b64encode(b'{"order": 7}').decode(), "metadata": {"team": "data"},
        "messageAttributes": {
            "k": {"BinaryListValues": None, "BinaryValue": None, "DataType": "String", "StringListValues": None,
                  "StringValue": "v"},
            "b": {"BinaryListValues": None, "BinaryValue": "AAE=", "DataType": "Binary", "StringListValues": None,
                  "StringValue": None}}}
    assert second.data["messageId"] == plain and second.data["messageAttributes"] is None
    assert base64.b64decode(second.data["body"]).decode() == "not json \xff"


async def test_json_body_and_what_is_not_json(bus, moto_server):
    queue = await new_queue(moto_server.url)
    kept = await new_queue(moto_server.url)
    for q in (queue, kept):
        await send(moto_server.url, q, "{oops")
        await send(moto_server.url, q, '{"ok": true}')
    async with Running(sqs_es("sqsj", moto_server.url, queue, jsonBody=True), bus) as r:
        (ev,) = await r.events(1)
        deadline = time.monotonic() + 20
        while await visible(moto_server.url, queue) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert await visible(moto_server.url, queue) == 0  # the bad one is deleted (no dlq), as Argo
    assert ev.data["body"] == {"ok": True}
    async with Running(sqs_es("sqsd", moto_server.url, kept, jsonBody=True, dlq=True), bus) as r:
        (ev,) = await r.events(1)
        deadline = time.monotonic() + 20
        while await visible(moto_server.url, kept) != 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert await visible(moto_server.url, kept) == 1  # dlq: left for the redrive policy


async def test_nothing_is_deleted_before_the_bus_acked(bus, moto_server):
    queue = await new_queue(moto_server.url)
    for i in range(3):
        await send(moto_server.url, queue, f"m{i}")
    gated = GatedBus(bus)
    rt = EventSourceRuntime(sqs_es("sqsg", moto_server.url, queue), gated)
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    try:
        deadline = time.monotonic() + 20
        while rt.queue.qsize() < 2 and time.monotonic() < deadline:  # read, waiting on the gate
            await asyncio.sleep(0.1)
        assert await visible(moto_server.url, queue) == 3
        gated.gate.set()
        while await visible(moto_server.url, queue) and time.monotonic() < deadline + 20:
            await asyncio.sleep(0.2)
        assert await visible(moto_server.url, queue) == 0 and rt.count == 3
    finally:
        gated.gate.set()
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.mark.timeout(240)  # a hang detector: each wait below has its own deadline
async def test_server_restart_loses_nothing(bus, moto_server, caplog):
    """moto stops (the source backs off) and comes back with its queue: every message arrives once.

    Each step waits for what it needs, never a fixed time: on a loaded machine the source may
    take long to meet the dead endpoint (botocore retries a refused connection for some
    seconds before the source sees an error), and long to come back afterwards.
    """
    caplog.set_level(logging.WARNING, "airflow_argo_events.sources")
    queue = await new_queue(moto_server.url)
    async with Running(sqs_es("sqsr", moto_server.url, queue, jsonBody=True), bus) as r:
        await send(moto_server.url, queue, '{"i": 0}')
        got = [e.data["body"]["i"] for e in await r.events(1, timeout=60)]
        # deleted before the outage (else its delete could fail, and it would come back as a
        # duplicate after the visibility timeout)
        deadline = time.monotonic() + 60
        while await visible(moto_server.url, queue) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert await visible(moto_server.url, queue) == 0, "message 0 was published but never deleted"
        await asyncio.to_thread(moto_server.stop)
        deadline = time.monotonic() + 90

        def backing_off() -> bool:
            return any("sqsr/ev (sqs)" in x.getMessage() and "reconnecting in" in x.getMessage()
                       for x in caplog.records)

        while not backing_off() and time.monotonic() < deadline:  # the source meets the dead endpoint
            await asyncio.sleep(0.2)
        assert backing_off(), "the source never reported the endpoint as unreachable"
        await asyncio.to_thread(moto_server.start)
        for i in (1, 2):
            await send(moto_server.url, queue, json.dumps({"i": i}))
        got += [e.data["body"]["i"] for e in await r.events(2, timeout=90)]
        assert r.rt.duplicates == 0
    assert sorted(got) == [0, 1, 2]


async def test_missing_secret_is_one_line(bus, moto_server, monkeypatch):
    from airflow_argo_events.core.exceptions import SpecError

    monkeypatch.delenv("ARGO_EVENTS_SECRET_AWS_SECRET")
    rt = EventSourceRuntime(sqs_es("sqsb", moto_server.url, "nope"), bus)
    with pytest.raises(SpecError, match=r"spec.sqs.ev.secretKey: secret aws/secret not found"):
        await asyncio.wait_for(rt.run(), 30)


async def test_runs_under_the_event_source_trigger(moto_server):
    from airflow_argo_events.triggers import EventSourceTrigger

    queue = await new_queue(moto_server.url)
    doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource", "metadata": {"name": "sqst"},
           "spec": {"sqs": {"ev": {"region": "us-east-1", "queue": queue, "endpoint": moto_server.url,
                                   "waitTimeSeconds": 1, "jsonBody": True, **KEYS}}}}
    await send(moto_server.url, queue, '{"x": 1}')
    gen = EventSourceTrigger(eventsource=doc, event_name="ev", nats_conn_id=None).run()
    try:
        event = await asyncio.wait_for(anext(gen), 40)
    finally:
        await gen.aclose()
    assert event.payload["data"]["body"] == {"x": 1} and event.payload["type"] == "sqs"


def test_cli_eventsource_run_publishes_sqs_messages(nats_url, moto_server, tmp_path):
    from .test_kafka import cli_run_one

    queue = asyncio.run(new_queue(moto_server.url))
    spec = {"sqs": {"ev": {"region": "us-east-1", "queue": queue, "endpoint": moto_server.url, "waitTimeSeconds": 1,
                           "jsonBody": True, **KEYS}}}
    event = cli_run_one(nats_url, tmp_path, "clisqs", spec,
                        lambda: asyncio.run(send(moto_server.url, queue, '{"k": "v"}')))
    assert event["data"]["body"] == {"k": "v"}
