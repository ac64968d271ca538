"""A real Prefect server for the Prefect tests: one per session, SQLite in a temporary PREFECT_HOME.

The tests of this folder share one xdist group, so with ``-n`` they run on one worker and
the server starts once. The environment is set at import, before anything imports
``prefect``: Prefect reads its settings from the environment when it is imported, and the
``argo-events`` processes the tests start inherit it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_argo_events.prefect.testing import PrefectApi, PrefectServer, free_port, server_environment

_free_port = free_port
__all__ = ["PrefectApi"]
PREFECT_HOME = tempfile.mkdtemp(prefix="argo-events-prefect-home-")
PORT = free_port()
API_URL = f"http://127.0.0.1:{PORT}/api"
os.environ.update(server_environment(PREFECT_HOME, PORT))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.xdist_group("prefect"))
            # Prefect's own clients (flow engine, events) leave sockets to the garbage collector
            # when a flow runs inside the test's event loop: not ours to fix, not an error here.
            item.add_marker(pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"))
            item.add_marker(pytest.mark.filterwarnings("ignore::ResourceWarning"))


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """``prefect server start`` on a free port; its API URL. Stopped (that process only) at the end."""
    server = PrefectServer.start(PREFECT_HOME, PORT)
    try:
        yield server.api_url
    finally:
        server.stop()
