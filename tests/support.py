"""Real local servers for tests: an HTTP recorder, a fake Kubernetes API, an Airflow REST contract;
and the pieces of the live-path fault tests (a pair sensor, its events, a `sensor run` process,
a tally of firings by Idempotency-Key)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
from aiohttp import web


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RecordingServer:
    """An aiohttp server on 127.0.0.1 that records requests; ``respond`` decides the reply
    (``(status, body)``, or ``(status, handler)`` where ``async handler(request)`` streams it).

    Runs in its own thread and loop so that subprocess tests can use it too.
    """

    respond: Callable[[Recorded], tuple[int, Any]] = lambda r: (200, {"ok": True})
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0

    def start(self) -> RecordingServer:
        ready = threading.Event()

        async def handler(request: web.Request) -> web.StreamResponse:
            rec = Recorded(request.method, request.path_qs, dict(request.headers), await request.read())
            self.requests.append(rec)
            status, body = self.respond(rec)
            if callable(body):  # a streamed reply (a Kubernetes watch): the handler writes it
                return await body(request)
            if isinstance(body, (dict, list)):
                return web.json_response(body, status=status)
            return web.Response(status=status, text=str(body))

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handler)
            self._runner = web.AppRunner(app)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class FakeKubernetes:
    """A Kubernetes API server in miniature, over real HTTP: the calls the actions make (create,
    get, replace, patch, delete) and the ones a watcher makes (list, watch), answered as the
    real API server answers them. A protocol-faithful fake: no cluster runs here.

    - Every write takes the next ``resourceVersion`` (one counter, like etcd's revision) and
      is kept in a history for watches; the server sets ``uid``, ``creationTimestamp``,
      ``generation`` and a ``managedFields`` entry (operation Update, time). A PUT with a
      stale ``resourceVersion`` gets 409 Conflict.
    - LIST: ``{"kind": "<Kind>List", "apiVersion", "metadata": {"resourceVersion",
      "continue"}, "items"}``, namespaced or across namespaces, with ``labelSelector``
      (=, ==, !=, in, notin, exists, !, >, <), ``fieldSelector`` (``metadata.name``,
      ``metadata.namespace``) and ``limit``/``continue``. Core-group (``/api/v1``) items
      carry no ``apiVersion``/``kind``, as the real server encodes typed lists.
    - WATCH (``?watch=true``): chunked JSON lines ``{"type": "ADDED"|"MODIFIED"|"DELETED"|
      "BOOKMARK"|"ERROR", "object"}``. From ``resourceVersion`` r: every change after r, then
      live; unset or ``"0"``: a synthetic ADDED for each object first; an r older than the
      history kept (``history`` changes, or ``compact()``): one ERROR event carrying a 410
      Expired Status. ``timeoutSeconds`` ends the stream (a BOOKMARK first with
      ``allowWatchBookmarks``). With selectors, an object leaving the selection is DELETED
      and one entering it ADDED.
    - ``stop()`` then ``start()`` is the server going away and coming back on the same port
      with its data (etcd keeps it): open watches are cut mid-stream, and writes made
      meanwhile (``create``/``update``/``delete`` here, as through another API server) are
      in the history.
    """

    def __init__(self, history: int = 1000) -> None:
        import datetime as _dt

        self.objects: dict[str, dict[str, Any]] = {}
        self.server = RecordingServer(respond=self._respond)
        self.version = 0
        self.history_size = history
        self.history: list[tuple[int, str, str, dict[str, Any], dict[str, Any] | None]] = []
        """(resourceVersion, ADDED|MODIFIED|DELETED, path, object, previous object)"""
        self.compacted = 0
        """Changes up to this resourceVersion are no longer in the history."""
        self.clock: Callable[[], Any] = lambda: _dt.datetime.now(_dt.timezone.utc)
        self._lock = threading.RLock()
        self._watchers: set[_Watcher] = set()
        self.watches_opened = 0

    def start(self) -> FakeKubernetes:
        self.server.start()
        return self

    def stop(self) -> None:
        """The server goes away: watches are cut mid-stream, then the listener closes."""
        with self._lock:
            watchers = list(self._watchers)
        for w in watchers:
            w.loop.call_soon_threadsafe(w.queue.put_nowait, None)
        deadline = time.monotonic() + 10
        while self._watchers and time.monotonic() < deadline:
            time.sleep(0.01)
        self.server.stop()

    def end_watches(self) -> None:
        """End every open watch cleanly, as its ``timeoutSeconds`` would."""
        with self._lock:
            for w in self._watchers:
                w.loop.call_soon_threadsafe(w.queue.put_nowait, "end")

    def kubeconfig(self, path: str) -> str:
        import yaml

        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
               "clusters": [{"name": "fake", "cluster": {"server": self.server.url}}],
               "users": [{"name": "u", "user": {"token": "fake-token"}}],
               "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}]}
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f)
        return path

    # ---------------------------------------------------------------- writes (thread-safe)

    def create(self, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj`` in a collection path (``/api/v1/namespaces/default/configmaps``); the stored copy."""
        status, body = self._create(collection, json.loads(json.dumps(obj)))
        if status != 201:
            raise RuntimeError(f"create {collection}: {status} {body}")
        return body

    def update(self, path: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Apply ``change`` to a copy of the object at ``path`` and store it (a write without a conflict check)."""
        with self._lock:
            obj = json.loads(json.dumps(self.objects[path]))
            change(obj)
            obj["metadata"].pop("resourceVersion", None)
            status, body = self._replace(path, obj)
        if status != 200:
            raise RuntimeError(f"update {path}: {status} {body}")
        return body

    def delete(self, path: str) -> dict[str, Any]:
        status, body = self._delete(path)
        if status != 200:
            raise RuntimeError(f"delete {path}: {status} {body}")
        return body

    def compact(self) -> None:
        """Forget the history (etcd compaction): a watch from an older resourceVersion gets 410 Gone."""
        with self._lock:
            self.history.clear()
            self.compacted = self.version

    def _stamp(self) -> str:
        return self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")

    def _commit(self, kind: str, path: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """One write: the next resourceVersion, the history, every open watch told (under the lock)."""
        self.version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        event = (self.version, kind, path, json.loads(json.dumps(obj)), old and json.loads(json.dumps(old)))
        self.history.append(event)
        while len(self.history) > self.history_size:
            self.compacted = self.history.pop(0)[0]
        for w in self._watchers:
            w.loop.call_soon_threadsafe(w.queue.put_nowait, event)

    def _create(self, collection: str, obj: dict[str, Any]) -> tuple[int, Any]:
        import uuid

        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            return 422, _status(422, "Invalid", "metadata.name: Required value")
        key = f"{collection}/{meta['name']}"
        base, ns, resource, _ = _parse_path(key)
        with self._lock:
            if key in self.objects:
                return 409, _status(409, "AlreadyExists", f'{resource} "{meta["name"]}" already exists')
            if ns:
                meta["namespace"] = ns
            obj.setdefault("apiVersion", base.split("/", 2)[-1])
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=self._stamp(), generation=1)
            meta["managedFields"] = [self._managed(obj)]
            self.objects[key] = obj
            self._commit("ADDED", key, obj, None)
            return 201, obj

    def _replace(self, path: str, obj: dict[str, Any]) -> tuple[int, Any]:
        with self._lock:
            if path not in self.objects:
                return 404, _status(404, "NotFound", f"{path} not found")
            old = self.objects[path]
            old_meta = old.get("metadata") or {}
            meta = obj.setdefault("metadata", {})
            sent = meta.get("resourceVersion")
            if sent and old_meta.get("resourceVersion") and sent != old_meta["resourceVersion"]:
                return 409, _status(409, "Conflict", f"Operation cannot be fulfilled on {path}: the object has been "
                                                     "modified; please apply your changes to the latest version and "
                                                     "try again")
            for k in ("uid", "creationTimestamp", "namespace", "name"):
                if k in old_meta:
                    meta[k] = old_meta[k]
            meta["generation"] = int(old_meta.get("generation", 0)) + 1
            meta["managedFields"] = [self._managed(obj)]
            self.objects[path] = obj
            self._commit("MODIFIED", path, obj, old)
            return 200, obj

    def _delete(self, path: str) -> tuple[int, Any]:
        with self._lock:
            if path not in self.objects:
                return 404, _status(404, "NotFound", f"{path} not found")
            obj = self.objects.pop(path)
            self._commit("DELETED", path, obj, None)
            return 200, obj

    def _managed(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {"manager": "fake-client", "operation": "Update", "apiVersion": obj.get("apiVersion", ""),
                "time": self._stamp(), "fieldsType": "FieldsV1", "fieldsV1": {}}

    # ---------------------------------------------------------------- HTTP

    def _respond(self, r: Recorded) -> tuple[int, Any]:
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(r.path)
        path = parts.path.rstrip("/")
        q = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if r.method == "POST":
            return self._create(path, r.json())
        base, ns, resource, name = _parse_path(path)
        if r.method == "GET" and not name:
            try:
                match = _selector(q.get("labelSelector", ""), q.get("fieldSelector", ""))
            except ValueError as err:
                return 400, _status(400, "BadRequest", str(err))
            if q.get("watch") in GO_TRUE:
                return 200, self._watch(base, ns, resource, match, q)
            return self._list(base, ns, resource, match, q)
        if r.method == "PUT":
            return self._replace(path, r.json())
        if r.method == "DELETE":
            return self._delete(path)
        with self._lock:
            if path not in self.objects:
                return 404, _status(404, "NotFound", f"{path} not found")
            if r.method == "GET":
                return 200, self.objects[path]
            if r.method == "PATCH":
                merged = _merge(self.objects[path], r.json())
                merged.get("metadata", {}).pop("resourceVersion", None)
                return self._replace(path, merged)
        return 405, _status(405, "MethodNotAllowed", r.method)

    def _in_scope(self, base: str, ns: str | None, resource: str) -> Callable[[str], bool]:
        def check(path: str) -> bool:
            b, n, res, name = _parse_path(path)
            return bool(name) and b == base and res == resource and (ns is None or n == ns)

        return check

    def _list(self, base: str, ns: str | None, resource: str, match: Callable[[dict[str, Any]], bool],
              q: dict[str, str]) -> tuple[int, Any]:
        import base64

        scope = self._in_scope(base, ns, resource)
        limit = int(q.get("limit") or 0)
        start, version = "", None
        if q.get("continue"):
            token = json.loads(base64.b64decode(q["continue"]))
            start, version = token["start"], token["rv"]
        with self._lock:
            if version is not None and version < self.compacted:
                return 410, _status(410, "Expired", "The provided continue parameter is too old to display a "
                                                    "consistent list result. You can start a new list without the "
                                                    "continue parameter.")
            version = self.version if version is None else version
            chosen = sorted((_ns_name(o), o) for p, o in self.objects.items() if scope(p) and match(o))
            chosen = [(k, o) for k, o in chosen if k > start]
            page = chosen[:limit] if limit else chosen
            more = limit and len(chosen) > limit
            kinds = {o.get("kind") for _, o in page if o.get("kind")}
            items = [json.loads(json.dumps(o)) for _, o in page]
        if base == "/api/v1":
            for item in items:  # typed lists: the items' kind is the list's
                item.pop("apiVersion", None)
                item.pop("kind", None)
        kind = (kinds.pop() if len(kinds) == 1 else resource[:1].upper() + resource[1:].rstrip("s")) + "List"
        meta: dict[str, Any] = {"resourceVersion": str(version)}
        if more:
            meta["continue"] = base64.b64encode(json.dumps({"start": page[-1][0], "rv": version}).encode()).decode()
        return 200, {"kind": kind, "apiVersion": base.split("/", 2)[-1], "metadata": meta, "items": items}

    def _watch(self, base: str, ns: str | None, resource: str, match: Callable[[dict[str, Any]], bool],
               q: dict[str, str]) -> Callable[[web.Request], Any]:
        scope = self._in_scope(base, ns, resource)
        since = q.get("resourceVersion", "")
        timeout = float(q.get("timeoutSeconds") or 1800)
        bookmarks = q.get("allowWatchBookmarks") in GO_TRUE
        loop = asyncio.get_running_loop()
        watcher = _Watcher(loop, asyncio.Queue())
        first: list[dict[str, Any]] = []
        with self._lock:
            self.watches_opened += 1
            if since in ("", "0"):
                first = [{"type": "ADDED", "object": o} for p, o in sorted(self.objects.items())
                         if scope(p) and match(o)]
            elif int(since) < self.compacted:
                first = [{"type": "ERROR", "object": _status(
                    410, "Expired", f"too old resource version: {since} ({self.compacted + 1})")}]
            else:
                for event in self.history:
                    if event[0] > int(since):
                        watcher.queue.put_nowait(event)
            if not first or first[0]["type"] != "ERROR":
                self._watchers.add(watcher)
            first = json.loads(json.dumps(first))

        async def stream(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            resp.enable_chunked_encoding()
            try:
                await resp.prepare(request)
                for item in first:
                    await resp.write(json.dumps(item).encode() + b"\n")
                if first and first[0]["type"] == "ERROR":
                    await resp.write_eof()
                    return resp
                deadline = loop.time() + timeout
                while True:
                    try:
                        event = await asyncio.wait_for(watcher.queue.get(), max(0.0, deadline - loop.time()))
                    except asyncio.TimeoutError:
                        if bookmarks:
                            with self._lock:
                                rv = str(self.version)
                            await resp.write(json.dumps({"type": "BOOKMARK", "object": {
                                "kind": "", "apiVersion": "", "metadata": {"resourceVersion": rv}}}).encode() + b"\n")
                        await resp.write_eof()
                        return resp
                    if event is None:  # the server goes away: cut the connection mid-stream
                        if request.transport is not None:
                            request.transport.abort()
                        return resp
                    if event == "end":
                        await resp.write_eof()
                        return resp
                    item = _watch_item(event, scope, match)
                    if item is not None:
                        await resp.write(json.dumps(item).encode() + b"\n")
            except (ConnectionError, asyncio.CancelledError):
                return resp
            finally:
                with self._lock:
                    self._watchers.discard(watcher)

        return stream


GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
"""What Go's strconv.ParseBool reads as true (the API server's boolean query parameters)."""


@dataclass(eq=False)
class _Watcher:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Any]


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def _parse_path(path: str) -> tuple[str, str | None, str, str]:
    """``/apis/g/v/namespaces/ns/res/name`` -> (``/apis/g/v``, ns, res, name); missing parts are None/""."""
    parts = path.strip("/").split("/")
    n = 2 if parts[0] == "api" else 3
    base, rest = "/" + "/".join(parts[:n]), parts[n:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        return base, rest[1], rest[2], rest[3] if len(rest) > 3 else ""
    return base, None, rest[0] if rest else "", rest[1] if len(rest) > 1 else ""


def _ns_name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _watch_item(event: tuple[int, str, str, dict[str, Any], dict[str, Any] | None],
                scope: Callable[[str], bool], match: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """What one change looks like to a watch with this scope and selector (entering: ADDED, leaving: DELETED)."""
    _, kind, path, obj, old = event
    if not scope(path):
        return None
    now = match(obj)
    if kind == "MODIFIED" and old is not None:
        before = match(old)
        if not (before or now):
            return None
        kind = "MODIFIED" if before and now else "ADDED" if now else "DELETED"
    elif not now:
        return None
    return {"type": kind, "object": obj}


def _selector(labels: str, fields: str) -> Callable[[dict[str, Any]], bool]:
    """A label and a field selector, parsed as the API server reads them; ValueError when malformed."""
    import re

    checks: list[Callable[[dict[str, Any]], bool]] = []
    for term in (t.strip() for t in re.split(r",(?![^()]*\))", labels) if t.strip()):
        m = re.fullmatch(r"(!?)([\w./-]+)(?:\s*(==|=|!=|>|<)\s*([\w.-]*)|\s+(in|notin)\s+\(([^)]*)\))?", term)
        if not m:
            raise ValueError(f"unable to parse requirement: {term!r}")
        neg, key, op, value, set_op, values = m.groups()
        if neg and (op or set_op):
            raise ValueError(f"unable to parse requirement: {term!r}")
        checks.append(_label_check(key, "!" if neg else op or set_op or "exists", value,
                                   [v.strip() for v in (values or "").split(",")]))
    for term in (t.strip() for t in fields.split(",") if t.strip()):
        m = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", term)
        if not m:
            raise ValueError(f"invalid field selector: {term!r}")
        field_name, op, value = m.groups()
        if field_name not in ("metadata.name", "metadata.namespace"):
            raise ValueError(f'field label not supported: "{field_name}"')
        attr = field_name.split(".")[1]
        checks.append(lambda o, a=attr, op=op, v=value: ((o.get("metadata") or {}).get(a, "") == v) != (op == "!="))
    return lambda obj: all(check(obj) for check in checks)


def _label_check(key: str, op: str, value: str, values: list[str]) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        has, v = key in labels, labels.get(key)
        if op in ("=", "=="):
            return has and v == value
        if op == "!=":
            return not has or v != value
        if op == "in":
            return has and v in values
        if op == "notin":
            return not has or v not in values
        if op == "exists":
            return has
        if op == "!":
            return not has
        try:
            return has and (int(v) > int(value) if op == ">" else int(v) < int(value))
        except ValueError:
            return False

    return check


def _merge(base: Any, patch: Any) -> Any:
    if not isinstance(patch, dict) or not isinstance(base, dict):
        return patch
    out = dict(base)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(base.get(k), v)
    return out


class AirflowContract:
    """Airflow 3's REST v2 contract for creating DAG runs: JWT from /auth/token, 409 on a duplicate run id,
    422 when logical_date is missing, 401 without a valid token (as observed on Airflow 3.3)."""

    def __init__(self, user: str = "admin", password: str = "pw") -> None:
        self.user, self.password = user, password
        self.runs: dict[tuple[str, str], dict[str, Any]] = {}
        self.server = RecordingServer(respond=self._respond)
        self.tokens_issued = 0

    def start(self) -> AirflowContract:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def _respond(self, r: Recorded) -> tuple[int, Any]:
        if r.path == "/auth/token" and r.method == "POST":
            body = r.json()
            if (body.get("username"), body.get("password")) != (self.user, self.password):
                return 401, {"detail": "Invalid credentials"}
            self.tokens_issued += 1
            return 201, {"access_token": f"jwt-{self.tokens_issued}"}
        if r.headers.get("Authorization", "") != f"Bearer jwt-{self.tokens_issued}" or not self.tokens_issued:
            return 401, {"detail": "Not authenticated"}
        parts = r.path.strip("/").split("/")
        if parts[:3] == ["api", "v2", "dags"] and parts[4:] == ["dagRuns"] and r.method == "POST":
            body = r.json()
            if "logical_date" not in body:
                return 422, {"detail": "logical_date required"}
            extra = set(body) - {"dag_run_id", "logical_date", "run_after", "conf", "note", "data_interval_start",
                                 "data_interval_end", "partition_key"}
            if extra:
                return 422, {"detail": f"extra fields {extra}"}
            key = (parts[3], body["dag_run_id"])
            if key in self.runs:
                return 409, {"detail": "DAG Run already exists"}
            self.runs[key] = body
            return 200, {"dag_run_id": body["dag_run_id"], "state": "queued", "run_type": "manual"}
        return 404, {"detail": "not found"}


class FakeWebHDFS:
    """A WebHDFS-protocol namenode (LISTSTATUS, GETFILESTATUS) over an in-memory tree, for the
    ``hdfs`` package to talk to for real. Files: path -> {fileId, length, modificationTime, permission}."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}
        self.next_id = 16386
        self.server = RecordingServer(respond=self._respond)

    def start(self) -> FakeWebHDFS:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    def put(self, path: str, length: int = 1, mtime: int = 1) -> None:
        old = self.files.get(path)
        self.files[path] = {"fileId": old["fileId"] if old else self._id(), "length": length,
                            "modificationTime": mtime, "permission": "644"}

    def move(self, src: str, dst: str) -> None:
        self.files[dst] = self.files.pop(src)

    def delete(self, path: str) -> None:
        del self.files[path]

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _respond(self, r: Recorded) -> tuple[int, Any]:
        from urllib.parse import parse_qs, urlsplit

        parts = urlsplit(r.path)
        q = {k.lower(): v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path[len("/webhdfs/v1"):] or "/"
        op = q.get("op", "").upper()
        if op == "LISTSTATUS":
            prefix = path.rstrip("/") + "/"
            entries: dict[str, dict[str, Any]] = {}
            for full, st in self.files.items():
                if not full.startswith(prefix):
                    continue
                rest = full[len(prefix):]
                name = rest.split("/")[0]
                if "/" in rest:
                    entries[name] = {"pathSuffix": name, "type": "DIRECTORY", "fileId": 1, "length": 0,
                                     "modificationTime": 0, "permission": "755"}
                else:
                    entries[name] = {"pathSuffix": name, "type": "FILE", **st}
            if not entries and not any(f.startswith(prefix) for f in self.files) and path != "/":
                return 404, {"RemoteException": {"exception": "FileNotFoundException",
                                                 "javaClassName": "java.io.FileNotFoundException",
                                                 "message": f"File {path} does not exist."}}
            return 200, {"FileStatuses": {"FileStatus": list(entries.values())}}
        if op == "GETFILESTATUS":
            if path in self.files:
                return 200, {"FileStatus": {"pathSuffix": "", "type": "FILE", **self.files[path]}}
            return 200, {"FileStatus": {"pathSuffix": "", "type": "DIRECTORY", "fileId": 1, "length": 0,
                                        "modificationTime": 0, "permission": "755"}}
        return 400, {"RemoteException": {"exception": "IllegalArgumentException", "message": f"op {op}"}}


# ---------------------------------------------------------------- live-path fault tests

CLI = str(Path(sys.executable).parent / "argo-events")


def pair_sensor_doc(url: str, name: str = "crashy", correlated: bool = False) -> dict[str, Any]:
    """A Sensor firing an HTTP POST for every (a, b) pair of events on ``src``/``ev``.

    A re-processed event would pair with the wrong partner, so a firing that should not
    exist shows up as an unexpected id and as a body with ``a != b``. ``correlated`` pairs
    by the events' ``i`` (correlation keys, an extension), so pairs may interleave.
    """
    def kind(k: str) -> dict[str, Any]:
        return {"data": [{"path": "kind", "type": "string", "value": [f"^{k}$"]}]}

    doc: dict[str, Any] = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": name}, "spec": {
        "dependencies": [
            {"name": "a", "eventSourceName": "src", "eventName": "ev", "filters": kind("a")},
            {"name": "b", "eventSourceName": "src", "eventName": "ev", "filters": kind("b")}],
        "triggers": [{"template": {"name": "pair", "conditions": "a && b", "http": {
            "url": url, "method": "POST", "payload": [
                {"src": {"dependencyName": "a", "dataKey": "i"}, "dest": "a"},
                {"src": {"dependencyName": "b", "dataKey": "i"}, "dest": "b"}]}},
            "retryStrategy": {"steps": 10, "duration": "200ms", "factor": 1.5}}]}}
    if correlated:
        doc["spec"]["triggers"][0]["template"]["correlation"] = {"keys": {"a": "i", "b": "i"}, "window": "1h"}
    return doc


def pair_events(pairs: int, prefix: str = "", interleave: int = 0) -> list[Any]:
    """``a0, b0, a1, b1, ...`` with fixed ids, so a publisher's retry is de-duplicated by NATS.

    ``interleave``: shuffle within blocks of that many pairs (fixed seed), so many pairs are
    open at once (``b7`` may come before ``a7``), for a correlated sensor."""
    import random

    from airflow_argo_events.core.events import new_event

    events = []
    for i in range(pairs):
        for k in ("a", "b"):
            events.append(new_event(source="src", subject="ev", type="webhook", data={"kind": k, "i": i},
                                    id=f"{prefix}{k}{i}"))
    if interleave:
        rng = random.Random(11)
        blocks = [events[i:i + 2 * interleave] for i in range(0, len(events), 2 * interleave)]
        for b in blocks:
            rng.shuffle(b)
        events = [e for b in blocks for e in b]
    return events


def expected_firings(doc: dict[str, Any], events: list[Any]) -> set[str]:
    """The firing ids an offline engine makes of ``events`` (what the live sensor must deliver)."""
    from airflow_argo_events.core.sensor.engine import Engine
    from airflow_argo_events.core.spec.sensor import Sensor

    engine = Engine(Sensor.model_validate(doc))
    return {f.id for e in events for f in engine.process(e)}


@dataclass
class FiringTally:
    """Firings as an HTTP server honouring ``Idempotency-Key`` sees them.

    ``lost``: expected keys never received. ``unexpected``: keys that should not exist (an
    event processed twice makes a new pair, hence a new key): the duplicates that matter,
    since a repeated key takes effect once. ``repeated``: extra requests with a known key
    (a retry or a re-run from the journal), reported, harmless by contract.
    """

    expected: set[str]
    keys: Counter[str]
    mismatched: int

    @classmethod
    def of(cls, expected: set[str], requests: list[Recorded]) -> FiringTally:
        keys = Counter(r.headers.get("Idempotency-Key", "") for r in list(requests))
        mismatched = 0
        for r in list(requests):
            body = r.json()
            mismatched += body.get("a") != body.get("b")
        return cls(expected, keys, mismatched)

    @property
    def lost(self) -> set[str]:
        return self.expected - set(self.keys)

    @property
    def unexpected(self) -> set[str]:
        return set(self.keys) - self.expected

    @property
    def repeated(self) -> int:
        return sum(c - 1 for c in self.keys.values() if c > 1)

    def line(self) -> str:
        return (f"firings expected {len(self.expected)}, delivered {len(self.expected & set(self.keys))}, "
                f"lost {len(self.lost)}, unexpected {len(self.unexpected)}, mismatched pairs {self.mismatched}, "
                f"repeated requests {self.repeated} (same Idempotency-Key)")

    def assert_exactly_once(self, where: str = "") -> None:
        assert not self.lost, f"lost firings: {sorted(self.lost)[:10]} {where}"
        assert not self.unexpected, f"firings that should not exist: {sorted(self.unexpected)[:10]} {where}"
        assert not self.mismatched, f"{self.mismatched} firing(s) paired the wrong events {where}"


async def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (a hang detector, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def wait_answering(url: str, timeout: float = 30.0, *, status: int | None = None,
                         task: asyncio.Future[Any] | None = None) -> int:
    """GET ``url`` until the server answers (with ``status``, when given); returns the status.

    A server started in a task (a webhook EventSource) accepts connections only once its
    task has bound the port: on a loaded machine that is well after any fixed sleep. Fails
    with the last error after ``timeout`` (a hang detector, not a timing assertion), or at
    once when ``task``, the one serving, has ended. ``https`` URLs are not verified (a probe).
    """
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        while True:
            if task is not None and task.done():
                ended = None if task.cancelled() else task.exception()
                raise AssertionError(f"GET {url}: the server's task ended before it answered "
                                     f"({'cancelled' if task.cancelled() else repr(ended)})") from ended
            try:
                async with http.get(url, ssl=False) as resp:
                    if status is None or resp.status == status:
                        return resp.status
                    last = f"{resp.status} {(await resp.text())[:200]!r}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                last = f"{type(err).__name__}: {err}"
            if time.monotonic() > deadline:
                want = f"with {status} " if status is not None else ""
                raise AssertionError(f"GET {url}: no answer {want}within {timeout:g}s; last: {last}")
            await asyncio.sleep(0.1)


def webhook_health_urls(es: Any) -> list[str]:
    """The /health URL of each port an EventSource's webhooks serve (for ``wait_answering``)."""
    hooks = (getattr(es.spec, "webhook", None) or {}).values()
    served = {(int(w.port), w.server_cert_secret is not None) for w in hooks if w.port}
    return [f"{'https' if tls else 'http'}://127.0.0.1:{port}/health" for port, tls in sorted(served)]


@contextlib.asynccontextmanager
async def running_sensor(rt: Any, quiet: bool = False, start: bool = True) -> AsyncIterator[asyncio.Task[None]]:
    """A ``SensorRuntime`` running in a task for the block; then stopped and closed. ``start``:
    start it first (its consumers exist before the block publishes; False when the test did);
    ``quiet``: an error the run ended with is not raised (a test of a process that "died")."""
    if start:
        await rt.start()
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))
    try:
        yield task
    finally:
        stop.set()
        if quiet:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
        else:
            await asyncio.wait_for(task, 30)
        await rt.close()


@dataclass
class SensorProcess:
    """``argo-events sensor run -f MANIFEST --nats URL`` as a child process, its output in ``log_path``."""

    manifest: Path
    nats_url: str
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    def start(self) -> SensorProcess:
        if self._log is None:
            self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [CLI, "sensor", "run", "-f", str(self.manifest), "--nats", self.nats_url, *self.extra_args],
            stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL and wait (a crash)."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait, SIGKILL if it hangs; the exit code (None if it had to be killed)."""
        code: int | None = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def tail(self, lines: int = 30) -> str:
        """The log's last lines without traceback frames (what died, and the warnings before it)."""
        text = self.log_path.read_text(errors="replace").splitlines()
        kept = [line for line in text if line.strip() and not line.startswith((" ", "\t"))]
        return "\n".join(kept[-lines:])


async def wait_for_consumer(bus: Any, timeout: float = 90.0, process: SensorProcess | None = None) -> None:
    """Wait until a durable consumer exists on the bus's stream (a ``deliver=new`` sensor
    sees only what is published after it subscribed). `sensor run` imports Airflow's
    provider hooks, which takes 10-30 s on a busy machine; a process that died fails at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and not process.alive:
            raise AssertionError(f"`sensor run` exited before subscribing:\n{process.tail()}")
        try:
            if await bus.js.consumers_info(bus.stream.name):
                return
        except Exception:  # the stream may not exist yet
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"no consumer on stream {bus.stream.name} within {timeout:.0f}s")


async def publish_retrying(bus: Any, event: Any, timeout: float = 2.0, give_up: float = 120.0) -> int:
    """Publish like an EventSource does when NATS is away: retry the same event id until
    accepted (``Nats-Msg-Id`` de-duplicates a retry whose first try was stored). Returns attempts."""
    from airflow_argo_events.core.exceptions import EventBusError

    deadline = time.monotonic() + give_up
    attempts = 0
    while True:
        attempts += 1
        try:
            await bus.publish(event, timeout=timeout)
            return attempts
        except EventBusError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
