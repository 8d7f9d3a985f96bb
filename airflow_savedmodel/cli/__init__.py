"""The ``savedmodel`` command line: the provider's operations without Airflow.

One module per command group (model, versions, serving, signing), what they share in
``_shared``, the parser and ``main`` in ``app``. Exit codes: 0 success, 1 a SavedModel problem
(message on stderr, no traceback), 2 usage errors.
"""

from airflow_savedmodel.cli._shared import KEY_PASSWORD_ENV, TRUST_ENV
from airflow_savedmodel.cli.app import RENAMED_FLAGS, STORAGE_LOGGERS, build_parser, main

__all__ = ["KEY_PASSWORD_ENV", "RENAMED_FLAGS", "STORAGE_LOGGERS", "TRUST_ENV", "build_parser", "main"]
