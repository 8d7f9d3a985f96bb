"""The import name Airflow derives from this distribution's name (``airflow-provider-savedmodel``).

Airflow looks for a provider's example DAGs by importing its distribution name with dashes
turned into underscores, and logs an ERROR in every task log when that import fails. The
provider's code lives in :mod:`airflow_savedmodel`; this package only makes that lookup succeed
(it has no ``example_dags`` folder, so Airflow adds nothing from it).
"""
