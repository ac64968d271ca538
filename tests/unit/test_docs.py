"""The commands the docs show (validate, sensor test) run as written; the README's DAG imports."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = ("argo-events validate", "argo-events sensor test")


def commands(page: Path) -> list[str]:
    out = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith(OFFLINE):
                out.append(line)
    return out


PAGES = [ROOT / "README.md", ROOT / "docs" / "getting-started.md", ROOT / "docs" / "troubleshooting.md"]
CASES = [(p.name, c) for p in PAGES for c in commands(p)]


def test_pages_have_offline_commands():
    assert len(CASES) >= 4


@pytest.mark.parametrize("page, command", CASES, ids=[f"{p}:{c[:40]}" for p, c in CASES])
def test_doc_command_runs(page, command):
    argv = shlex.split(command)
    import glob

    expanded = [a for arg in argv[1:] for a in (sorted(glob.glob(str(ROOT / arg))) if "*" in arg else [arg])]
    out = subprocess.run([sys.executable, "-m", "airflow_argo_events.cli.main", *expanded], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_readme_dag_example_imports(tmp_path):
    code = re.search(r"## In a DAG\n\n```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)  # the README's DAG code, as a DAG file would run it
    assert ns["orders"].uri == "argo-events://shop/paid-orders"
