"""Airflow sensors of the SavedModel provider."""
