"""Everything that does not need Airflow; importing it installs the log redaction filter."""

from airflow_argo_events.core import redact as _redact  # noqa: F401 - installs the filter on our loggers
