"""Where the example DAGs read and write, from environment variables (no network at parse time).

SAVEDMODEL_DEMO_ROOT      local root for everything (default: $AIRFLOW_HOME/savedmodel-demo)
SAVEDMODEL_EXPORT_ROOT    where training exports models (default: <root>/exports)
SAVEDMODEL_SERVING_BASE   serving base path TensorFlow Serving watches (default: <root>/serving/classifier)
SAVEDMODEL_SERVING_CONFIG TensorFlow Serving's model config file (--model_config_file) the DAGs gate
                          versions and labels through (default: <root>/serving/models.config)
SAVEDMODEL_MODEL_NAME     the model's name in that file (default: classifier)
SAVEDMODEL_MIRROR_BASE    second filesystem the serving DAG mirrors to (default: <root>/mirror/classifier)
SAVEDMODEL_CONN_ID        connection for the export root and serving base (gs://, s3://), optional
SAVEDMODEL_MIRROR_CONN_ID connection for the mirror, optional
SAVEDMODEL_TARGET_TF      TensorFlow Serving release the models must load in (default: 2.12)
SAVEDMODEL_TF_SERVING_URL TensorFlow Serving's REST endpoint (e.g. http://tf-serving:8501): when set,
                          the training DAG releases its version by a canary rollout (promoted or
                          rolled back on evidence), and it is the canary rollout form's default;
                          replicas comma-separated, or dns+http://NAME:8501 (a headless Service)
SAVEDMODEL_BAKE_SECONDS   how long the examples' rollouts compare canary with stable (default: 30)
SAVEDMODEL_FLEET_EXPORT_ROOT   the fleet DAG's models, one sub-directory each (default: <root>/fleet/exports)
SAVEDMODEL_FLEET_SERVING_ROOT  their base paths (<serving root>/<model>) and the one model config
                               file they share (<serving root>/models.config) (default: <root>/fleet/serving)
SAVEDMODEL_FLEET_CONCURRENCY   models the fleet DAG publishes at once in one run (default: 8)
SAVEDMODEL_FLEET_POOL          the Airflow pool its publishes run in (default: default_pool)
SAVEDMODEL_WATCH_BASE     a base path another tool publishes to (TFX's Pusher, a notebook, the CLI),
                          watched for new versions (default: <root>/pushed/ranker)
SAVEDMODEL_WATCH_MIRROR   where the watcher DAG mirrors what it validated (default: <root>/mirror/ranker)
SAVEDMODEL_WATCH_SECONDS  how often the watcher lists it (default: 60)
"""

from __future__ import annotations

import os

from airflow_savedmodel.assets import savedmodel_asset

ROOT = os.environ.get("SAVEDMODEL_DEMO_ROOT") or os.path.join(
    os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow")), "savedmodel-demo"
)
EXPORT_ROOT = os.environ.get("SAVEDMODEL_EXPORT_ROOT") or f"{ROOT}/exports"
SERVING_BASE = os.environ.get("SAVEDMODEL_SERVING_BASE") or f"{ROOT}/serving/classifier"
SERVING_CONFIG = os.environ.get("SAVEDMODEL_SERVING_CONFIG") or f"{ROOT}/serving/models.config"
MODEL_NAME = os.environ.get("SAVEDMODEL_MODEL_NAME") or "classifier"
MIRROR_BASE = os.environ.get("SAVEDMODEL_MIRROR_BASE") or f"{ROOT}/mirror/classifier"
CONN_ID = os.environ.get("SAVEDMODEL_CONN_ID") or None
MIRROR_CONN_ID = os.environ.get("SAVEDMODEL_MIRROR_CONN_ID") or None
TARGET_TF = os.environ.get("SAVEDMODEL_TARGET_TF") or "2.12"
TF_SERVING_URL = os.environ.get("SAVEDMODEL_TF_SERVING_URL") or None
BAKE_SECONDS = float(os.environ.get("SAVEDMODEL_BAKE_SECONDS") or 30)
FLEET_EXPORT_ROOT = os.environ.get("SAVEDMODEL_FLEET_EXPORT_ROOT") or f"{ROOT}/fleet/exports"
FLEET_SERVING_ROOT = os.environ.get("SAVEDMODEL_FLEET_SERVING_ROOT") or f"{ROOT}/fleet/serving"
FLEET_CONCURRENCY = int(os.environ.get("SAVEDMODEL_FLEET_CONCURRENCY") or 8)
FLEET_POOL = os.environ.get("SAVEDMODEL_FLEET_POOL") or "default_pool"
WATCH_BASE = os.environ.get("SAVEDMODEL_WATCH_BASE") or f"{ROOT}/pushed/ranker"
WATCH_MIRROR = os.environ.get("SAVEDMODEL_WATCH_MIRROR") or f"{ROOT}/mirror/ranker"
WATCH_SECONDS = float(os.environ.get("SAVEDMODEL_WATCH_SECONDS") or 60)

# The contract clients of the classifier rely on; a renamed input fails validation.
SIGNATURE_SPEC = {
    "signatures": {
        "serving_default": {
            "method_name": "tensorflow/serving/predict",
            "inputs": {"x": {"dtype": "DT_FLOAT", "shape": [-1, 4]}},
            "outputs": {"y": {"dtype": "DT_FLOAT", "shape": [-1, 3]}},
        },
        "classify": {"method_name": "tensorflow/serving/classify"},
    }
}

# The classifier's serving base path as an Airflow Asset: every publish there emits an event
# carrying the version, and the mirror DAG is scheduled on it.
CLASSIFIER = savedmodel_asset(SERVING_BASE, name="savedmodel_classifier")
