"""Airflow hooks of this provider."""

from __future__ import annotations

from airflow_argo_events.hooks.nats import NatsHook

__all__ = ["NatsHook"]
