"""
### Canary rollout: release a published version by evidence

Trigger with the form. The candidate (by default the newest complete version under the serving
base path above `stable`) becomes `canary` once TF Serving has loaded it (the task waits deferred, in
the triggerer); then the same requests (the version's warmup file) go to `canary` and `stable`
for the policy's bake period, and the rollout promotes `stable := canary` when every check
passes (outputs agree, no NaN, no errors, latency within the ratios, metric gates) or rolls the
candidate back, naming the check, the figure and the threshold. With **approval** on, passing
evidence waits for a person (Promote / Roll back in the UI; no answer in time rolls back).

Every decision is recorded beside the versions: `savedmodel serving history CONFIG --model-name NAME`.
Needs a running TF Serving (`SAVEDMODEL_TF_SERVING_URL`, or the form's server URL).
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import Param, dag, task
from savedmodel_demo_settings import (
    BAKE_SECONDS,
    CLASSIFIER,
    CONN_ID,
    MODEL_NAME,
    SERVING_BASE,
    SERVING_CONFIG,
    TF_SERVING_URL,
)

from airflow_savedmodel.operators.savedmodel import (
    SavedModelRolloutDecisionOperator,
    SavedModelRolloutOperator,
)

# The form's policy: a re-export or a retrain whose answers may change a little, so outputs are
# compared loosely and the top class must mostly agree; latency and errors as the defaults; a
# half-minute bake (SAVEDMODEL_BAKE_SECONDS; at least the policy's 20 requests).
DEFAULT_POLICY: dict[str, Any] = {
    "bake_seconds": BAKE_SECONDS,
    "min_requests": 20,
    "outputs": {"max_abs_diff": 0.05, "max_rel_diff": 0.1, "max_differing_fraction": 0.2},
    "latency": {"max_p50_ratio": 1.5, "max_p95_ratio": 2.0},
}


@dag(
    schedule=None,
    catchup=False,
    tags=["savedmodel", "example"],
    doc_md=__doc__,
    params={
        "version": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            title="Candidate version",
            description="Empty: the newest complete version under the serving base path above stable.",
        ),
        "server_url": Param(
            TF_SERVING_URL or "http://localhost:8501",
            type="string",
            title="TF Serving REST URL",
            description=(
                "Needs a running TF Serving that reads the serving config: the rollout talks to its REST "
                "API, and fails at once, changing nothing, when none answers here. Several replicas: "
                "their URLs separated by commas, or dns+http://NAME:8501 for every address NAME "
                "resolves to (a Kubernetes headless Service); each must load, serve and pass. Default: "
                "SAVEDMODEL_TF_SERVING_URL, else TF Serving's own default port on this machine."
            ),
        ),
        "inputs": Param(
            None,
            type=["null", "string"],
            title="Request inputs",
            description=(
                "A .npz file of inputs (one array per input of the signature below) to send to canary "
                "and stable besides the version's own warmup requests. Empty: the warmup requests "
                "alone (the manual publish and training DAGs write them into every version)."
            ),
        ),
        "signature": Param(
            "serving_default",
            type="string",
            title="Signature of the inputs",
            description="The SignatureDef the request inputs are for.",
        ),
        "policy": Param(
            DEFAULT_POLICY,
            type="object",
            title="Rollout policy",
            description=(
                "What the canary must show to become `stable`; keys left out take the defaults. "
                "`bake_seconds` and `min_requests`: how long and how much to compare canary with "
                "stable; `outputs`: answers may differ by `max_abs_diff` + `max_rel_diff` x stable's in "
                "at most `max_differing_fraction` of requests (`compare: false` for a retrain whose "
                "answers should change); `max_error_rate`; `latency`: canary's p50 and p95 at most "
                "`max_p50_ratio`/`max_p95_ratio` x stable's; `metrics`: gates on the training metrics "
                "(`min`, `max`, `max_drop`, `max_rise`); `available_timeout_seconds`: how long TF "
                "Serving may take to load the version. The provider's docs/concepts.md, \"Releasing "
                'by evidence", has the whole schema.'
            ),
        ),
        "compare_outputs": Param(
            True,
            type="boolean",
            title="Compare answers with stable",
            description=(
                "Off for a different or retrained model whose answers are expected to change: then "
                "errors, NaN or Inf, latency and the metric gates decide, not agreement with stable."
            ),
        ),
        "approval": Param(
            False,
            type="boolean",
            title="Hold passing evidence for approval",
            description="On: a person promotes or rolls back in the UI; no answer in 12 hours rolls back.",
        ),
    },
)
def example_savedmodel_canary_rollout() -> None:
    @task
    def candidate(params: dict[str, Any]) -> int:
        """The version to release: the form's, or the newest complete one above `stable`."""
        from airflow_savedmodel.hooks.savedmodel import SavedModelHook
        from airflow_savedmodel.storage import model_config

        if params.get("version"):
            return int(params["version"])
        hook = SavedModelHook(CONN_ID)
        model = model_config.find(model_config.read(hook.filesystem(SERVING_CONFIG)), MODEL_NAME)
        stable = model_config.describe(model).labels.get("stable", 0) if model is not None else 0
        newer = [
            v.version for v in hook.versions(SERVING_BASE) if v.state == "complete" and v.version > stable
        ]
        if not newer:
            raise ValueError(
                f"no complete version above stable ({stable}) under {SERVING_BASE}: nothing to release"
            )
        return max(newer)

    version = candidate()
    rollout = SavedModelRolloutOperator(
        task_id="rollout",
        serving_config=SERVING_CONFIG,
        model_name=MODEL_NAME,
        version="{{ ti.xcom_pull(task_ids='candidate') }}",
        server_url="{{ params.server_url }}",
        inputs_url="{{ params.inputs or '' }}",
        signature_name="{{ params.signature }}",
        policy=(
            "{{ dict(params.policy, outputs=dict(params.policy.get('outputs') or {}, "
            "compare=params.compare_outputs)) | tojson }}"
        ),
        hold_for_approval="{{ params.approval }}",
        savedmodel_conn_id=CONN_ID,
        deferrable=True,
        # A retry resumes the same rollout (its state is beside the versions). One covers Airflow
        # failing a deferred task whose trigger fired at once (apache/airflow#67287, #72716).
        retries=1,
        retry_delay=datetime.timedelta(seconds=10),
        outlets=[CLASSIFIER],
        doc_md="Canary, wait until served, bake against stable, then promote or roll back (or hold for approval).",
    )

    @task.short_circuit
    def held(outcome: dict[str, Any]) -> bool:
        """Ask a person only when the evidence passed and the form asked for approval."""
        return outcome["decision"] == "awaiting_approval"

    approve = HITLOperator(
        task_id="approve",
        subject=f"Promote {MODEL_NAME} version "
        + "{{ ti.xcom_pull(task_ids='rollout')['version'] }} to stable?",
        body=(
            "Every check passed:\n\n"
            "{% for c in ti.xcom_pull(task_ids='rollout')['checks'] %}"
            "- **{{ c.name }}** ({{ c.status }}): {{ c.message }}\n"
            "{% endfor %}"
        ),
        options=["Promote", "Roll back"],
        defaults=["Roll back"],
        response_timeout=datetime.timedelta(hours=12),
        doc_md="A person reads the evidence and chooses; no answer in 12 hours rolls back.",
    )
    decide = SavedModelRolloutDecisionOperator(
        task_id="decide",
        serving_config=SERVING_CONFIG,
        model_name=MODEL_NAME,
        version="{{ ti.xcom_pull(task_ids='rollout')['version'] }}",
        answer="{{ ti.xcom_pull(task_ids='approve') }}",
        savedmodel_conn_id=CONN_ID,
        server_url="{{ params.server_url }}",  # waits until every replica follows the decision
        doc_md="Promote when approved; roll back when rejected or unanswered.",
    )
    version >> rollout
    held(rollout.output) >> approve >> decide


example_savedmodel_canary_rollout()
