"""Seeing into live sensors: their status (read from state), decisions in the logs, metrics.

One code path serves ``argo-events sensor status`` / ``sensor list``, the Airflow UI page
and the Prometheus metrics: nothing here imports Airflow.
"""
