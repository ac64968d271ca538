"""The example DAGs in dags/ import cleanly (the equivalent of an empty ``airflow dags list-import-errors``)."""

from __future__ import annotations

from pathlib import Path

DAGS = Path(__file__).resolve().parents[3] / "dags"


def test_dags_folder_has_no_import_errors():
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0
        from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    expected = {"hdfs_workflow", "on_push", "on_push_watch", "calendar_tick", "extract", "load",
                "argo_events__trigger-conditions__trigger03", "argo_events__hdfs__hdfs-workflow-trigger",
                "argo_events__eventsource__hdfs__example"}
    assert expected <= set(bag.dag_ids), sorted(bag.dag_ids)
