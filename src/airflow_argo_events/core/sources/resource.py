"""Argo's resource event source: Kubernetes objects of one kind, added, updated, deleted (kubernetes_asyncio).

Payload (``ResourceEventData``): ``{"type": "ADD"|"UPDATE"|"DELETE", "body": <the object>,
"oldBody": <the object before an UPDATE, else null>, "group", "version", "resource",
"metadata"}``; objects carry ``apiVersion`` and ``kind`` and their keys are sorted, as
Go's unstructured objects marshal.

It follows the API server as client-go's informer does in Argo:

1. LIST the collection (``filter.labels`` as the ``labelSelector``, pages of 500), each
   object reported as ADD (``filter.afterStart`` drops those created before the start),
   then WATCH from the list's ``resourceVersion``. The objects seen are kept, so that an
   UPDATE has its ``oldBody`` and an update that changes nothing is dropped.
2. A watch that ends (the server's ``timeoutSeconds``, a dropped connection, the server
   restarting) is resumed from the ``resourceVersion`` of the last change read, once the
   bus has acknowledged every event handed over: nothing is missed, nothing repeated.
3. A ``resourceVersion`` the server no longer has (410 Gone, after a compaction) means a
   new LIST compared with the objects known: new ones are ADD, changed ones UPDATE, the
   vanished ones DELETE with their last known state; unchanged ones say nothing.

Event ids derive from the object's uid, its ``resourceVersion`` and the event type (Argo's
are random), so the ADDs a restarted source reports again for objects that did not change
are stored once while they are within the bus's duplicate window.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import random
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from airflow_argo_events.core.exceptions import SpecError
from airflow_argo_events.core.limits import InputLimitError, loads_strict
from airflow_argo_events.core.sensor.paths import MISSING, compile_path
from airflow_argo_events.core.sensor.regex import go_regex, matches
from airflow_argo_events.core.sources.base import Source, SourceEvent, with_metadata
from airflow_argo_events.core.sources.queues import Backoff
from airflow_argo_events.core.spec.eventsource import parse_rfc3339
from airflow_argo_events.core.spec.k8s_selectors import label_selector

log = logging.getLogger("airflow_argo_events.sources")

PAGE = 500
"""Objects per LIST page (client-go's pager default)."""
MAX_PENDING = 1000
"""Events handed over but not yet on the bus: then reading waits for the oldest."""
GO_ZERO = datetime(1, 1, 1, tzinfo=timezone.utc)
WATCH_EVENTS = {"ADDED", "MODIFIED", "DELETED"}


class _Gone(Exception):
    """410: the resourceVersion to resume from was compacted away; list again."""


class KubeApiError(Exception):
    """A status from the API server other than 2xx (the message is Kubernetes' own)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def collection_path(group: str, version: str, resource: str, namespace: str) -> str:
    """``/api/v1/namespaces/ns/pods``, ``/apis/argoproj.io/v1alpha1/workflows`` (every namespace)."""
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    return f"{base}/namespaces/{namespace}/{resource}" if namespace else f"{base}/{resource}"


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _key(obj: dict[str, Any]) -> str:
    meta = _meta(obj)
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _rv(obj: dict[str, Any]) -> str:
    return str(_meta(obj).get("resourceVersion", ""))


def _time(text: Any) -> datetime:
    """A metav1.Time; a missing or unreadable one is Go's zero time."""
    if not isinstance(text, str) or not text:
        return GO_ZERO
    try:
        return parse_rfc3339(text)
    except ValueError:
        return GO_ZERO


def _sorted(value: Any) -> Any:
    """Keys sorted at every level, as Go marshals the map behind an unstructured object."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def event_time(obj: dict[str, Any], event_type: str) -> datetime:
    """When the change happened, as Argo's ``getEventTime`` judges it for ``afterStart``.

    ADD: the creation time. DELETE: the deletion time, or now. UPDATE: the latest of the
    creation time and the times of the ``managedFields`` entries whose operation is Update.
    """
    meta = _meta(obj)
    created = _time(meta.get("creationTimestamp"))
    if event_type == "DELETE":
        deleted = meta.get("deletionTimestamp")
        return _time(deleted) if deleted else datetime.now(timezone.utc)
    if event_type != "UPDATE":
        return created
    t = created
    for entry in meta.get("managedFields") or ():
        if isinstance(entry, dict) and entry.get("time") and entry.get("operation") == "Update":
            t = max(t, _time(entry["time"]))
    return t


class ResourceSource(Source):
    """Watches ``group/version/resource`` in ``namespace`` (all namespaces when empty).

    The cluster is the one ``$KUBECONFIG`` names, else the pod's in-cluster service account,
    as Argo's event source pod finds it.
    """

    type = "resource"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.known: dict[str, dict[str, Any]] = {}
        """The objects seen, by namespace/name (client-go's informer store)."""
        self.resource_version: str | None = None
        """Where the next watch starts; None: list first."""
        self._pending: list[asyncio.Future[bool]] = []
        self._api: Any = None
        s = self.spec
        self.path = collection_path(s.group, s.version, s.resource, s.namespace)
        labels = s.filter.labels if s.filter is not None else None
        self.selector = label_selector([(x.key, x.operation, x.value) for x in labels]) if labels else ""
        self.event_types = set(s.event_types or ())
        self.started = datetime.now(timezone.utc)

    @property
    def where(self) -> str:
        return f"spec.resource.{self.cfg.name}"

    async def events(self) -> AsyncIterator[SourceEvent]:
        from aiohttp import ClientError

        self.started = datetime.now(timezone.utc)
        backoff = Backoff()
        while True:
            try:
                if self._api is None:
                    self._api = await self._client()
                if self.resource_version is None:
                    async for ev in self._relist():
                        yield ev
                    backoff.reset()
                async for ev in self._watch(backoff):
                    yield ev
                await self._drain()
            except asyncio.CancelledError:
                raise
            except SpecError:
                raise
            except _Gone:
                log.info("%s: resourceVersion %s is too old (410 Gone); listing again", self.label,
                         self.resource_version)
                await self._drain()
                self.resource_version = None
            except KubeApiError as err:
                await self._drain()
                if err.status == 401:  # an expired token: the next round loads the configuration again
                    await self._close_api()
                await backoff.wait(self.label, err)
            except (ClientError, OSError, asyncio.TimeoutError, InputLimitError) as err:
                await self._drain()
                await backoff.wait(self.label, err)

    async def close(self) -> None:
        await self._close_api()

    async def _close_api(self) -> None:
        api, self._api = self._api, None
        if api is not None:
            await api.close()

    async def _client(self) -> Any:
        """An ApiClient for $KUBECONFIG, else in-cluster; a missing or broken configuration is one line."""
        import importlib

        # kubernetes_asyncio.client imports every API model (1-3 s): not on the event loop
        await asyncio.to_thread(importlib.import_module, "kubernetes_asyncio.config")
        from kubernetes_asyncio import client, config

        cfg = client.Configuration()
        kubeconfig = os.environ.get("KUBECONFIG")
        try:
            if kubeconfig:
                await config.load_kube_config(config_file=kubeconfig, client_configuration=cfg, persist_config=False)
            elif os.environ.get("KUBERNETES_SERVICE_HOST"):
                await asyncio.to_thread(config.load_incluster_config, client_configuration=cfg)
            else:
                raise SpecError([(self.where, "no Kubernetes configuration found: set $KUBECONFIG, or run in a pod "
                                              "(in-cluster service account)")], source=self.cfg.source)
        except config.ConfigException as err:
            raise SpecError([(self.where, f"Kubernetes configuration: {str(err).splitlines()[0][:300]}")],
                            source=self.cfg.source) from None
        return client.ApiClient(configuration=cfg)

    async def _get(self, query: list[tuple[str, Any]], read_timeout: float) -> Any:
        """GET on the collection; the raw aiohttp response (the caller reads and closes it)."""
        from aiohttp import ClientTimeout

        if self.selector:
            query = [*query, ("labelSelector", self.selector)]
        resp = await self._api.call_api(
            self.path, "GET", query_params=query, header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"], _preload_content=False,
            _request_timeout=ClientTimeout(sock_connect=10, sock_read=read_timeout))
        if resp.status != 200:
            try:
                text = await resp.text()
            finally:
                resp.close()
            try:
                status = loads_strict(text)
                message = status.get("message") or status.get("reason") or text
            except (InputLimitError, AttributeError):
                message = text
            if resp.status == 410:
                raise _Gone(message)
            raise KubeApiError(resp.status, str(message)[:300])
        return resp

    # ---------------------------------------------------------------- list

    async def _relist(self) -> AsyncIterator[SourceEvent]:
        """LIST everything, then report what differs from the objects known (all of it, the first time)."""
        items: list[dict[str, Any]] = []
        version = ""
        cont = ""
        while True:
            query: list[tuple[str, Any]] = [("limit", PAGE)] + ([("continue", cont)] if cont else [])
            resp = await self._get(query, read_timeout=60)
            try:
                page = loads_strict(await resp.read())
            finally:
                resp.close()
            if not isinstance(page, dict) or not isinstance(page.get("metadata") or {}, dict):
                raise KubeApiError(200, "the list reply is not a Kubernetes list")
            meta = page.get("metadata") or {}
            version = version or str(meta.get("resourceVersion", ""))
            kind = str(page.get("kind", ""))
            for obj in page.get("items") or ():
                if not isinstance(obj, dict):
                    continue
                # client-go's UnstructuredList gives every item the list's apiVersion and kind
                obj.setdefault("apiVersion", page.get("apiVersion", ""))
                obj.setdefault("kind", kind[:-4] if kind.endswith("List") else kind)
                items.append(obj)
            cont = str(meta.get("continue") or "")
            if not cont:
                break
        listed = {_key(obj): obj for obj in items}
        changes = [(key, obj) for key, obj in listed.items()
                   if key not in self.known or _rv(self.known[key]) != _rv(obj)]
        gone = [key for key in self.known if key not in listed]  # deleted while we were not watching
        log.info("%s: listed %d objects at resourceVersion %s (%d changed, %d gone)", self.label, len(items),
                 version, len(changes), len(gone))
        # the store takes each change as it is handed over: an interrupted relist leaves the rest to the next one
        for key, obj in changes:
            old = self.known.get(key)
            self.known[key] = obj
            ev = self._event("ADD" if old is None else "UPDATE", obj, old)
            if ev is not None:
                yield ev
                await self._handed(ev)
        for key in gone:
            ev = self._event("DELETE", self.known.pop(key), None)
            if ev is not None:
                yield ev
                await self._handed(ev)
        self.resource_version = version

    # ---------------------------------------------------------------- watch

    async def _watch(self, backoff: Backoff) -> AsyncIterator[SourceEvent]:
        """One WATCH from ``resource_version`` until the server ends it (or the connection drops)."""
        timeout = random.randint(300, 600)  # client-go spreads its watches' timeouts over 5 to 10 minutes
        query: list[tuple[str, Any]] = [("watch", "true"), ("resourceVersion", self.resource_version),
                                        ("allowWatchBookmarks", "true"), ("timeoutSeconds", timeout)]
        resp = await self._get(query, read_timeout=timeout + 60)
        backoff.reset()
        try:
            while True:
                line = await resp.content.readline()
                if not line:
                    return  # the server ended the watch (its timeout): resume from where we are
                if not line.strip():
                    continue
                try:
                    watch_event = loads_strict(line)
                    kind, obj = watch_event["type"], watch_event["object"]
                    if not isinstance(obj, dict):
                        raise TypeError("object is not a JSON object")
                except (InputLimitError, KeyError, TypeError) as err:  # one bad line never stops the watch
                    log.warning("%s: unreadable watch event skipped: %s", self.label, err)
                    continue
                if kind == "ERROR":  # a Status object: 410 Expired is the usual one
                    code = obj.get("code") if isinstance(obj.get("code"), int) else 0
                    if code == 410:
                        raise _Gone(str(obj.get("message", "")))
                    raise KubeApiError(code, str(obj.get("message") or obj)[:300])
                version = _rv(obj)
                if kind in WATCH_EVENTS:
                    ev = self._apply(kind, obj)
                    if ev is not None:
                        yield ev
                        await self._handed(ev)
                # BOOKMARK (and anything newer) only moves the resume point
                if version:
                    self.resource_version = version
        finally:
            resp.close()

    def _apply(self, kind: str, obj: dict[str, Any]) -> SourceEvent | None:
        """A watch event into the store, then the handler Argo's informer would call."""
        key = _key(obj)
        if kind == "DELETED":
            self.known.pop(key, None)
            return self._event("DELETE", obj, None)
        old = self.known.get(key)
        self.known[key] = obj
        if old is None:
            return self._event("ADD", obj, None)
        if _rv(old) == _rv(obj):  # Argo drops updates with identical resource versions
            return None
        return self._event("UPDATE", obj, old)

    # ---------------------------------------------------------------- events

    def _event(self, event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> SourceEvent | None:
        if event_type not in self.event_types or not self._passes(event_type, obj):
            return None
        s = self.spec
        payload = {"type": event_type, "body": _sorted(obj), "oldBody": None if old is None else _sorted(old),
                   "group": s.group, "version": s.version, "resource": s.resource}
        meta = _meta(obj)
        identity = f"{self.cfg.source}/{self.cfg.name}/{meta.get('uid') or _key(obj)}/{_rv(obj)}/{event_type}"
        return SourceEvent(with_metadata(payload, self),
                           id=hashlib.sha256(identity.encode()).hexdigest()[:32]).expect_ack()

    def _passes(self, event_type: str, obj: dict[str, Any]) -> bool:
        """Argo's passFilters: prefix, afterStart, createdBy, then the field selectors."""
        f = self.spec.filter
        if f is None:
            return True
        meta = _meta(obj)
        if f.prefix and not str(meta.get("name", "")).startswith(f.prefix):
            return False
        if f.after_start and event_time(obj, event_type) < self.started:
            return False
        if f.created_by and _time(meta.get("creationTimestamp")) > parse_rfc3339(f.created_by):
            return False
        for sel in f.fields or ():
            value = compile_path(sel.key)(obj)
            if value is MISSING:
                return False
            # gjson's Result.Str: the text of a string; a number, bool or object reads as ""
            hit = matches(go_regex(sel.value), value if isinstance(value, str) else "")
            if hit != (sel.operation != "!="):  # Argo documents == as the default operation
                return False
        return True

    async def _handed(self, ev: SourceEvent) -> None:
        """Track the event until the bus has it; wait when too many are on their way."""
        assert ev.published is not None
        self._pending.append(ev.published)
        if len(self._pending) >= MAX_PENDING:
            self._pending = [f for f in self._pending if not f.done()]
            if len(self._pending) >= MAX_PENDING:
                await asyncio.wait(self._pending[:1])

    async def _drain(self) -> None:
        """Before the next LIST or WATCH: every event handed over is on the bus (the runtime retries while
        NATS is away), so the point we resume from never runs ahead of what the bus acknowledged."""
        pending, self._pending = self._pending, []
        waiting = [f for f in pending if not f.done()]
        if waiting:
            await asyncio.wait(waiting)


SOURCES = {"resource": ResourceSource}
