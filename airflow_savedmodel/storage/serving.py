"""Deprecated import path: TF Serving's model config file moved to ``airflow_savedmodel.storage.model_config``."""

import warnings

from airflow_savedmodel.storage.model_config import *  # noqa: F403

warnings.warn(
    "airflow_savedmodel.storage.serving is deprecated; import airflow_savedmodel.storage.model_config",
    DeprecationWarning,
    stacklevel=2,
)
