"""Airflow sensors of this provider."""

from __future__ import annotations

from airflow_argo_events.sensors.event import EventSensor

__all__ = ["EventSensor"]
