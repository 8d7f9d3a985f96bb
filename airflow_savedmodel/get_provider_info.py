"""Provider metadata Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_savedmodel import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-savedmodel",
        "name": "TensorFlow SavedModel",
        "description": "Inspect, validate, strip default attrs, copy and publish TensorFlow SavedModels "
        "between training and serving, without TensorFlow on the worker.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "TensorFlow SavedModel",
                "external-doc-url": "https://www.tensorflow.org/guide/saved_model",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": "TensorFlow SavedModel",
                "python-modules": ["airflow_savedmodel.hooks.savedmodel"],
            }
        ],
        "operators": [
            {
                "integration-name": "TensorFlow SavedModel",
                "python-modules": ["airflow_savedmodel.operators.savedmodel"],
            }
        ],
        "sensors": [
            {
                "integration-name": "TensorFlow SavedModel",
                "python-modules": ["airflow_savedmodel.sensors.savedmodel"],
            }
        ],
        "triggers": [
            {
                "integration-name": "TensorFlow SavedModel",
                "python-modules": ["airflow_savedmodel.triggers.savedmodel"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "savedmodel",
                "hook-class-name": "airflow_savedmodel.hooks.savedmodel.SavedModelHook",
                "hook-name": "TensorFlow SavedModel storage",
                "conn-fields": {
                    "storage_options": {
                        "label": "fsspec storage options",
                        "description": "JSON object passed to the fsspec filesystem, e.g. "
                        '{"token": "google_default"} or {"client_kwargs": {"endpoint_url": "..."}}',
                        "schema": {"type": ["object", "null"]},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "port", "login"],
                    "relabeling": {"password": "Secret (exposed to fsspec as 'secret')"},
                },
            }
        ],
    }
