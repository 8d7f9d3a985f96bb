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
                "python-modules": [
                    "airflow_savedmodel.hooks.savedmodel",
                    "airflow_savedmodel.hooks.tfserving",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "TensorFlow SavedModel",
                "python-modules": [
                    "airflow_savedmodel.operators.model",
                    "airflow_savedmodel.operators.versions",
                    "airflow_savedmodel.operators.serving",
                    "airflow_savedmodel.operators.savedmodel",
                ],
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
        "extra-links": ["airflow_savedmodel.links.SavedModelPublishedLink"],
        "config": {
            "savedmodel": {
                "description": "Settings of the TensorFlow SavedModel provider for a whole deployment.",
                "options": {
                    "require_signature": {
                        "description": "Location (local path or URL) of a PEM file of trusted signers: "
                        "PUBLIC KEY blocks (OMS key method) and root CERTIFICATE blocks (certificate "
                        "method). When set, every promote, rollback, label change, mirror, rollout "
                        "and signature-aware sensor refuses a version that does not verify. Empty: "
                        "signatures are not required.",
                        "version_added": "0.1.0",
                        "type": "string",
                        "example": "/etc/savedmodel/trusted-signers.pem",
                        "default": "",
                    }
                },
            }
        },
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
                    "test_url": {
                        "label": "Test URL",
                        "description": "A directory this connection can list (e.g. gs://bucket/models); "
                        "the Test button lists it.",
                        "schema": {"type": ["string", "null"]},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "port"],
                    "relabeling": {
                        "login": "Key (S3 access key id; exposed to fsspec as 'key')",
                        "password": "Secret (S3 secret access key; exposed to fsspec as 'secret')",
                    },
                    "placeholders": {
                        "login": "optional: leave empty for token or default credentials",
                        "password": "optional",
                    },
                },
            }
        ],
    }
