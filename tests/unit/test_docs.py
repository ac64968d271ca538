"""The pages' conventions (checked offline, in a second): every fenced block says whether it runs.

The blocks themselves run in tests/docs/test_pages.py; the rules are in tests/docs/runner.py.
"""

from __future__ import annotations

import re

import pytest

from tests.docs import runner

ALL = [(str(p.relative_to(runner.ROOT)), b) for p in runner.pages() for b in runner.blocks(p)]


@pytest.mark.parametrize("where, block", [(b.where, b) for _, b in ALL], ids=[b.where for _, b in ALL])
def test_every_block_is_marked(where, block):
    assert block.kind is not None, f"{where}: add <!-- run --> or <!-- illustrative: why --> before the block"
    if block.kind == "illustrative":
        assert len(block.arg) >= 10, f"{where}: say why the block is not run"
    if block.kind == "run":
        assert block.lang in runner.SHELL | {"python", "yaml"}, f"{where}: cannot run a '{block.lang}' block"
    if block.kind == "file":
        assert runner.check_file(block) is None, runner.check_file(block)


def test_pages_have_runnable_blocks():
    runnable = {name for name, b in ALL if b.kind == "run"}
    assert {"README.md", "docs/getting-started.md", "docs/troubleshooting.md", "docs/argo-examples.md"} <= runnable


@pytest.mark.parametrize("expected, actual, ok", [
    ("a\nb", "a\nb\n", True),
    ("a\n...\nd", "a\nb\nc\nd", True),
    ("a\n...\nd", "a\nd", True),
    ("a\n...\nd", "a\nb\nc", False),
    ("id=... done", "id=42 done", True),
    ("event 0562751e0614468ea3b867fcc37f4285", "event 420dea1c00264b2ba6ff921d63a573ba", True),
    ("firing 81fcf031e6319b70", "firing 79ba0b39b20c3deb", True),
    ("firing 81fcf031e6319b70", "firing 79ba0b39b20c3de", False),
    ("2026-12-02 03:30:30,456 INFO x", "2024-01-01 00:00:00,000 INFO x", True),
    ("took 1.5s", "took 12s", True),
    ("a\nb", "a\nc", False),
])
def test_output_matching(expected, actual, ok):
    assert runner.matches(expected, actual) is ok


def test_unordered_output_matching():
    assert runner.matches("b\na", "a\nb", unordered=True)
    assert not runner.matches("b\na", "a\nb\nc", unordered=True)
    assert runner.matches("b\n...", "a\nb\nc", unordered=True)


def test_markers_are_parsed(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    page = tmp_path / "p.md"
    page.write_text("x\n\n<!-- run: exit=2 -->\n```bash\nfalse\n```\n\n<!-- output: unordered -->\n```text\nz\n```\n"
                    "\n<!-- illustrative: needs a cluster -->\n```yaml\na: 1\n```\n\n```sh\nls\n```\n")
    found = runner.blocks(page)
    assert [(b.kind, b.lang) for b in found] == [("run", "bash"), ("output", "text"), ("illustrative", "yaml"),
                                                 (None, "sh")]
    assert found[0].options == {"exit": "2"} and found[0].output is found[1]
    assert found[1].options == {"unordered": "yes"} and found[2].arg == "needs a cluster"


def test_readme_dag_example_imports():
    code = re.search(r"## In a DAG\n\n<!-- run -->\n```python\n(.*?)```", (runner.ROOT / "README.md").read_text(),
                     re.S).group(1)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)  # the README's DAG code, as a DAG file would run it
    assert ns["orders"].uri == "argo-events://shop/paid-orders"
