"""Airflow triggers of this provider (they run in the triggerer)."""

from __future__ import annotations

from airflow_argo_events.triggers.eventsource import EventSourceTrigger
from airflow_argo_events.triggers.sensor import SensorTrigger

__all__ = ["EventSourceTrigger", "SensorTrigger"]
