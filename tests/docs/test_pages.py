"""Every runnable block of README.md and docs/ runs as written and prints what the page shows.

One test per page; the pages run one after another on one xdist worker (their live examples
listen on the fixed ports the example manifests name: 9099, 12000). See runner.py for the
markers. To see what a block printed: ``pytest tests/docs -k getting-started -rA``.
"""

from __future__ import annotations

import pytest

from airflow_argo_events.core.bus.embedded import EmbeddedNats
from tests.docs import runner

PAGES = [p for p in runner.pages() if any(b.kind == "run" for b in runner.blocks(p))]


@pytest.mark.xdist_group("docs")
@pytest.mark.timeout(600)
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(runner.ROOT)) for p in PAGES])
def test_page_runs_as_written(page, tmp_path):
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
