"""The pure sensor engine: no I/O, no Airflow, no clock of its own."""
