"""Airflow operators of this provider."""

from __future__ import annotations

from airflow_argo_events.operators.action import ActionOperator
from airflow_argo_events.operators.publish import PublishEventOperator

__all__ = ["ActionOperator", "PublishEventOperator"]
