"""Airflow triggers of the SavedModel provider (run by the triggerer for deferrable sensors)."""
