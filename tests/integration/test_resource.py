"""The resource event source against the fake Kubernetes API server (tests/support.py), with the real
kubernetes_asyncio client; events go to a real bus.

No cluster runs here: the fake speaks the API server's list and watch protocol (chunked watch
lines, resourceVersion resume, 410 Expired after compaction, label and field selectors) and
can go away and come back with its data, as an API server restarting in front of etcd does.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.runtime.eventsource_runtime import EventSourceRuntime

from ..support import FakeKubernetes
from .test_kafka import GatedBus
from .test_sources import Running, manifest

pytestmark = pytest.mark.timeout(120)

CM = "/api/v1/namespaces/default/configmaps"
WF = "/apis/argoproj.io/v1alpha1/namespaces/argo/workflows"


@pytest.fixture
def kube(tmp_path, monkeypatch):
    k = FakeKubernetes().start()
    monkeypatch.setenv("KUBECONFIG", k.kubeconfig(str(tmp_path / "kubeconfig")))
    yield k
    k.stop()


def cm(name: str, labels: dict | None = None, **data) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}}, "data": data}


def resource_es(name: str, events: dict) -> object:
    return manifest(name, {"resource": events})


def configmaps(types=("ADD", "UPDATE", "DELETE"), **cfg) -> dict:
    return {"namespace": "default", "version": "v1", "resource": "configmaps", "eventTypes": list(types), **cfg}


def watches(k: FakeKubernetes) -> list[dict]:
    """The query of every watch request the fake received, in order."""
    out = []
    for r in k.server.requests:
        q = {key: v[0] for key, v in parse_qs(urlsplit(r.path).query).items()}
        if r.method == "GET" and q.get("watch") == "true":
            out.append(q)
    return out


def lists(k: FakeKubernetes) -> int:
    return sum(1 for r in k.server.requests if r.method == "GET" and "watch=" not in r.path and "limit=" in r.path)


def summary(events) -> list[tuple]:
    return [(e.data["type"], e.data["body"]["metadata"]["name"], e.data["body"]["metadata"]["resourceVersion"])
            for e in events]


async def until(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return value


def deep_sorted(value) -> bool:
    if isinstance(value, dict):
        return list(value) == sorted(value) and all(deep_sorted(v) for v in value.values())
    if isinstance(value, list):
        return all(deep_sorted(v) for v in value)
    return True


async def test_payload_is_argos_for_add_update_delete(bus, kube):
    kube.create(CM, cm("first", {"app": "shop"}, color="blue"))
    es = resource_es("kres", {"cms": configmaps(metadata={"team": "data"})})
    async with Running(es, bus) as r:
        (added,) = await r.events(1, timeout=20)
        stored = kube.objects[f"{CM}/first"]
        await asyncio.to_thread(kube.update, f"{CM}/first", lambda o: o["data"].update(color="red"))
        await asyncio.to_thread(kube.delete, f"{CM}/first")
        updated, deleted = await r.events(2, timeout=20)
    assert (added.source, added.subject, added.type) == ("kres", "cms", "resource")
    # a core-group list carries no kind per item: the client fills it in, as client-go's UnstructuredList does
    assert added.data == {"type": "ADD", "body": {**stored, "apiVersion": "v1", "kind": "ConfigMap"},
                          "oldBody": None, "group": "", "version": "v1", "resource": "configmaps",
                          "metadata": {"team": "data"}}
    assert list(added.data) == ["type", "body", "oldBody", "group", "version", "resource", "metadata"]
    assert deep_sorted(added.data["body"])  # Go marshals an unstructured object's maps with sorted keys
    assert updated.data["type"] == "UPDATE"
    assert updated.data["oldBody"]["data"] == {"color": "blue"} and updated.data["body"]["data"] == {"color": "red"}
    assert int(updated.data["body"]["metadata"]["resourceVersion"]) > int(stored["metadata"]["resourceVersion"])
    assert deleted.data["type"] == "DELETE" and deleted.data["oldBody"] is None
    assert deleted.data["body"]["metadata"]["name"] == "first"
    assert len({added.id, updated.id, deleted.id}) == 3 and all(len(e.id) == 32 for e in (added, updated, deleted))


async def test_custom_resources_in_every_namespace_and_event_types(bus, kube):
    kube.create(WF, {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "wf-1"},
                     "spec": {"entrypoint": "main"}})
    es = resource_es("kwf", {"wfs": {"group": "argoproj.io", "version": "v1alpha1", "resource": "workflows",
                                     "eventTypes": ["DELETE"]}})
    async with Running(es, bus) as r:
        await until(lambda: watches(kube))
        other = "/apis/argoproj.io/v1alpha1/namespaces/other/workflows"
        await asyncio.to_thread(kube.create, other, {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                                                     "metadata": {"name": "wf-2"}})
        await asyncio.to_thread(kube.update, f"{other}/wf-2", lambda o: o.update(spec={"x": 1}))
        await asyncio.to_thread(kube.delete, f"{other}/wf-2")
        await asyncio.to_thread(kube.delete, f"{WF}/wf-1")
        got = await r.events(2, timeout=20)
    assert [(e.data["type"], e.data["body"]["metadata"]["namespace"]) for e in got] == [
        ("DELETE", "other"), ("DELETE", "argo")]
    assert got[0].data["group"] == "argoproj.io" and got[0].data["body"]["kind"] == "Workflow"
    assert watches(kube)[0].get("labelSelector") is None and r.rt.count == 2


async def test_label_selectors_go_to_the_server_with_argos_operations(bus, kube):
    for name, labels in [("web", {"tier": "web", "n": "5"}), ("api", {"tier": "api", "n": "1"}),
                         ("db", {"tier": "db"}), ("bare", {})]:
        kube.create(CM, cm(name, labels))
    es = resource_es("klab", {
        "in": configmaps(["ADD"], filter={"labels": [{"key": "tier", "operation": "in", "value": "web,api"}]}),
        "notin": configmaps(["ADD"], filter={"labels": [{"key": "tier", "operation": "notin", "value": "web,api"}]}),
        "exists": configmaps(["ADD"], filter={"labels": [{"key": "n", "operation": "exists"}]}),
        "absent": configmaps(["ADD"], filter={"labels": [{"key": "tier", "operation": "!"}]}),
        "gt": configmaps(["ADD"], filter={"labels": [{"key": "n", "operation": "gt", "value": "3"}]}),
        "default": configmaps(["ADD"], filter={"labels": [{"key": "tier", "value": "db"}]})})
    async with Running(es, bus) as r:
        got = await r.events(10, timeout=30)
    seen = {(e.subject, e.data["body"]["metadata"]["name"]) for e in got}
    assert seen == {("in", "web"), ("in", "api"), ("notin", "db"), ("notin", "bare"), ("exists", "web"),
                    ("exists", "api"), ("absent", "bare"), ("gt", "web"), ("default", "db")} and len(got) == 9
    selectors = {q.get("labelSelector") for q in watches(kube)}
    assert {"tier in (api,web)", "tier notin (api,web)", "n", "!tier", "n>3", "tier=db"} <= selectors


async def test_prefix_fields_and_created_by_filters(bus, kube):
    kube.clock = lambda: dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    kube.create(CM, cm("order-old", color="blue"))
    kube.create(CM, cm("other-old", color="blue"))
    kube.clock = lambda: dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    kube.create(CM, cm("order-new", color="black"))
    kube.create(WF, {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": {"name": "n"},
                     "spec": {"replicas": 3}})
    es = resource_es("kflt", {
        "prefix": configmaps(["ADD"], filter={"prefix": "order-"}),
        "fields": configmaps(["ADD"], filter={"fields": [{"key": "data.color", "operation": "==", "value": "^bl"},
                                                         {"key": "metadata.name", "operation": "!=", "value": "new$"}]}),
        "created": configmaps(["ADD"], filter={"createdBy": "2025-01-01T00:00:00Z"}),
        # gjson's Result.Str, as Argo reads it: a number is "" to the regular expression
        "number": {"namespace": "argo", "group": "argoproj.io", "version": "v1alpha1", "resource": "workflows",
                   "eventTypes": ["ADD"], "filter": {"fields": [{"key": "spec.replicas", "value": "^$"}]}},
        "missing": configmaps(["ADD"], filter={"fields": [{"key": "data.size", "operation": "!=", "value": "x"}]})})
    async with Running(es, bus) as r:
        got = await r.events(7, timeout=30)
    seen = sorted((e.subject, e.data["body"]["metadata"]["name"]) for e in got)
    assert seen == [("created", "order-old"), ("created", "other-old"), ("fields", "order-old"),
                    ("fields", "other-old"), ("number", "n"), ("prefix", "order-new"), ("prefix", "order-old")]


async def test_after_start_drops_what_happened_before_the_start(bus, kube):
    kube.clock = lambda: dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    kube.create(CM, cm("before"))
    kube.create(CM, cm("touched-before"))
    es = resource_es("kaft", {"ev": configmaps(filter={"afterStart": True})})
    async with Running(es, bus) as r:
        await until(lambda: watches(kube))
        kube.clock = lambda: dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
        await asyncio.to_thread(kube.create, CM, cm("after"))
        await asyncio.to_thread(kube.update, f"{CM}/before", lambda o: o.update(data={"k": "v"}))
        await asyncio.to_thread(kube.delete, f"{CM}/touched-before")
        got = await r.events(3, timeout=20)
    assert [(e.data["type"], e.data["body"]["metadata"]["name"]) for e in got] == [
        ("ADD", "after"), ("UPDATE", "before"), ("DELETE", "touched-before")]
    assert r.rt.count == 3


async def test_server_restart_mid_stream_resumes_from_the_resource_version(bus, kube):
    """The API server goes away while changes flow and comes back with them: each change arrives once, in
    order, and the watch resumes from the last resourceVersion read (no second LIST)."""
    kube.create(CM, cm("c0"))
    es = resource_es("krst", {"ev": configmaps()})
    writes_done = threading.Event()

    def writer() -> None:
        for i in range(1, 41):
            kube.create(CM, cm(f"c{i}"))
            if i % 3 == 0:
                kube.update(f"{CM}/c{i - 1}", lambda o, i=i: o.update(data={"i": str(i)}))
            time.sleep(0.01)
        writes_done.set()

    async with Running(es, bus) as r:
        got = await r.events(1, timeout=20)
        thread = threading.Thread(target=writer)
        thread.start()
        await until(lambda: kube.version >= 20)
        await asyncio.to_thread(kube.stop)  # watches are cut mid-stream
        await asyncio.sleep(1.0)  # the source meets a closed port and backs off; writes go on meanwhile
        await asyncio.to_thread(kube.start)
        await asyncio.to_thread(writes_done.wait, 30)
        thread.join()
        expected = 1 + 40 + 13
        got += await r.events(expected - 1, timeout=40)
        extra = await r.events(1, timeout=1.5)
    assert not extra and r.rt.duplicates == 0 and r.rt.count == expected
    versions = [int(e.data["body"]["metadata"]["resourceVersion"]) for e in got]
    assert versions == list(range(1, kube.version + 1))  # every change, once, in order
    assert lists(kube) == 1
    resumed = watches(kube)[1]["resourceVersion"]
    assert resumed != "" and 1 < int(resumed) < kube.version


async def test_too_old_resource_version_relists_and_reports_only_the_difference(bus, kube):
    for name in ("keep", "change", "drop"):
        kube.create(CM, cm(name, v="1"))
    es = resource_es("kgone", {"ev": configmaps()})
    async with Running(es, bus) as r:
        assert len(await r.events(3, timeout=20)) == 3
        await asyncio.to_thread(kube.stop)
        await asyncio.to_thread(kube.update, f"{CM}/change", lambda o: o.update(data={"v": "2"}))
        await asyncio.to_thread(kube.delete, f"{CM}/drop")
        await asyncio.to_thread(kube.create, CM, cm("new"))
        await asyncio.to_thread(kube.compact)  # the resume point is gone: 410 on the next watch
        await asyncio.to_thread(kube.start)
        got = await r.events(3, timeout=30)
        await until(lambda: len(watches(kube)) >= 3)
        await asyncio.to_thread(kube.create, CM, cm("later"))
        got += await r.events(1, timeout=20)
        extra = await r.events(1, timeout=1.5)
    assert [(e.data["type"], e.data["body"]["metadata"]["name"]) for e in got] == [
        ("UPDATE", "change"), ("ADD", "new"), ("DELETE", "drop"), ("ADD", "later")]
    assert got[0].data["oldBody"]["data"] == {"v": "1"} and got[2].data["body"]["data"] == {"v": "1"}
    assert not extra and r.rt.duplicates == 0
    assert lists(kube) == 2 and any(q["resourceVersion"] == "3" for q in watches(kube))


async def test_410_inside_a_live_watch_relists(bus, kube):
    """The server answers a resume with a watch ERROR event (410 Expired), as the watch cache does."""
    kube.create(CM, cm("a", {"app": "x"}))
    es = resource_es("k410", {"ev": configmaps(filter={"labels": [{"key": "app", "value": "x"}]})})
    async with Running(es, bus) as r:
        await r.events(1, timeout=20)
        await until(lambda: watches(kube))
        await asyncio.to_thread(kube.create, CM, cm("noise", {"app": "y"}))  # not in the selection: unseen
        await asyncio.to_thread(kube.compact)
        await asyncio.to_thread(kube.end_watches)  # the watch resumes from 1, compacted away: 410, then a LIST
        assert await until(lambda: lists(kube) == 2)
        await asyncio.to_thread(kube.create, CM, cm("b", {"app": "x"}))
        got = await r.events(1, timeout=20)
        extra = await r.events(1, timeout=1.5)
    assert [(e.data["type"], e.data["body"]["metadata"]["name"]) for e in got] == [("ADD", "b")]
    assert not extra and r.rt.duplicates == 0 and r.rt.count == 2  # a is not reported again
    assert [q["resourceVersion"] for q in watches(kube)][:3] == ["1", "1", "2"]


async def test_list_pages_are_followed(bus, kube, monkeypatch):
    from airflow_argo_events.core.sources import resource

    monkeypatch.setattr(resource, "PAGE", 2)
    for i in range(5):
        kube.create(CM, cm(f"p{i}"))
    async with Running(resource_es("kpage", {"ev": configmaps(["ADD"])}), bus) as r:
        got = await r.events(5, timeout=20)
    assert sorted(e.data["body"]["metadata"]["name"] for e in got) == [f"p{i}" for i in range(5)]
    assert lists(kube) == 3


async def test_the_watch_resumes_only_after_the_bus_acked(bus, kube):
    """Events handed over but not yet on the bus hold the next watch back; the bus acks, the watch resumes."""
    es = resource_es("kack", {"ev": configmaps(["ADD"])})
    gated = GatedBus(bus)
    rt = EventSourceRuntime(es, gated)
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    try:
        await until(lambda: watches(kube))
        for i in range(3):
            await asyncio.to_thread(kube.create, CM, cm(f"g{i}"))
        assert await until(lambda: rt.queue.qsize() >= 2)  # read, waiting on the gate
        await asyncio.to_thread(kube.end_watches)
        await asyncio.sleep(1.0)
        assert len(watches(kube)) == 1  # not resumed while the bus has not acknowledged
        gated.gate.set()
        assert await until(lambda: len(watches(kube)) == 2)
        assert watches(kube)[1]["resourceVersion"] == "3" and rt.count == 3
    finally:
        gated.gate.set()
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_no_kubernetes_configuration_is_one_line(bus, monkeypatch):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    rt = EventSourceRuntime(resource_es("knone", {"ev": configmaps()}), bus)
    with pytest.raises(SpecError, match=r"^knone: spec.resource.ev: no Kubernetes configuration found") as info:
        await asyncio.wait_for(rt.run(), 30)
    assert "\n" not in str(info.value)


async def test_broken_kubeconfig_is_one_line(bus, monkeypatch, tmp_path):
    (tmp_path / "kc").write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kc"))
    rt = EventSourceRuntime(resource_es("kbad", {"ev": configmaps()}), bus)
    with pytest.raises(SpecError, match=r"spec.resource.ev: Kubernetes configuration: ") as info:
        await asyncio.wait_for(rt.run(), 30)
    assert "\n" not in str(info.value)


async def test_unreachable_api_server_is_retried_and_the_source_stops_cleanly(caplog, kube):
    import logging

    caplog.set_level(logging.WARNING, "airflow_argo_events.sources")
    kube.stop()
    rt = EventSourceRuntime(resource_es("kdown", {"ev": configmaps()}), None)
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    await until(lambda: any("reconnecting in" in r.getMessage() for r in caplog.records))
    stop.set()
    await asyncio.wait_for(task, 30)
    assert any("kdown/ev (resource): Cannot connect to host" in r.getMessage() for r in caplog.records)
    assert rt.sources[0]._api is None
    kube.start()


async def test_runs_under_the_event_source_trigger(kube):
    from airflow_argo_events.triggers import EventSourceTrigger

    kube.create(CM, cm("t", x="1"))
    doc = {"apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource", "metadata": {"name": "ktrig"},
           "spec": {"resource": {"ev": configmaps(["ADD"])}}}
    gen = EventSourceTrigger(eventsource=doc, event_name="ev", nats_conn_id=None).run()
    try:
        event = await asyncio.wait_for(anext(gen), 40)
    finally:
        await gen.aclose()
    assert event.payload["type"] == "resource" and event.payload["data"]["body"]["data"] == {"x": "1"}


def test_cli_eventsource_run_publishes_resource_events(nats_url, kube, tmp_path):
    from .test_kafka import cli_run_one

    event = cli_run_one(nats_url, tmp_path, "clires", {"resource": {"ev": configmaps(["ADD"])}},
                        lambda: kube.create(CM, cm("from-cli", k="v")))
    assert event["data"]["type"] == "ADD" and event["data"]["body"]["metadata"]["name"] == "from-cli"


def test_cli_bad_resource_config_is_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "es.yaml"
    path.write_text("kind: EventSource\nmetadata: {name: bad}\nspec:\n  resource:\n    ev: {version: v1, "
                    "resource: pods, eventTypes: [ADD], filter: {labels: [{key: app, operation: '~', value: x}]}}\n")
    cli = str(Path(sys.executable).parent / "argo-events")
    res = subprocess.run([cli, "eventsource", "run", "-f", str(path), "--nats", "nats://127.0.0.1:1"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "spec.resource.ev.filter.labels[0]: unknown operation '~'" in lines[0], lines


# ---------------------------------------------------------------- the fake, checked with the real client

async def test_fake_api_server_speaks_list_watch_and_selectors_to_the_real_client(kube):
    """The protocol the source relies on, as kubernetes_asyncio's own typed API and Watch see it."""
    from kubernetes_asyncio import client, config, watch
    from kubernetes_asyncio.client.exceptions import ApiException

    kube.create(CM, cm("a", {"app": "x"}))
    kube.create(CM, cm("b", {"app": "y"}))
    api = await config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    async with api:
        v1 = client.CoreV1Api(api)
        listed = await v1.list_namespaced_config_map("default", label_selector="app in (x)")
        assert [i.metadata.name for i in listed.items] == ["a"] and listed.metadata.resource_version == "2"
        by_field = await v1.list_namespaced_config_map("default", field_selector="metadata.name!=a")
        assert [i.metadata.name for i in by_field.items] == ["b"]
        with pytest.raises(ApiException) as bad:
            await v1.list_namespaced_config_map("default", field_selector="data.k=v")
        assert bad.value.status == 400

        w = watch.Watch()
        seen = []
        stream = w.stream(v1.list_namespaced_config_map, "default", resource_version="2", label_selector="app=x",
                          timeout_seconds=5)
        kube.update(f"{CM}/b", lambda o: o["metadata"]["labels"].update(app="x"))  # enters the selection
        kube.update(f"{CM}/a", lambda o: o["metadata"]["labels"].update(app="z"))  # leaves it
        async for ev in stream:
            seen.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.resource_version))
            if len(seen) == 2:
                w.stop()
        assert seen == [("ADDED", "b", "3"), ("DELETED", "a", "4")]

        kube.compact()
        with pytest.raises(ApiException) as gone:
            async for _ in watch.Watch().stream(v1.list_namespaced_config_map, "default", resource_version="2",
                                                timeout_seconds=5):
                pass
        assert gone.value.status == 410
