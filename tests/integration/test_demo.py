"""``make demo`` in its short mode: the narrated scenario fires twice and leaves nothing running."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_demo_runs_fires_twice_and_cleans_up():
    out = subprocess.run([str(Path(sys.executable).parent / "argo-events"), "demo", "--fast", "--no-color"],
                         cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "6 events arrived, 2 rejected by filters, 2 firings, 2 action calls" in text
    assert "rejected: data filter: body.amount=40 >= ['100'] is false" in text
    assert "condition '(dep01 || dep02) && dep03' met with ['dep02', 'dep03']" in text
    assert "condition '(dep01 || dep02) && dep03' met with ['dep01', 'dep03']" in text
    port = int(re.search(r"NATS JetStream at nats://127.0.0.1:(\d+)", text).group(1))
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the embedded nats-server must be stopped"
