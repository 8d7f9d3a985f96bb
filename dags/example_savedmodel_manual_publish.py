"""
### Publish a model by hand

Trigger from the Airflow UI: the form asks for the model to publish (empty: a sample classifier
this DAG writes on first use, so the form runs from its defaults on a fresh machine), where to,
whether to strip default attrs, which TensorFlow Serving release must load it, whether the
clients of the version served today must keep working, which label to point at it and how many
versions to keep. The model is validated before anything is published; an invalid model fails
the run with the report (it names your model, not a temporary copy).

The publish is gated through TensorFlow Serving's model config file: the version is named there
only once it is completely copied and verified. A publish to the classifier's base path emits
the `savedmodel_classifier` Asset event, so `example_savedmodel_serving_mirror` mirrors it.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import Param, dag, task
from savedmodel_demo_settings import (
    CLASSIFIER,
    CONN_ID,
    EXPORT_ROOT,
    MODEL_NAME,
    SERVING_BASE,
    SERVING_CONFIG,
)

from airflow_savedmodel.operators.savedmodel import SavedModelExportOperator, SavedModelRetentionOperator

TF_RELEASES = ["2.12", "2.13", "2.14", "2.15", "2.16", "2.17", "2.18", "2.19", "2.20", "2.21"]
SAMPLE_MODEL = f"{EXPORT_ROOT}/sample/model"


@dag(
    schedule=None,
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    catchup=False,
    tags=["savedmodel", "example"],
    doc_md=__doc__,
    # Templates render as text: native rendering would turn the release "2.20" into the float 2.2.
    # Optional fields are nullable: the trigger form marks a plain "string" field required.
    # The operators read "True"/"5" back as a flag and a count.
    params={
        "source_url": Param(
            None,
            type=["null", "string"],
            title="Source model",
            description=(
                "SavedModel directory to publish: a path, gs://, s3:// or any fsspec URL. "
                f"Empty: a sample classifier at {SAMPLE_MODEL}, written there on first use with "
                "TF Serving warmup requests (so the canary rollout can release it)."
            ),
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
            values_display={"null": f"the newest shipped ({TF_RELEASES[-1]})"},
            title="Target TensorFlow Serving release",
            description=(
                "Fail if the model uses ops or attrs this release does not know, or ops it has no "
                f"CPU kernel for. Empty: the newest release the package ships ({TF_RELEASES[-1]})."
            ),
        ),
        "check_clients": Param(
            True,
            type="boolean",
            title="Keep the served signatures",
            description=(
                "Fail before publishing if the model's signatures would break clients of the "
                "version served today (the config's stable label, else the newest version)."
            ),
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
            values_display={"null": "none"},
            title="Label",
            description="Point this label at the new version.",
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
    @task
    def source(params: dict[str, Any] | None = None) -> str:
        """The model the form names, or the sample classifier (written on first use)."""
        url = str((params or {}).get("source_url") or "").strip()
        if url:
            return url
        from airflow_savedmodel.hooks.savedmodel import SavedModelHook

        fs, path = SavedModelHook(CONN_ID).filesystem(SAMPLE_MODEL)
        if not fs.exists(f"{path}/saved_model.pb"):
            import numpy as np

            from airflow_savedmodel.format.servable import DenseLayer, export_dense_model

            rng = np.random.default_rng(0)
            layers = [
                DenseLayer(rng.normal(0, 0.5, (4, 8)).astype(np.float32), np.zeros(8, np.float32), "relu"),
                DenseLayer(rng.normal(0, 0.5, (8, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax"),
            ]
            if fs.exists(path):  # an earlier attempt that died while writing it
                fs.rm(path, recursive=True)
            export_dense_model(path, layers, classify=True, class_labels=["a", "b", "c"], fs=fs)
            # Warmup requests in the model: TF Serving replays them when it loads a version, and
            # the canary rollout sends them to canary and stable, so what this DAG publishes can
            # be released by example_savedmodel_canary_rollout.
            probe = np.random.default_rng(1).normal(0, 1, (8, 4)).astype(np.float32)
            SavedModelHook(CONN_ID).write_warmup(SAMPLE_MODEL, {"x": probe}, warmup_count=4)
            print(f"wrote the sample classifier to {SAMPLE_MODEL}, with warmup requests")
        return SAMPLE_MODEL

    publish = SavedModelExportOperator(
        task_id="publish",
        model_url=source(),
        base_path="{{ params.destination }}",
        strip_default_attrs="{{ params.strip }}",
        target_tf="{{ params.target_tf or '' }}",
        compatible_with="{{ 'served' if params.check_clients else '' }}",
        serving_config="{{ params.serving_config or '' }}",
        model_name="{{ params.model_name }}",
        version_labels="{{ params.label or '' }}",
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
