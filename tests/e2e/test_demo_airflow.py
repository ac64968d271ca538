"""``make demo-airflow``: the demo scenario with the Sensor in a real Airflow gives one DAG run per firing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(400)
@pytest.mark.e2e
def test_demo_airflow_two_firings_two_runs():
    out = subprocess.run([str(Path(sys.executable).parent / "argo-events"), "demo", "--airflow", "--fast",
                          "--no-color"], cwd=ROOT, capture_output=True, text=True, timeout=380)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = [line for line in out.stdout.splitlines() if line.strip().startswith("demo_process argo-events__")]
    assert len(runs) == 2 and all(" success " in r for r in runs), out.stdout[-2000:]
