"""Every runnable block of README.md and docs/ runs as written and prints what the page shows.

One test per page. The pages run one at a time on this machine, whatever the xdist worker or
test session (a file lock): their live examples listen on the fixed ports the example
manifests name (9099, 12000, 12001). See runner.py for the markers. To see what a block
printed: ``pytest tests/docs -k getting-started -rA``.
"""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from airflow_argo_events.core.bus.embedded import EmbeddedNats
from tests.docs import runner

PAGES = [p for p in runner.pages() if any(b.kind == "run" for b in runner.blocks(p))]


@contextmanager
def one_page_at_a_time() -> Iterator[None]:
    # (xdist_group does not keep tests on one worker with pytest 9.2 + xdist 3.8, so a lock it is.)
    with open(Path(tempfile.gettempdir()) / "airflow-argo-events-doc-pages.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(runner.ROOT)) for p in PAGES])
def test_page_runs_as_written(page, tmp_path):
    with one_page_at_a_time():
        run_page(page, tmp_path)


def run_page(page: Path, tmp_path: Path) -> None:
    store = tmp_path / "nats"
    store.mkdir()
    server = EmbeddedNats.start(store_dir=str(store))
    work = tmp_path / "work"
    work.mkdir()
    problems = []
    try:
        for result in runner.run_page(page, work, server.url):
            if result.problem:
                shown = result.block.output.body if result.block.output else "(no output block)"
                problems.append(f"{result.problem}\n--- block:\n{result.block.body}--- printed:\n{result.output}"
                                f"--- the page shows:\n{shown}")
            else:
                print(f"{result.block.where}: ok")
    finally:
        server.stop()
    assert not problems, "\n\n".join(problems)
