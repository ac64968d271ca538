"""Airflow names whose home moved between 3.0 and 3.3, resolved once (as official providers do).

``apache-airflow-providers-common-compat`` maps each name to ``airflow.sdk`` when the running
Airflow has it there and to its 3.0 home otherwise (``BaseHook`` is ``airflow.hooks.base`` on
3.0, ``airflow.sdk`` from 3.1), and gives an async connection getter that works on both.
"""

from __future__ import annotations

from airflow.providers.common.compat.connection import get_async_connection
from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    BaseHook,
    BaseOperator,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

try:
    from airflow.providers.common.compat.sdk import Variable, mask_secret
except ImportError:  # common-compat releases before these names were mapped (Airflow 3.0's homes)
    from airflow.sdk import Variable
    from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore[no-redef]

__all__ = [
    "AirflowSensorTimeout",
    "BaseHook",
    "BaseOperator",
    "BaseSensorOperator",
    "PokeReturnValue",
    "Variable",
    "conf",
    "get_async_connection",
    "mask_secret",
]
