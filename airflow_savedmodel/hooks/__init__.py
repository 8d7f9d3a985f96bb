"""Airflow hooks of the SavedModel provider."""
