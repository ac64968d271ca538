"""The HDFS example from Argo's docs, written as Python DAG code.

An HDFS EventSource watches ``/tmp/`` for ``CREATE`` of ``x.txt`` (WebHDFS addresses), and
each event submits an Argo Workflow whose container gets the file name as an argument,
through the cncf-kubernetes provider's KubernetesHook.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, Asset, AssetWatcher

from airflow_argo_events.operators import ActionOperator
from airflow_argo_events.triggers import EventSourceTrigger

# [START howto_hdfs_eventsource]
HDFS_EVENTSOURCE = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "EventSource", "metadata": {"name": "hdfs"},
    "spec": {"hdfs": {"example": {
        "directory": "/tmp/", "type": "CREATE", "path": "x.txt", "checkInterval": "10s", "hdfsUser": "root",
        "addresses": ["my-hdfs-namenode-0.my-hdfs-namenode.default.svc.cluster.local:9870"]}}},
}
hdfs_x = Asset("argo-events://eventsource/hdfs/example", watchers=[AssetWatcher(
    name="hdfs-example", trigger=EventSourceTrigger(eventsource=HDFS_EVENTSOURCE, event_name="example"))])
# [END howto_hdfs_eventsource]

WORKFLOW = {
    "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
    "metadata": {"generateName": "hdfs-watcher-", "namespace": "argo"},
    "spec": {"entrypoint": "whalesay", "templates": [{
        "name": "whalesay", "container": {"image": "docker/whalesay:latest", "command": ["cowsay"],
                                          "args": ["placeholder"]}}]},
}

# [START howto_hdfs_workflow]
with DAG(dag_id="hdfs_workflow", schedule=[hdfs_x], start_date=datetime(2024, 1, 1), catchup=False,
         tags=["example", "hdfs"]):
    ActionOperator(
        task_id="submit_workflow",
        kubernetes_conn_id="kubernetes_default",
        # the asset event's payload is the CloudEvent; the dependency is named "test-dep" as in Argo's example
        firing="{{ {'events': {'test-dep': (triggering_asset_events.values() | first | last).extra['payload']}}"
               " | tojson }}",
        trigger={"template": {"name": "hdfs-workflow-trigger", "argoWorkflow": {
            "operation": "submit", "source": {"resource": WORKFLOW},
            "parameters": [{"src": {"dependencyName": "test-dep", "dataKey": "name"},
                            "dest": "spec.templates.0.container.args.0"}]}}},
    )
# [END howto_hdfs_workflow]
