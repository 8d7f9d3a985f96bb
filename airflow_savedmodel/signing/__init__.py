"""Signed model versions in the OpenSSF Model Signing format (OMS v1.0): bundles (oms), keys and
trust (keys). Pure: no filesystem, no Airflow; storage/signed.py applies them to versions."""
