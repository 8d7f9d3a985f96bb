"""Deprecated import path: signed versions (OMS) moved to ``airflow_savedmodel.storage.signed``."""

import warnings

from airflow_savedmodel.storage.signed import *  # noqa: F403

warnings.warn(
    "airflow_savedmodel.storage.signatures is deprecated; import airflow_savedmodel.storage.signed",
    DeprecationWarning,
    stacklevel=2,
)
