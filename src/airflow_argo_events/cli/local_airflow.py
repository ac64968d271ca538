"""A real local Airflow (SQLite or PostgreSQL, LocalExecutor, four components).

The one `argo-events demo --airflow` runs; the end-to-end tests reuse it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from airflow_argo_events.core.bus.embedded import free_port

BIN = Path(sys.executable).parent
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


def fresh_postgres_database() -> tuple[str, Any] | None:
    """A new database on the local PostgreSQL (trust auth), or None when none listens."""
    import socket
    import uuid

    with socket.socket() as s:
        s.settimeout(0.5)
        if s.connect_ex(("127.0.0.1", 5432)) != 0:
            return None
    try:
        import psycopg2
    except ImportError:
        return None
    name = "airflow_e2e_" + uuid.uuid4().hex[:8]
    try:
        con = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
    except psycopg2.Error:
        return None
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f"create database {name}")
    con.close()

    def drop() -> None:
        c = psycopg2.connect(host="127.0.0.1", user="postgres", dbname="postgres")
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute(f"drop database if exists {name} with (force)")
        c.close()

    return f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}", drop


class AirflowInstance:
    def __init__(self, home: Path, dags: Path, nats_url: str, stream: str, password: str = "e2e-pw",
                 postgres: str | None = None) -> None:
        self.home = home
        self.postgres = postgres
        self.port = free_port()
        self.password = password
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        (home / "dags").mkdir(parents=True, exist_ok=True)
        for f in dags.glob("*.py"):
            shutil.copy(f, home / "dags" / f.name)
        (home / "passwords.json").write_text(json.dumps({"admin": password}))
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.port}/execution/",
            "AIRFLOW__API__WORKERS": "1",
            # Airflow 3.0.x signs JWTs with iss=None when this is unset, which PyJWT >= 2.10 refuses
            # (POST /auth/token answers 500); 3.1+ does not need it, and naming the issuer is good practice.
            "AIRFLOW__API_AUTH__JWT_ISSUER": "argo-events-local",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
            "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
            "AIRFLOW_CONN_NATS_DEFAULT": f"{nats_url}?stream={stream}",
            "AIRFLOW_CONN_AIRFLOW_API": f"http://admin:{password}@127.0.0.1:{self.port}",
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)  # the test session's setting must not leak in
        if postgres:
            self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = postgres
        self._token: str | None = None
        self.variables: dict[str, str] = {}
        """Airflow Variables stored in the metadata database before any component starts."""

    # ------------------------------------------------------------ processes

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def start_component(self, name: str) -> None:
        args = [str(BIN / "airflow"), name] + (["--port", str(self.port)] if name == "api-server" else [])
        with open(self.home / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(args, env=self.env, stdout=log, stderr=log, start_new_session=True)

    def start(self) -> None:
        out = self.cli("db", "migrate", timeout=600)  # minutes on a loaded machine
        if out.returncode:
            raise RuntimeError(out.stderr[-3000:])
        if self.variables:
            path = self.home / "variables.json"
            path.write_text(json.dumps(self.variables))
            out = self.cli("variables", "import", str(path))
            path.unlink()
            if out.returncode:
                raise RuntimeError(out.stderr[-3000:])
        for name in COMPONENTS:
            self.start_component(name)
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=2) as r:
                    health = json.loads(r.read())
                if all(health.get(c, {}).get("status") == "healthy" for c in ("metadatabase", "scheduler",
                                                                              "triggerer", "dag_processor")):
                    return
            except (urllib.error.URLError, OSError, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Airflow not healthy in {timeout}s; logs in {self.home}")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    # ------------------------------------------------------------ REST and DB

    def token(self) -> str:
        if self._token is None:
            req = urllib.request.Request(
                f"http://127.0.0.1:{self.port}/auth/token", method="POST",
                data=json.dumps({"username": "admin", "password": self.password}).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                self._token = json.loads(r.read())["access_token"]
        return self._token

    def api(self, method: str, path: str, body: Any = None) -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/v2{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {self.token()}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None, run_id: str | None = None) -> str:
        body: dict[str, Any] = {"logical_date": None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return str(self.api("POST", f"/dags/{dag_id}/dagRuns", body)["dag_run_id"])

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.postgres:
            import psycopg2

            con = psycopg2.connect(self.postgres.replace("postgresql+psycopg2://", "postgresql://"))
            try:
                with con.cursor() as cur:
                    cur.execute(sql.replace("?", "%s"), params)
                    return [tuple(str(v) if v is not None and not isinstance(v, (int, str)) else v for v in row)
                            for row in cur.fetchall()]
            finally:
                con.close()
        con = sqlite3.connect(self.home / "airflow.db", timeout=30)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def runs(self, dag_id: str) -> list[tuple[str, str, str, str]]:
        return self.query("select run_id, state, run_type, queued_at from dag_run where dag_id = ? order by id", dag_id)

    def wait_for(self, cond: Any, timeout: float = 60, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = cond()
            if last:
                return last
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what or cond}: last {last!r}; logs in {self.home}")

    def watchers_ready(self, n: int) -> bool:
        # Airflow 3.0 links assets and triggers in asset_trigger; 3.1 renamed it asset_watcher.
        table = getattr(self, "_watcher_table", None)
        for candidate in ([table] if table else ["asset_watcher", "asset_trigger"]):
            try:
                rows = self.query(f"select count(distinct t.id) from trigger t join {candidate} w "
                                  "on w.trigger_id = t.id where t.triggerer_id is not null")
            except Exception as err:
                if "does not exist" in str(err) or "no such table" in str(err):
                    continue
                raise
            self._watcher_table = candidate
            return rows[0][0] >= n
        return False
