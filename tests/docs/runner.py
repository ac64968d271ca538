"""Run the code blocks of README.md and docs/ as a reader pastes them, and compare the output shown.

Every fenced block carries a marker, an HTML comment on the line before it (invisible
once rendered):

``<!-- run -->``
    shell (bash/sh/console): run with ``bash`` in the page's working folder; python: saved
    as a file there and run with ``python``; yaml: checked with ``argo-events validate``.
    ``<!-- run: exit=2 -->`` expects that exit status (default 0);
    ``<!-- run: as=dags/x.py -->`` names the file a python block is saved as.
``<!-- output -->``
    what the previous run block prints (stdout and stderr together). ``<!-- output:
    unordered -->`` when lines of concurrent processes may come in any order.
``<!-- file: PATH -->``
    the block is the content of PATH in the repository (checked byte for byte), so a page
    can show a manifest that its commands use.
``<!-- illustrative: REASON -->``
    not run; the reason says why (it needs a cluster, it is a format, ...).

A page runs top to bottom in one temporary folder that holds a copy of ``examples/`` and
``dags/`` (the commands are written for the root of a clone), with ``argo-events`` on
PATH and ``ARGO_EVENTS_NATS_URL`` pointing at a NATS server of the page's own (so the
stream ``default`` that the commands use is empty at the start and no other test sees it).

Output is compared after normalising both sides: times (``2024-05-01 09:00:00,123``,
ISO), hex ids of 16 or 32 characters and durations (``1.23s``) become placeholders; a
line ``...`` matches any number of lines and ``...`` inside a line any text.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SHELL = {"bash", "sh", "shell", "console"}
MARKER = re.compile(r"<!--\s*(run|output|file|illustrative)\s*(?::\s*(.*?))?\s*-->\s*$", re.S)
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>```+)(?P<lang>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
                   re.S | re.M)


@dataclass
class Block:
    page: str
    line: int
    lang: str
    body: str
    kind: str | None  # run, output, file, illustrative; None = no marker
    arg: str = ""
    options: dict[str, str] = field(default_factory=dict)
    output: Block | None = None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page with their markers; output blocks attached to their run block."""
    text = page.read_text()
    name = str(page.relative_to(ROOT))
    found: list[Block] = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        marker = MARKER.match(before)
        kind, arg = (marker.group(1), (marker.group(2) or "").strip()) if marker else (None, "")
        options = dict(kv.split("=", 1) for kv in arg.split() if "=" in kv) if kind in ("run", "output") else {}
        if kind == "output" and arg and not options:
            options = {arg: "yes"}
        found.append(Block(name, text.count("\n", 0, m.start()) + 1, m.group("lang").strip().split(" ")[0].lower(),
                           m.group("body"), kind, arg, options))
    last_run: Block | None = None
    for b in found:
        if b.kind == "run":
            last_run = b
        elif b.kind == "output":
            if last_run is None or last_run.output is not None:
                raise ValueError(f"{b.where}: <!-- output --> without a run block before it")
            last_run.output = b
    return found


# ------------------------------------------------------------------ comparing output

_NORMAL = [
    (re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"(?<![0-9a-zA-Z])[0-9a-f]{32}(?![0-9a-zA-Z])"), "<id>"),
    (re.compile(r"(?<![0-9a-zA-Z])[0-9a-f]{16}(?![0-9a-zA-Z])"), "<id>"),
    (re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:ms|s)\b"), "<dur>"),
]


def normalise(text: str) -> list[str]:
    lines = []
    for line in text.replace("\r\n", "\n").split("\n"):
        for pattern, repl in _NORMAL:
            line = pattern.sub(repl, line)
        lines.append(line.rstrip())
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def _line_matches(pattern: str, line: str) -> bool:
    if "..." not in pattern:
        return pattern == line
    regex = ".*".join(re.escape(p) for p in pattern.split("..."))
    return re.fullmatch(regex, line) is not None


def matches(expected: str, actual: str, unordered: bool = False) -> bool:
    want, got = normalise(expected), normalise(actual)
    if unordered:
        rest = list(got)
        for w in want:
            if w == "...":
                continue
            hit = next((i for i, g in enumerate(rest) if _line_matches(w, g)), None)
            if hit is None:
                return False
            rest.pop(hit)
        return not rest or "..." in want
    memo: dict[tuple[int, int], bool] = {}

    def go(i: int, j: int) -> bool:
        if (i, j) in memo:
            return memo[i, j]
        if i == len(want):
            ok = j == len(got)
        elif want[i] == "...":
            ok = go(i + 1, j) or (j < len(got) and go(i, j + 1))
        else:
            ok = j < len(got) and _line_matches(want[i], got[j]) and go(i + 1, j + 1)
        memo[i, j] = ok
        return ok

    return go(0, 0)


# ------------------------------------------------------------------ running a page

@dataclass
class Result:
    block: Block
    status: int
    output: str
    problem: str | None


def workdir(base: Path) -> Path:
    """A folder that looks like the root of a clone, without touching the real one."""
    for name in ("examples", "dags"):
        shutil.copytree(ROOT / name, base / name, ignore=shutil.ignore_patterns("__pycache__"))
    return base


def environment(base: Path, nats_url: str) -> dict[str, str]:
    # A reader's shell: no cluster, no test-mode Airflow settings (tests/conftest.py sets some), a fresh home.
    env = {k: v for k, v in os.environ.items()
           if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "ARGO_EVENTS_NATS_URL", "PYTEST_CURRENT_TEST")
           and not k.startswith("AIRFLOW")}
    env.update({
        "AIRFLOW_HOME": str(base / ".airflow"),
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "ARGO_EVENTS_NATS_URL": nats_url,
        "XDG_STATE_HOME": str(base / ".state"),
        "NO_COLOR": "1",
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": "100",
    })
    return env


def run_block(block: Block, cwd: Path, env: dict[str, str], timeout: float = 180) -> Result:
    if block.lang == "python":
        target = cwd / block.options.get("as", f"block_{block.line}.py")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(block.body)
        argv = [sys.executable, str(target)]
    elif block.lang == "yaml":
        target = cwd / f"block_{block.line}.yaml"
        target.write_text(block.body)
        argv = [str(BIN / "argo-events"), "validate", str(target)]
    elif block.lang in SHELL:
        argv = ["bash", "-c", block.body]
    else:
        return Result(block, 0, "", f"{block.where}: cannot run a '{block.lang}' block")
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, _ = proc.communicate()
        return Result(block, -1, out, f"{block.where}: still running after {timeout:.0f}s")
    finally:
        _kill_group(proc.pid)  # whatever the block left in the background
    want = int(block.options.get("exit", "0"))
    if proc.returncode != want:
        return Result(block, proc.returncode, out, f"{block.where}: exit status {proc.returncode}, expected {want}")
    if block.output is not None and not matches(block.output.body, out, "unordered" in block.output.options):
        return Result(block, proc.returncode, out, f"{block.where}: output differs from {block.output.where}")
    return Result(block, proc.returncode, out, None)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def check_file(block: Block) -> str | None:
    path = ROOT / block.arg
    if not path.is_file():
        return f"{block.where}: <!-- file: {block.arg} --> names no file of the repository"
    if path.read_text() != block.body:
        return f"{block.where}: the block differs from {block.arg}"
    return None


def run_page(page: Path, base: Path, nats_url: str) -> Iterator[Result]:
    cwd = workdir(base)
    env = environment(base, nats_url)
    for block in blocks(page):
        if block.kind == "run":
            yield run_block(block, cwd, env)
        elif block.kind == "file":
            yield Result(block, 0, "", check_file(block))
