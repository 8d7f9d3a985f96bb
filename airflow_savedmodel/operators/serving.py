"""Operators that act on what TF Serving serves: move a label, release a version by evidence
(canary, bake, promote or roll back), and conclude a rollout a person approved or rejected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_savedmodel.deprecation import renamed
from airflow_savedmodel.operators._common import (
    _default_deferrable,
    _flag,
    _hook,
    _LineageMixin,
    _rollout_outcome,
    _signing,
    _tf_serving,
    _version,
)

if TYPE_CHECKING:
    from airflow_savedmodel.hooks.tfserving import TFServingHook
    from airflow_savedmodel.release.evidence import Check
    from airflow_savedmodel.release.rollout import InFlight, Plan


class SavedModelServingLabelOperator(BaseOperator):
    """Move a label in TensorFlow Serving's model config file: set, promote or roll back.

    Each change is one atomic update of the file that refuses versions that are not complete
    under the model's base path. TF Serving (without ``--allow_version_labels_for_unavailable_models``)
    accepts a label only on a version it has loaded.

    :param serving_config: the model config file (TF Serving's ``--model_config_file``) (templated).
    :param model_name: the model's name in it (templated).
    :param action: "set" (``version_label`` -> ``version``), "promote" (``version_label`` -> the
        version ``from_label`` names) or "rollback" (``version_label`` -> ``version``, default the
        newest complete version below its current one) (templated).
    :param version_label: the label to move (templated).
    :param version: the version for "set", the target for "rollback" (templated).
    :param from_label: the label "promote" copies from (templated).
    :param savedmodel_conn_id: connection for the config file and the base path.
    :param trusted_signers: trusted signers (a PEM file's location): the version the label
        moves to must verify, else nothing changes; default the deployment's
        ``[savedmodel] require_signature`` (templated).
    """

    template_fields: Sequence[str] = (
        "serving_config",
        "model_name",
        "action",
        "version_label",
        "version",
        "from_label",
        "savedmodel_conn_id",
        "trusted_signers",
    )
    ui_color = "teal.300"

    @renamed(require_signature="trusted_signers")
    def __init__(
        self,
        *,
        serving_config: str,
        model_name: str,
        action: str = "promote",
        version_label: str = "stable",
        version: int | str | None = None,
        from_label: str = "canary",
        savedmodel_conn_id: str | None = None,
        trusted_signers: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.trusted_signers = trusted_signers
        self.serving_config, self.model_name, self.action = serving_config, model_name, action
        self.version_label, self.version, self.from_label = version_label, version, from_label
        self.savedmodel_conn_id = savedmodel_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        version = _version(self.version)
        _, trust = _signing(self, self.savedmodel_conn_id)
        model = _hook(self.savedmodel_conn_id).serving_labels(
            self.serving_config,
            self.model_name,
            action=str(self.action),
            version_label=self.version_label,
            version=None if version is None else int(version),
            from_label=self.from_label,
            trust=trust,
        )
        self.log.info(
            "%s label %r: %s now serves %s with labels %s",
            self.action,
            self.version_label,
            model.name,
            model.versions,
            model.labels,
        )
        return model.to_json()


class SavedModelRolloutOperator(_LineageMixin, BaseOperator):
    """Release a published version by evidence: point ``canary`` at it, wait until TF Serving
    serves it (deferred: no worker slot while waiting), send the same requests to ``canary`` and
    ``stable`` for the policy's bake period, then promote (``stable`` := the candidate) when every
    check passes, or roll back (the candidate withdrawn from the config, ``stable`` untouched).

    The decision, each check with its figure and threshold, the metrics and the run are written
    to the version's release record (``savedmodel serving history``) and pushed to XCom; with
    ``outlets`` they are the Asset event's extra. A second rollout of the same model while one
    runs is refused with the first's run named; a retry of this task resumes its own rollout.

    :param serving_config: TF Serving's model config file (templated).
    :param model_name: the model's name in it (templated).
    :param version: the candidate version, e.g. the publish task's XCom (templated).
    :param server_url: TF Serving's REST API, e.g. ``http://tf-serving:8501``; its replicas as a
        list of such URLs, or ``dns+http://NAME:8501`` for every address NAME resolves to (a
        headless Service): every replica must load the candidate, serve each label and pass its
        own checks (templated); or
    :param tf_serving_conn_id: an HTTP connection to TF Serving (TLS, CA bundle, headers).
    :param policy: the rollout policy: a dict, JSON text or the URL of a JSON/YAML file
        (templated; see ``airflow_savedmodel.release.policy``; default: its documented defaults).
    :param inputs_url: an .npz URL of inputs to send besides the version's warmup requests (templated).
    :param signature_name: the signature ``inputs_url`` are for (templated).
    :param metrics: the candidate's metrics (a dict, e.g. the training task's XCom), gated by the
        policy's ``metrics`` and recorded as the next rollout's baseline (templated).
    :param fail_on_rollback: fail the task when the candidate is rolled back (default True), so the
        DAG run shows the release did not happen; the record and XCom are written first.
    :param hold_for_approval: when every check passes, do not promote: the record says
        ``awaiting_approval`` and a person decides (a HITL task, then
        ``SavedModelRolloutDecisionOperator``).
    :param savedmodel_conn_id: connection for the config file and the base path.
    :param deferrable: wait for TF Serving in the triggerer; default ``[operators] default_deferrable``.
    :param poke_interval: seconds between TF Serving status checks while waiting (default 5).
    """

    template_fields: Sequence[str] = (
        "serving_config",
        "model_name",
        "version",
        "server_url",
        "tf_serving_conn_id",
        "policy",
        "inputs_url",
        "signature_name",
        "metrics",
        "savedmodel_conn_id",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"policy": "json", "metrics": "json"}
    ui_color = "teal.300"

    @renamed(inputs="inputs_url", signature="signature_name")
    def __init__(
        self,
        *,
        serving_config: str,
        model_name: str,
        version: int | str,
        server_url: str | list[str] | None = None,
        tf_serving_conn_id: str | None = None,
        policy: dict[str, Any] | str | None = None,
        inputs_url: str | None = None,
        signature_name: str = "serving_default",
        metrics: dict[str, float] | str | None = None,
        fail_on_rollback: bool = True,
        hold_for_approval: bool = False,
        savedmodel_conn_id: str | None = None,
        deferrable: bool | None = None,
        poke_interval: float = 5.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not server_url and not tf_serving_conn_id:
            raise ValueError("SavedModelRolloutOperator needs server_url or tf_serving_conn_id")
        self.serving_config, self.model_name, self.version = serving_config, model_name, version
        self.server_url, self.tf_serving_conn_id = server_url, tf_serving_conn_id
        self.policy, self.inputs_url, self.signature_name, self.metrics = (
            policy,
            inputs_url,
            signature_name,
            metrics,
        )
        self.fail_on_rollback, self.savedmodel_conn_id = fail_on_rollback, savedmodel_conn_id
        self.hold_for_approval = hold_for_approval
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self.poke_interval = poke_interval

    def _metrics(self) -> dict[str, float] | None:
        if self.metrics in (None, "", "None"):
            return None
        import json

        doc = json.loads(self.metrics) if isinstance(self.metrics, str) else self.metrics
        return {str(k): float(v) for k, v in dict(doc).items()}

    def _run_id(self, context: Any) -> str:
        return f"{self.dag_id}/{context['run_id']}/{self.task_id}"

    def execute(self, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_savedmodel.errors import PolicyError, ServerUnreachableError, SignatureError

        hook = _hook(self.savedmodel_conn_id)
        version = int(str(self.version))
        try:  # a policy that does not parse fails here, before anything changes
            plan = hook.rollout_plan(self.serving_config, self.model_name, self.policy)
        except PolicyError as exc:
            hook.rollout_refused(
                self.serving_config, self.model_name, version, self._run_id(context), str(exc)
            )
            raise AirflowFailException(str(exc)) from None  # a retry would read the same policy
        tf_serving = _tf_serving(self.server_url, self.tf_serving_conn_id)
        fleet = tf_serving.fleet()
        done = hook.rollout_unchanged(plan, version)
        if done is not None:  # a rerun whose export is the version already stable
            self.log.info("%s", done.message)
            return done.to_json()
        try:
            in_flight = hook.begin_rollout(
                plan, version, fleet, run_id=self._run_id(context), metrics=self._metrics()
            )
        except (ServerUnreachableError, SignatureError) as exc:  # no retry changes these: fail at once
            raise AirflowFailException(str(exc)) from None
        self.log.info(
            "Rolling out %s version %s (stable: %s); waiting until TF Serving serves it (%s)",
            self.model_name,
            version,
            in_flight.stable,
            fleet.display,
        )
        timeout = float(plan.policy["available_timeout_seconds"])
        max_lag = float(plan.policy["replicas"]["max_lag_seconds"])
        settled = tf_serving.availability(self.model_name, version)
        if settled is not None:  # already loaded, or refused: no wait to hand to the triggerer
            return self._finish(context, plan, in_flight, settled, tf_serving)
        if self.deferrable:
            from airflow_savedmodel.triggers.savedmodel import SavedModelServedTrigger

            self.defer(
                trigger=SavedModelServedTrigger(
                    server_url=self.server_url,
                    model_name=self.model_name,
                    version=version,
                    poke_interval=self.poke_interval,
                    timeout=timeout,
                    tf_serving_conn_id=self.tf_serving_conn_id,
                    max_lag_seconds=max_lag,
                ),
                method_name="execute_complete",
            )
        check = tf_serving.wait_available(self.model_name, version, timeout, self.poke_interval, max_lag)
        return self._finish(context, plan, in_flight, check, tf_serving)

    def execute_complete(self, context: Any, event: dict[str, Any], **kwargs: Any) -> Any:
        hook = _hook(self.savedmodel_conn_id)
        plan = hook.rollout_plan(self.serving_config, self.model_name, self.policy)
        tf_serving = _tf_serving(self.server_url, self.tf_serving_conn_id)
        check = tf_serving.available_from_event(
            event, float(plan.policy["available_timeout_seconds"]), int(str(self.version))
        )
        # The rollout's state lives beside the versions (claim and record), not in the deferral.
        in_flight = hook.rollout_state(plan, int(str(self.version)))
        return self._finish(context, plan, in_flight, check, tf_serving)

    def _finish(
        self, context: Any, plan: Plan, in_flight: InFlight, check: Check, tf_serving: TFServingHook
    ) -> Any:
        result = _hook(self.savedmodel_conn_id).finish_rollout(
            plan,
            in_flight,
            available=check,
            endpoint=tf_serving.fleet(),
            inputs_url=self.inputs_url or None,
            signature_name=self.signature_name,
            metrics=self._metrics(),
            hold_for_approval=_flag(self.hold_for_approval),
        )
        for item in result.checks:
            self.log.info("%s %s: %s", item.status.upper(), item.name, item.message)
        self.log.info("%s (record: %s)", result.message, result.record_url)
        doc = result.to_json()
        version_url = str(plan.target.base.join(str(result.version)).url)
        release = {
            "decision": doc["decision"],
            "stable_before": doc["stable_before"],
            "stable_after": doc["stable_after"],
            "failed": [c["name"] for c in doc["checks"] if c["status"] == "fail"],
            "record": doc["record"],
        }
        self._record_lineage([], [(version_url, {"version": result.version, "release": release})])
        for outlet in self.outlets or ():
            context["outlet_events"][outlet].extra = {
                "decision": doc["decision"],
                "version": doc["version"],
                "stable": doc["stable_after"],
                "record": doc["record"],
            }
        return _rollout_outcome(context, result, self.fail_on_rollback)


class SavedModelRolloutDecisionOperator(BaseOperator):
    """Conclude a rollout held for approval: promote the candidate when a person approved it,
    else roll it back; the answer (who, what, when) is part of the release record.

    :param serving_config: TF Serving's model config file (templated).
    :param model_name: the model's name in it (templated).
    :param version: the held candidate, e.g. the rollout task's XCom ``version`` (templated).
    :param answer: the HITL task's result (its XCom: ``chosen_options``, ``responded_by_user``);
        promotes only when a person chose ``approve_option`` (templated). No answer (a timeout,
        whatever the HITL task's defaults) rolls back.
    :param approve_option: the option that means "promote" (default "Promote").
    :param fail_on_rollback: fail the task when the answer rolls back (default True).
    :param savedmodel_conn_id: connection for the config file and the base path.
    :param server_url: TF Serving (one URL, a list of replicas, or a ``dns+http://`` name), as the
        rollout was given it (templated); or
    :param tf_serving_conn_id: an HTTP connection to it. With either, the decision waits until
        every replica serves the promoted version as ``stable`` (or none serves a rejected one),
        as the rollout's own decision does; without, it only changes the config.
    """

    template_fields: Sequence[str] = (
        "serving_config",
        "model_name",
        "version",
        "answer",
        "savedmodel_conn_id",
        "server_url",
        "tf_serving_conn_id",
    )
    ui_color = "teal.300"

    def __init__(
        self,
        *,
        serving_config: str,
        model_name: str,
        version: int | str,
        answer: dict[str, Any] | str | None,
        approve_option: str = "Promote",
        fail_on_rollback: bool = True,
        savedmodel_conn_id: str | None = None,
        server_url: str | list[str] | None = None,
        tf_serving_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.serving_config, self.model_name, self.version = serving_config, model_name, version
        self.answer, self.approve_option = answer, approve_option
        self.fail_on_rollback, self.savedmodel_conn_id = fail_on_rollback, savedmodel_conn_id
        self.server_url, self.tf_serving_conn_id = server_url, tf_serving_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        import ast
        import datetime

        answer = self.answer
        if isinstance(answer, str):
            answer = ast.literal_eval(answer) if answer.strip() not in ("", "None") else None
        chosen = list((answer or {}).get("chosen_options") or [])
        user = (answer or {}).get("responded_by_user") or {}
        who = (user.get("name") or user.get("id")) if isinstance(user, dict) else str(user)
        approved = bool(who) and self.approve_option in chosen  # a timeout's default never promotes
        approval = {
            "by": who or None,
            "chosen": chosen,
            "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "reason": None if who else "no answer before the approval timed out: rolled back",
        }
        fleet = (
            _tf_serving(self.server_url, self.tf_serving_conn_id).fleet()
            if self.server_url or self.tf_serving_conn_id
            else None
        )
        result = _hook(self.savedmodel_conn_id).conclude_rollout(
            self.serving_config,
            self.model_name,
            int(str(self.version)),
            approved=approved,
            approval=approval,
            endpoint=fleet,
        )
        self.log.info("%s (record: %s)", result.message, result.record_url)
        return _rollout_outcome(context, result, self.fail_on_rollback)
