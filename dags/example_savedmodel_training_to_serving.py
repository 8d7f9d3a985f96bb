"""
### Training to serving, nightly

A small numpy MLP is trained on generated data and exported as a servable SavedModel with the
provider's format core (no TensorFlow on the worker). One export task strips default-valued
attrs (in memory), validates the result (deep checksums, the clients' signature contract,
loadability by the target TensorFlow Serving release, the warmup requests built from the
probe inputs) and publishes it as the next version under
the serving base path, gated through TensorFlow Serving's model config file: the version is
named there only once it is completely copied and verified. A check reads the version this run
published back and compares its prediction with the trained network's. Then:

- with `SAVEDMODEL_TF_SERVING_URL` set (a running TF Serving), a **rollout decides by
  evidence**: `canary` once TF Serving has loaded the version, the warmup requests sent to
  `canary` and `stable`, the training accuracy gated against the one recorded for `stable`;
  promoted, or rolled back with the failing check named (`example_savedmodel_canary_rollout`
  explains the policy);
- without one (the local demo), the version is labelled `canary` and `stable` is promoted to it
  once the check passed.

Roll back by hand with `example_savedmodel_rollback`.

Paths and connections come from environment variables (see `savedmodel_demo_settings.py`):
local directories by default, `gs://` or `s3://` when configured.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import Param, dag, task
from savedmodel_demo_settings import (
    BAKE_SECONDS,
    CLASSIFIER,
    CONN_ID,
    EXPORT_ROOT,
    MODEL_NAME,
    SERVING_BASE,
    SERVING_CONFIG,
    SIGNATURE_SPEC,
    TARGET_TF,
    TF_SERVING_URL,
)

from airflow_savedmodel.operators.savedmodel import (
    SavedModelExportOperator,
    SavedModelRolloutOperator,
    SavedModelServingLabelOperator,
)

# A nightly retrain answers a little differently: the top class must mostly agree, outputs are
# not held to float noise, and the training accuracy may not drop more than 2 points below the
# accuracy recorded when the stable version was released.
RETRAIN_POLICY = {
    "bake_seconds": BAKE_SECONDS,
    "outputs": {
        "max_abs_diff": 0.1,
        "max_rel_diff": 0.2,
        "max_differing_fraction": 0.5,
        "min_top_class_agreement": 0.9,
    },
    "metrics": {"accuracy": {"min": 0.8, "max_drop": 0.02}},
}

CLASSES = ["setosa", "versicolor", "virginica"]


@dag(
    schedule="@daily",
    start_date=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    catchup=False,
    # One run at a time: unpausing to trigger a run from the form also starts the day's scheduled
    # run, and two runs would publish and move the labels at once. The second waits, queued.
    max_active_runs=1,
    tags=["savedmodel", "example"],
    doc_md=__doc__,
    default_args={"retries": 2, "retry_delay": datetime.timedelta(seconds=30)},
    params={
        "epochs": Param(
            300,
            type="integer",
            minimum=1,
            maximum=5000,
            title="Epochs",
            description="Full-batch gradient steps.",
        ),
        "learning_rate": Param(
            0.5,
            type="number",
            exclusiveMinimum=0,
            maximum=10,
            title="Learning rate",
            description="Gradient step size.",
        ),
    },
)
def example_savedmodel_training_to_serving() -> None:
    @task
    def train(run_id: str | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Fit a 4-16-3 MLP with softmax cross-entropy by full-batch gradient descent; export it."""
        import io
        import re

        import numpy as np

        from airflow_savedmodel.format.servable import DenseLayer, export_dense_model, forward
        from airflow_savedmodel.hooks.savedmodel import SavedModelHook

        rng = np.random.default_rng(42)
        centers = np.array([[0, 0, 0, 0], [3, 3, 0, 1], [0, 3, 3, -1]], np.float32)
        labels = rng.integers(0, 3, 600)
        x = (centers[labels] + rng.normal(0, 0.8, (600, 4))).astype(np.float32)
        onehot = np.eye(3, dtype=np.float32)[labels]
        w1 = rng.normal(0, 0.5, (4, 16)).astype(np.float32)
        b1 = np.zeros(16, np.float32)
        w2 = rng.normal(0, 0.5, (16, 3)).astype(np.float32)
        b2 = np.zeros(3, np.float32)
        epochs, rate = int((params or {}).get("epochs", 300)), float((params or {}).get("learning_rate", 0.5))
        for _ in range(epochs):
            hidden = np.maximum(x @ w1 + b1, 0)
            logits = hidden @ w2 + b2
            probs = np.exp(logits - logits.max(1, keepdims=True))
            probs /= probs.sum(1, keepdims=True)
            grad_logits = (probs - onehot) / len(x)
            grad_hidden = (grad_logits @ w2.T) * (hidden > 0)
            w2 -= rate * hidden.T @ grad_logits
            b2 -= rate * grad_logits.sum(0)
            w1 -= rate * x.T @ grad_hidden
            b1 -= rate * grad_hidden.sum(0)
        layers = [DenseLayer(w1, b1, "relu"), DenseLayer(w2, b2, "softmax")]
        accuracy = float((forward(layers, x).argmax(1) == labels).mean())
        print(f"training accuracy {accuracy:.3f} after {epochs} epochs at learning rate {rate}")
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id or "manual")
        url = f"{EXPORT_ROOT}/{safe}/model"
        fs, path = SavedModelHook(CONN_ID).filesystem(url)
        if fs.exists(path):  # a retry of this task: replace our own earlier export
            fs.rm(path, recursive=True)
        export_dense_model(path, layers, classify=True, class_labels=CLASSES, fs=fs)
        probe = x[:5]
        buffer = io.BytesIO()
        np.savez(buffer, x=probe)  # TF Serving replays these as warmup requests when it loads the version
        fs.pipe_file(f"{path.rstrip('/')}-warmup.npz", buffer.getvalue())
        return {
            "model_url": url,
            "warmup_url": f"{url.rstrip('/')}-warmup.npz",
            "accuracy": accuracy,
            "probe": probe.tolist(),
            "expected": forward(layers, probe).tolist(),
        }

    trained = train()
    publish = SavedModelExportOperator(
        task_id="publish",
        model_url="{{ ti.xcom_pull(task_ids='train')['model_url'] }}",
        base_path=SERVING_BASE,
        strip_default_attrs=True,
        deep=True,
        target_tf=TARGET_TF,
        expect=SIGNATURE_SPEC,
        serving_config=SERVING_CONFIG,
        model_name=MODEL_NAME,
        version_labels=[] if TF_SERVING_URL else ["canary"],  # the rollout labels it once TF Serving has it
        inputs_url="{{ ti.xcom_pull(task_ids='train')['warmup_url'] }}",
        warmup_count=10,
        source_conn_id=CONN_ID,
        dest_conn_id=CONN_ID,
        outlets=[CLASSIFIER],
        doc_md=(
            "Add TF Serving warmup requests from the probe inputs, strip default attrs, validate what will be served (deep checksums, the clients' signature "
            "contract, the target release), publish and verify; then name the version `canary`."
        ),
    )

    @task
    def check_served(published: dict[str, Any], trained: dict[str, Any]) -> dict[str, Any]:
        """Read the version this run published back and compare its prediction with the trained network's."""
        import numpy as np

        from airflow_savedmodel.format.model import SavedModel
        from airflow_savedmodel.format.servable import DenseLayer, forward
        from airflow_savedmodel.hooks.savedmodel import SavedModelHook

        hook = SavedModelHook(CONN_ID)
        fs, path = hook.filesystem(published["uri"])
        with SavedModel.open(path, fs=fs) as model:
            bundle = model.variables()
            assert bundle is not None
            layers = [
                DenseLayer(bundle.read("dense/kernel"), bundle.read("dense/bias"), "relu"),
                DenseLayer(bundle.read("dense_1/kernel"), bundle.read("dense_1/bias"), "softmax"),
            ]
            signature = model.meta_graph("serve").signature("serving_default")
        got = forward(layers, np.asarray(trained["probe"], np.float32))
        diff = float(np.abs(got - np.asarray(trained["expected"], np.float32)).max())
        if diff > 1e-6:
            raise RuntimeError(f"served model predicts differently (max abs diff {diff})")
        print(
            f"version {published['version']} serves {signature.inputs['x'].shape} -> {signature.outputs['y'].shape}"
        )
        return {"version": published["version"], "url": published["uri"], "max_abs_diff": diff}

    trained >> publish
    checked = check_served(publish.output, trained)
    if TF_SERVING_URL:  # a running TF Serving: release by evidence
        rollout = SavedModelRolloutOperator(
            task_id="rollout",
            serving_config=SERVING_CONFIG,
            model_name=MODEL_NAME,
            version="{{ ti.xcom_pull(task_ids='publish')['version'] }}",
            server_url=TF_SERVING_URL,
            policy=RETRAIN_POLICY,
            metrics="{{ {'accuracy': ti.xcom_pull(task_ids='train')['accuracy']} | tojson }}",
            savedmodel_conn_id=CONN_ID,
            deferrable=True,
            retries=1,  # resumes the same rollout; covers apache/airflow#67287 (a trigger firing at once)
            retry_delay=datetime.timedelta(seconds=10),
            outlets=[CLASSIFIER],
            doc_md="Canary, wait until served, bake against stable, then promote or roll back on the evidence.",
        )
        checked >> rollout
    else:  # the local demo: no server to ask
        promote = SavedModelServingLabelOperator(
            task_id="promote_to_stable",
            serving_config=SERVING_CONFIG,
            model_name=MODEL_NAME,
            action="promote",
            from_label="canary",
            version_label="stable",
            savedmodel_conn_id=CONN_ID,
            doc_md="Point `stable` at the version `canary` names, now that it checked out.",
        )
        checked >> promote


example_savedmodel_training_to_serving()
