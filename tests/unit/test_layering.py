"""The core must not import Airflow (DESIGN.md: only the adapters do)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import airflow_argo_events.core as core


def test_core_imports_without_airflow():
    modules = [m.name for m in pkgutil.walk_packages(core.__path__, "airflow_argo_events.core.")]
    assert len(modules) > 5
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'airflow' or name.startswith('airflow.'):\n"
        "            raise ImportError('core imported ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import importlib\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "import airflow_argo_events.cli.main\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
