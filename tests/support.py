"""Real local servers for tests: an HTTP recorder, a fake Kubernetes API, an Airflow REST contract."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    """An aiohttp server on 127.0.0.1 that records requests; ``respond`` decides the reply.

    Runs in its own thread and loop so that subprocess tests can use it too.
    """

    respond: Callable[[Recorded], tuple[int, Any]] = lambda r: (200, {"ok": True})
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0

    def start(self) -> RecordingServer:
        ready = threading.Event()

        async def handler(request: web.Request) -> web.Response:
            rec = Recorded(request.method, request.path_qs, dict(request.headers), await request.read())
            self.requests.append(rec)
            status, body = self.respond(rec)
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
    """Speaks the Kubernetes REST paths the actions call: create, get, replace, patch, delete.

    Objects live in a dict keyed by path; create of an existing name answers 409 as the
    real API server does (AlreadyExists).
    """

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.server = RecordingServer(respond=self._respond)
        self.version = 0

    def start(self) -> FakeKubernetes:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def kubeconfig(self, path: str) -> str:
        import yaml

        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
               "clusters": [{"name": "fake", "cluster": {"server": self.server.url}}],
               "users": [{"name": "u", "user": {"token": "fake-token"}}],
               "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}]}
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f)
        return path

    def _respond(self, r: Recorded) -> tuple[int, Any]:
        path = r.path.split("?")[0]
        if r.method == "POST":
            obj = r.json()
            key = f"{path}/{obj['metadata']['name']}"
            if key in self.objects:
                return 409, {"kind": "Status", "reason": "AlreadyExists", "code": 409}
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            self.objects[key] = obj
            return 201, obj
        if path not in self.objects:
            return 404, {"kind": "Status", "reason": "NotFound", "code": 404}
        if r.method == "GET":
            return 200, self.objects[path]
        if r.method == "PUT":
            self.objects[path] = r.json()
            return 200, self.objects[path]
        if r.method == "PATCH":
            merged = _merge(self.objects[path], r.json())
            self.objects[path] = merged
            return 200, merged
        if r.method == "DELETE":
            return 200, self.objects.pop(path)
        return 405, {}


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
