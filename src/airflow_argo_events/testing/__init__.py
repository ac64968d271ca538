"""pytest fixtures for DAGs and code that use the bus: a real NATS JetStream, a stream per test.

Opt in from your ``conftest.py`` (installing the provider registers nothing in your pytest runs)::

    pytest_plugins = ["airflow_argo_events.testing"]

Fixtures: ``nats_url`` (session; the NATS on 127.0.0.1:4222 when it has JetStream, else an
embedded ``nats-server`` from the ``embedded`` extra; ``ARGO_EVENTS_TEST_NATS_URL`` overrides),
``nats_settings``, ``stream`` (a stream of the test's own, deleted afterwards), ``bus`` (an
entered ``EventBus`` on it), ``private_nats`` and ``nats_cluster`` (servers of the test's own).
The async ones need pytest-asyncio.
"""

from __future__ import annotations

from airflow_argo_events.testing.plugin import *  # noqa: F403 - the fixtures pytest collects from this module
from airflow_argo_events.testing.plugin import __all__  # noqa: F401
