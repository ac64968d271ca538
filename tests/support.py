"""Real local servers for tests: an HTTP recorder, a fake Kubernetes API, an Airflow REST contract;
and the pieces of the live-path fault tests (a pair sensor, its events, a `sensor run` process,
a tally of firings by Idempotency-Key)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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


# ---------------------------------------------------------------- live-path fault tests

CLI = str(Path(sys.executable).parent / "argo-events")


def pair_sensor_doc(url: str, name: str = "crashy") -> dict[str, Any]:
    """A Sensor firing an HTTP POST for every (a, b) pair of events on ``src``/``ev``.

    A re-processed event would pair with the wrong partner, so a firing that should not
    exist shows up as an unexpected id and as a body with ``a != b``.
    """
    def kind(k: str) -> dict[str, Any]:
        return {"data": [{"path": "kind", "type": "string", "value": [f"^{k}$"]}]}

    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Sensor", "metadata": {"name": name}, "spec": {
        "dependencies": [
            {"name": "a", "eventSourceName": "src", "eventName": "ev", "filters": kind("a")},
            {"name": "b", "eventSourceName": "src", "eventName": "ev", "filters": kind("b")}],
        "triggers": [{"template": {"name": "pair", "conditions": "a && b", "http": {
            "url": url, "method": "POST", "payload": [
                {"src": {"dependencyName": "a", "dataKey": "i"}, "dest": "a"},
                {"src": {"dependencyName": "b", "dataKey": "i"}, "dest": "b"}]}},
            "retryStrategy": {"steps": 10, "duration": "200ms", "factor": 1.5}}]}}


def pair_events(pairs: int, prefix: str = "") -> list[Any]:
    """``a0, b0, a1, b1, ...`` with fixed ids, so a publisher's retry is de-duplicated by NATS."""
    from airflow_argo_events.core.events import new_event

    events = []
    for i in range(pairs):
        for k in ("a", "b"):
            events.append(new_event(source="src", subject="ev", type="webhook", data={"kind": k, "i": i},
                                    id=f"{prefix}{k}{i}"))
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
