"""``python -m airflow_savedmodel`` runs the ``savedmodel`` command line."""

import sys

from airflow_savedmodel.cli import main

sys.exit(main())
