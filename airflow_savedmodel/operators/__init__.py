"""Airflow operators of the SavedModel provider."""
