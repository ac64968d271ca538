"""A throwaway Prefect server for tests and benchmarks: ``prefect server start`` on a free port, SQLite."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_environment(home: str, port: int) -> dict[str, str]:
    """The settings a client of this server needs (set them before ``prefect`` is imported)."""
    return {
        "PREFECT_HOME": home,
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        # A developer's ~/.prefect profiles must not leak in.
        "PREFECT_PROFILES_PATH": str(Path(home) / "profiles.toml"),
    }


@dataclass
class PrefectServer:
    """``prefect server start`` in its own process group; ``stop()`` ends that group only.

    >>> server = PrefectServer.start()          # doctest: +SKIP
    >>> server.api_url                          # doctest: +SKIP
    'http://127.0.0.1:41271/api'
    """

    home: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def log_path(self) -> Path:
        return Path(self.home) / "server.log"

    @classmethod
    def start(cls, home: str | None = None, port: int | None = None, timeout: float = 180.0) -> PrefectServer:
        server = cls(home or tempfile.mkdtemp(prefix="argo-events-prefect-home-"), port or free_port())
        prefect = str(Path(sys.executable).parent / "prefect")
        server._log = open(server.log_path, "ab")
        server.proc = subprocess.Popen(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(server.port)],
            stdout=server._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, **server_environment(server.home, server.port)})
        try:
            server.wait_healthy(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def wait_healthy(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"prefect server exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"prefect server not healthy within {timeout:.0f}s:\n{self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM to the server's process group (it leads one), SIGKILL if it does not exit."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


class PrefectApi:
    """The few REST calls tests and benchmarks make: deployments without a work pool, flow runs, events."""

    def __init__(self, url: str) -> None:
        import httpx

        self.client = httpx.AsyncClient(base_url=url, timeout=60)

    async def _post(self, path: str, body: Any) -> Any:
        """POST, retried while a busy server (SQLite locked) answers 503 or drops the connection."""
        import asyncio

        import httpx

        for attempt in range(60):
            try:
                r = await self.client.post(path, json=body)
                if r.status_code != 503:
                    r.raise_for_status()
                    return r.json() if r.content else None
            except httpx.TransportError:
                if attempt == 59:
                    raise
            await asyncio.sleep(min(0.2 * (attempt + 1), 2.0))
        r.raise_for_status()

    async def deployment(self, flow: str, name: str, **extra: Any) -> str:
        """Create (or find) a deployment without a work pool: its runs wait, scheduled, which is all we count."""
        created = await self._post("/flows/", {"name": flow})
        return str((await self._post("/deployments/", {"name": name, "flow_id": created["id"], **extra}))["id"])

    async def flow_runs(self, deployment_id: str) -> list[dict[str, Any]]:
        runs: list[dict[str, Any]] = []
        while True:
            page = await self._post("/flow_runs/filter", {
                "flow_runs": {"deployment_id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC",
                "limit": 200, "offset": len(runs)})
            runs += page
            if len(page) < 200:
                return runs

    async def emit(self, events: list[dict[str, Any]]) -> None:
        await self._post("/events", events)

    async def close(self) -> None:
        await self.client.aclose()
