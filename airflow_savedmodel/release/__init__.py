"""Releasing a published version: a canary judged by evidence, then promoted or rolled back.

No Airflow imports: the hook, operator and command line call these modules.
"""
