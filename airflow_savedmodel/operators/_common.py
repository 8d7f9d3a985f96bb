"""What the operators share: the storage hook of a task, flags and labels read back from
templates, lineage, progress logging, the publish path and the rollout's outcome.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_savedmodel.hooks.savedmodel import SavedModelHook
    from airflow_savedmodel.hooks.tfserving import TFServingHook


def _hook(conn_id: str | None, storage_options: dict[str, Any] | None = None) -> SavedModelHook:
    from airflow_savedmodel.hooks.savedmodel import SavedModelHook

    return SavedModelHook(conn_id, storage_options)


def _flag(value: bool | str | None) -> bool:
    """A bool from a flag that may arrive templated as text ("True", "false", "")."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _renamed_conn_id(source_conn_id: str | None, savedmodel_conn_id: str | None, operator: str) -> str | None:
    """``source_conn_id``, taking the deprecated ``savedmodel_conn_id`` (the name before the
    common-io convention of ``source_conn_id``/``dest_conn_id``) with a warning."""
    if savedmodel_conn_id is None:
        return source_conn_id
    import warnings

    from airflow.exceptions import AirflowProviderDeprecationWarning

    warnings.warn(
        f"{operator}: savedmodel_conn_id is deprecated; pass source_conn_id (and dest_conn_id)",
        AirflowProviderDeprecationWarning,
        stacklevel=3,
    )
    return source_conn_id or savedmodel_conn_id


def _labels(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Labels from a list or from text a template rendered ("canary", "canary,stable", ""):
    never the characters of a string."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return tuple(item.strip() for item in items if item and item.strip())


# Findings of one code pushed to XCom at most; the task log has the whole report.
XCOM_FINDINGS_PER_CODE = 20


def _push_report(context: Any, report: Any) -> None:
    context["ti"].xcom_push(key="report", value=report.to_json(max_per_code=XCOM_FINDINGS_PER_CODE))


def _version(value: int | str | None) -> int | str | None:
    if value is None or value == "":
        return None
    if isinstance(value, int) or str(value) in ("auto", "same"):
        return value
    return int(value)


class ProgressLog:
    """A progress callback that logs bytes and files every ``every`` seconds and at the end."""

    def __init__(self, log: Any, what: str, every: float = 10.0) -> None:
        self.log, self.what, self.every = log, what, every
        self.last = 0.0

    def __call__(self, progress: Any) -> None:
        now = time.monotonic()
        finished = progress.files_done == progress.files_total
        if not finished and now - self.last < self.every:
            return
        self.last = now
        self.log.info(
            "%s: %d%% (%s of %s bytes, %d of %d files)",
            self.what,
            int(progress.fraction * 100),
            f"{progress.bytes_done:,}",
            f"{progress.bytes_total:,}",
            progress.files_done,
            progress.files_total,
        )


class _LineageMixin:
    """OpenLineage: the models a run read and wrote, recorded by ``execute()`` as
    (url, facet fields) pairs and turned into datasets when the listener asks."""

    _lineage_inputs: list[tuple[str, dict[str, Any]]]
    _lineage_outputs: list[tuple[str, dict[str, Any]]]

    def _record_lineage(
        self, inputs: list[tuple[str, dict[str, Any]]], outputs: list[tuple[str, dict[str, Any]]]
    ) -> None:
        self._lineage_inputs, self._lineage_outputs = inputs, outputs

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        from airflow_savedmodel import lineage

        return lineage.lineage(
            [lineage.dataset(url, **facet) for url, facet in getattr(self, "_lineage_inputs", [])],
            [lineage.dataset(url, **facet) for url, facet in getattr(self, "_lineage_outputs", [])],
        )


def _version_facet(result: dict[str, Any]) -> dict[str, Any]:
    return {"version": result.get("version"), "fingerprint": result.get("fingerprint")}


def _validation_facet(report: Any) -> dict[str, Any]:
    summary = report.summary()
    return {"valid": summary["valid"], "findings": summary["codes"]}


def _fail_invalid(report: Any) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException("SavedModel is invalid:\n" + report.to_text())


def _version_numbers(value: Collection[int] | str | None) -> list[int] | None:
    """A rendered ``versions`` argument as numbers: a list, or a string of numbers such as
    ``"8,9"`` or ``"[8, 9]"`` (an empty one: none)."""
    if value is None:
        return None
    items = re.split(r"[\s,\[\]]+", value) if isinstance(value, str) else list(value)
    try:
        return [int(item) for item in items if item != ""]
    except (TypeError, ValueError):
        raise ValueError(f"versions must be version numbers, got {value!r}") from None


def _publish(task: Any, context: Any, base_path: str, version: int | str) -> dict[str, Any]:
    """The publish both SavedModelPublishOperator and the deprecated Copy(version=...) run."""
    signer, trust = _signing(task, task.dest_conn_id)
    published = _hook(task.source_conn_id).publish(
        task.model_url,
        base_path,
        dst_hook=_hook(task.dest_conn_id),
        progress=ProgressLog(task.log, f"publishing {task.model_url}"),
        version=version,
        overwrite=task.overwrite,
        concurrency=task.concurrency,
        serving_config=task.serving_config or None,
        model_name=task.model_name,
        version_labels=_labels(task.version_labels),
        keep_served=int(task.keep_served),
        signer=signer,
        trust=trust,
    )
    _log_published(task.log, published)
    _record_outlets(context, task.outlets, published, task)
    result = _published_json(published)
    task._record_lineage([(task.model_url, {})], [(published.url, _version_facet(result))])
    return result


def _signing(task: Any, conn_id: str | None) -> tuple[Any, Any]:
    """(signer, trust) of a task with ``signing_conn_id`` and ``require_signature``: who signs
    what it publishes (None: nothing signed) and whom its gates trust (None: not required)."""
    from airflow_savedmodel.hooks.savedmodel import signer_from_connection

    conn = getattr(task, "signing_conn_id", None)
    signer = signer_from_connection(conn) if conn else None
    trust = _hook(conn_id).trust(getattr(task, "trusted_signers", None))
    if signer is not None:
        task.log.info("Signing with %s", signer.describe())
    if trust is not None:
        task.log.info("Signatures required: trusting %s", trust.describe())
    return signer, trust


def _published_json(result: Any) -> dict[str, Any]:
    return {
        "uri": result.url,
        "version": result.version,
        "created": result.created,
        "fingerprint": result.manifest.fingerprint,
        "served": result.served,
        "signed_by": result.signed_by,
        "seconds": round(result.seconds, 3),
        "config_wait_seconds": round(result.config_wait_seconds, 3),
    }


def _log_published(log: Any, result: Any) -> None:
    verb = "Published" if result.created else "Already published"
    signed = f" (signed by {result.signed_by})" if result.signed_by else ""
    log.info("%s version %s at %s%s", verb, result.version, result.url, signed)
    if result.served is not None:
        log.info(
            "Serving config: %s serves %s; labels %s",
            result.served["name"],
            result.served["versions"],
            result.served["labels"],
        )


def _record_outlets(context: Any, outlets: Any, result: Any, task: Any = None) -> None:
    """Attach the published version to every Asset outlet's event (consumers read it as extra),
    with where it is served from (``serving_config``, credentials removed, and
    ``savedmodel_conn_id``), so a consumer (the Models view) finds the model's config from the
    event alone."""
    from airflow.sdk import Asset

    from airflow_savedmodel.location import redact

    extra = _published_json(result)
    config = getattr(task, "serving_config", None)
    if config and result.served is not None:
        extra["serving_config"] = redact(str(config))
    conn_id = getattr(task, "dest_conn_id", None) or getattr(task, "savedmodel_conn_id", None)
    if conn_id:
        extra["savedmodel_conn_id"] = conn_id
    for outlet in outlets or ():
        if isinstance(outlet, Asset):
            context["outlet_events"][outlet].extra = extra


def _rollout_outcome(context: Any, result: Any, fail_on_rollback: bool) -> dict[str, Any]:
    """The decision as XCom; a rollback fails the task (after the XCom) when asked to."""
    doc = result.to_json()
    if result.decision == "rolled_back" and fail_on_rollback:
        context["ti"].xcom_push(key="return_value", value=doc)
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(result.message)
    return doc


def _tf_serving(server_url: str | list[str] | None, tf_serving_conn_id: str | None) -> TFServingHook:
    """The TF Serving hook of a task (its REST API from a URL or an HTTP connection)."""
    from airflow_savedmodel.hooks.tfserving import TFServingHook

    return TFServingHook(server_url or None, tf_serving_conn_id or None)


def _default_deferrable() -> bool:
    from airflow.sdk import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)
