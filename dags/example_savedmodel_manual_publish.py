"""
### Publish a model by hand

Trigger from the Airflow UI: the form asks for the model to publish, where to, whether to strip
default attrs, which TensorFlow Serving release must load it, which label to point at it and
how many versions to keep. The model is validated before anything is published; an invalid
model fails the run with the report (it names your model, not a temporary copy).

The publish is gated through TensorFlow Serving's model config file: the version is named there
only once it is completely copied and verified. A publish to the classifier's base path emits
the `savedmodel_classifier` Asset event, so `example_savedmodel_serving_mirror` mirrors it.
"""

from __future__ import annotations

import datetime

from airflow.sdk import Param, dag
from savedmodel_demo_settings import CLASSIFIER, CONN_ID, MODEL_NAME, SERVING_BASE, SERVING_CONFIG

from airflow_savedmodel.operators.savedmodel import SavedModelExportOperator, SavedModelRetentionOperator

TF_RELEASES = ["2.12", "2.13", "2.14", "2.15", "2.16", "2.17", "2.18", "2.19", "2.20", "2.21"]


@dag(
    schedule=None,
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    catchup=False,
    tags=["savedmodel", "example"],
    doc_md=__doc__,
    # Templates render as text: native rendering would turn the release "2.20" into the float 2.2.
    # The operators read "True"/"5" back as a flag and a count.
    params={
        "source_url": Param(
            "",
            type="string",
            minLength=1,
            title="Source model",
            description="SavedModel directory to publish: a path, gs://, s3:// or any fsspec URL.",
        ),
        "destination": Param(
            SERVING_BASE,
            type="string",
            title="Serving base path",
            description="The model's base path; the model is published as the next numeric version under it.",
        ),
        "strip": Param(
            True,
            type="boolean",
            title="Strip default attrs",
            description="Remove default-valued node attrs so older TensorFlow Serving binaries load the model.",
        ),
        "target_tf": Param(
            "2.12",
            type=["null", "string"],
            enum=[None, *TF_RELEASES],
            title="Target TensorFlow Serving release",
            description="Fail if the model uses ops or attrs this release does not know. Empty: no check.",
        ),
        "serving_config": Param(
            SERVING_CONFIG,
            type=["null", "string"],
            title="TensorFlow Serving model config",
            description="The --model_config_file the version is named in once complete. Empty: plain publish.",
        ),
        "model_name": Param(
            MODEL_NAME, type="string", title="Model name", description="Its name in that file."
        ),
        "label": Param(
            None,
            type=["null", "string"],
            enum=[None, "canary", "stable"],
            title="Label",
            description="Point this label at the new version. Empty: none.",
        ),
        "keep_last": Param(
            5,
            type="integer",
            minimum=1,
            title="Versions to keep",
            description="Retention after publishing: the newest N servable versions stay.",
        ),
    },
)
def example_savedmodel_manual_publish() -> None:
    publish = SavedModelExportOperator(
        task_id="publish",
        model_url="{{ params.source_url }}",
        base_path="{{ params.destination }}",
        strip_default_attrs="{{ params.strip }}",
        target_tf="{{ params.target_tf or '' }}",
        serving_config="{{ params.serving_config or '' }}",
        model_name="{{ params.model_name }}",
        labels=["{{ params.label or '' }}"],
        source_conn_id=CONN_ID,
        outlets=[CLASSIFIER],
        doc_md="Validate (after stripping), copy and verify, then name the version in the serving config.",
    )
    retention = SavedModelRetentionOperator(
        task_id="retention",
        base_path="{{ params.destination }}",
        keep_last="{{ params.keep_last }}",
        serving_config="{{ params.serving_config or '' }}",
        savedmodel_conn_id=CONN_ID,
        doc_md="Keep the newest N complete versions; never one the serving config names.",
    )
    publish >> retention


example_savedmodel_manual_publish()
