"""Fault suite fixtures: an HTTP server recording firings, and the ``slow`` marker.

The NATS servers come from the ``argo_events`` pytest plugin: ``private_nats`` (one
server of the test's own, to stall or kill) and ``nats_cluster`` (three nodes).
The shared NATS on 127.0.0.1:4222 is never touched by a fault.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ..support import RecordingServer


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a fault test that takes more than ~20 s (a stall is waited out)")


@pytest.fixture
def recorder() -> Iterator[RecordingServer]:
    """An HTTP server that records every request (the sensor's http action posts here)."""
    server = RecordingServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def scaled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The live sensor's bounds scaled down, so a short test meets them: APPLIED_CAP 2,
    ACKED_GRACE 0.5 s, sweeps every 0.3 s (floors every 0.1 s while an entry is over the cap)."""
    from airflow_argo_events.core.runtime import sensor_runtime as srm
    from airflow_argo_events.core.runtime import state as st

    monkeypatch.setattr(st, "APPLIED_CAP", 2)
    monkeypatch.setattr(st, "ACKED_GRACE", 0.5)
    monkeypatch.setattr(srm, "SWEEP_EVERY", 0.3)
    monkeypatch.setattr(srm, "HOT_SAMPLE", 0.1)
    monkeypatch.setattr(srm, "IDLE_SWEEP", 0.5)
    monkeypatch.setattr(srm, "PRUNE_AT", 2)


@pytest.fixture
def chunks_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch's firings journaled in chunks (``j.b.*``), never in their trigger's entry:
    for the tests of the chunk journal, which a one-entry batch would otherwise bypass."""
    from airflow_argo_events.core.runtime import state as st

    monkeypatch.setattr(st, "ENTRY_JOURNAL_MAX", 0)


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect what a fault left behind (clients and tasks of a crashed runtime) right after
    the test, not at a random later point: a finalizer that runs while CPython 3.11 builds
    an AST (pytest importing a plugin at the end of the session) trips its "AST constructor
    recursion depth mismatch" SystemError."""
    yield
    gc.collect()
