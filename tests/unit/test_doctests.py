"""The examples in docstrings run (those not marked ``+SKIP``): a renamed field or a new
required one breaks them here rather than in a reader's terminal."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import airflow_argo_events

# Needs the environment the demo's Airflow sets up; it has no docstring examples.
NOT_IMPORTABLE_ALONE = {"airflow_argo_events.cli.demo_airflow_dag"}
MODULES = sorted(m.name for m in pkgutil.walk_packages(airflow_argo_events.__path__, "airflow_argo_events.")
                 if m.name not in NOT_IMPORTABLE_ALONE)


@pytest.mark.parametrize("name", [m for m in MODULES if ".core." in m or m.endswith(".core")])
def test_core_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), report=True, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} docstring examples failed"


def test_adapter_docstring_examples_run():
    failed = {}
    for name in MODULES:
        if ".core." in name:
            continue
        result = doctest.testmod(importlib.import_module(name), report=True, optionflags=doctest.ELLIPSIS)
        if result.failed:
            failed[name] = result.failed
    assert not failed, failed
