"""Operators: export (a trained model to a served version), validate, strip default attrs,
copy, publish, mirror, retention and serving labels.

Each ``execute()`` resolves hooks and calls one format or storage function; return values are
small JSON documents (uri, version, fingerprint, findings summary) pushed to XCom.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_savedmodel.deprecation import renamed, required
from airflow_savedmodel.links import SavedModelPublishedLink

if TYPE_CHECKING:
    from airflow_savedmodel.hooks.savedmodel import SavedModelHook


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


class SavedModelValidateOperator(_LineageMixin, BaseOperator):
    """Validate a SavedModel; fail the task (without retries) when it is invalid.

    The full report is pushed to XCom under ``report``; the return value is its summary.

    :param model_url: the SavedModel directory (templated).
    :param tag_set: the meta graph TF Serving loads, comma-separated tags (templated).
    :param required_signatures: signature keys clients call; missing ones are errors. Default:
        ``serving_default`` when the tag set holds ``serve``, none for other tag sets.
    :param deep: also read every variables shard and check its checksums.
    :param target_tf: the TensorFlow Serving release ("2.12") that must load the model: every op
        and attr known, a kernel for every node on ``target_device``, no node pinned to a device
        the server lacks; None: the newest release the package ships (templated).
    :param target_device: "cpu" or "gpu": the device the target's kernels are checked for.
    :param require_releases: releases that must all serve the model on ``target_device``, e.g.
        "2.15-2.21" or "2.15+"; the report lists every shipped release's verdict (templated).
    :param expect: a signature spec (dict, or a JSON file URL) the model must match (templated).
    :param strict: treat warnings as errors.
    :param op_policy: which op families (file-read, file-write, python, network, debug) or ops
        are errors, warnings or allowed, e.g. ``{"warning": ["file-read"]}``; None: all are
        errors; "off": no scan.
    :param savedmodel_conn_id: connection for ``model_url`` (templated).
    """

    template_fields: Sequence[str] = (
        "model_url",
        "tag_set",
        "target_tf",
        "require_releases",
        "expect",
        "savedmodel_conn_id",
    )
    ui_color = "teal.500"

    @renamed(url="model_url")
    def __init__(
        self,
        *,
        model_url: str | None = None,
        tag_set: str = "serve",
        required_signatures: Collection[str] | None = None,
        deep: bool = False,
        target_tf: str | None = None,
        target_device: str = "cpu",
        require_releases: str | None = None,
        expect: str | Mapping[str, Any] | None = None,
        strict: bool = False,
        op_policy: Mapping[str, Any] | str | None = None,
        savedmodel_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        model_url = required(type(self).__name__, model_url=model_url)
        self.require_releases = require_releases or None
        self.op_policy = op_policy
        self.model_url = model_url
        self.tag_set = tag_set
        self.required_signatures = None if required_signatures is None else tuple(required_signatures)
        self.deep = deep
        self.target_tf = target_tf or None
        self.target_device = target_device
        self.expect = expect or None
        self.strict = strict
        self.savedmodel_conn_id = savedmodel_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_savedmodel.format.validate import Checks

        checks = Checks(
            tags=self.tag_set,
            required_signatures=self.required_signatures,
            deep=self.deep,
            target_tf=self.target_tf or None,
            target_device=self.target_device,
            expect=self.expect or None,
            strict=self.strict,
            op_policy=self.op_policy,
            releases=bool(self.require_releases),
            require_releases=self.require_releases or None,
        )
        report = _hook(self.savedmodel_conn_id).validate(self.model_url, checks)
        self.log.info("%s", report.to_text())
        _push_report(context, report)
        self._record_lineage([(self.model_url, _validation_facet(report))], [])
        if not report.valid:
            _fail_invalid(report)
        return {"uri": report.url, **report.summary()}


class SavedModelStripDefaultAttrsOperator(_LineageMixin, BaseOperator):
    """Copy a model to ``destination_url`` with default-valued node attrs removed (or, with ``add``, restored).

    :param model_url: the SavedModel directory to read (templated).
    :param destination_url: where the rewritten model is written (templated).
    :param add: restore default-valued attrs instead of removing them.
    :param clear_devices: also clear every node's device placement.
    :param overwrite: replace an existing ``destination_url``.
    :param source_conn_id: connection for ``model_url`` (templated).
    :param dest_conn_id: connection for ``destination_url``; default ``source_conn_id`` (templated).
    :param savedmodel_conn_id: deprecated name of ``source_conn_id``.
    """

    template_fields: Sequence[str] = ("model_url", "destination_url", "source_conn_id", "dest_conn_id")
    ui_color = "teal.500"

    @renamed(src="model_url", dst="destination_url")
    def __init__(
        self,
        *,
        model_url: str | None = None,
        destination_url: str | None = None,
        add: bool = False,
        clear_devices: bool = False,
        overwrite: bool = False,
        source_conn_id: str | None = None,
        dest_conn_id: str | None = None,
        savedmodel_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        model_url, destination_url = required(
            type(self).__name__, model_url=model_url, destination_url=destination_url
        )
        self.model_url, self.destination_url = model_url, destination_url
        self.add, self.clear_devices, self.overwrite = add, clear_devices, overwrite
        self.source_conn_id = _renamed_conn_id(source_conn_id, savedmodel_conn_id, type(self).__name__)
        self.dest_conn_id = dest_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        rewrites = ["clear_devices"] if self.clear_devices else []
        rewrites.append("add_default_attrs" if self.add else "strip_default_attrs")
        result = _hook(self.source_conn_id).rewrite(
            self.model_url,
            self.destination_url,
            rewrites,
            overwrite=self.overwrite,
            dst_hook=_hook(self.dest_conn_id or self.source_conn_id),
        )
        self.log.info(
            "Changed %d attrs and devices (%s); wrote %s", result.changed, " + ".join(rewrites), result.dst
        )
        self._record_lineage([(self.model_url, {})], [(self.destination_url, {})])
        return {"uri": result.dst, "changed": result.changed}


class SavedModelCopyOperator(_LineageMixin, BaseOperator):
    """Copy a whole SavedModel to ``destination_url`` across connections and filesystems, verifying every
    byte; a failed copy leaves ``destination_url`` as it was. To ship a version to a serving base path, use
    :class:`SavedModelPublishOperator`.

    :param model_url: the SavedModel directory to copy (templated).
    :param destination_url: the destination directory (templated).
    :param overwrite: replace an existing destination.
    :param concurrency: files copied at once.
    :param source_conn_id: connection for ``model_url`` (templated).
    :param dest_conn_id: connection for ``destination_url`` (templated).
    :param version: deprecated: publishes ``dst/<version>``; use SavedModelPublishOperator.
    :param serving_config: deprecated, with ``version``.
    :param model_name: deprecated, with ``version``.
    :param version_labels: deprecated, with ``version``.
    :param keep_served: deprecated, with ``version``.
    """

    template_fields: Sequence[str] = (
        "model_url",
        "destination_url",
        "version",
        "serving_config",
        "model_name",
        "version_labels",
        "source_conn_id",
        "dest_conn_id",
    )
    ui_color = "teal.500"
    operator_extra_links = (SavedModelPublishedLink(),)

    @renamed(src="model_url", dst="destination_url", labels="version_labels")
    def __init__(
        self,
        *,
        model_url: str | None = None,
        destination_url: str | None = None,
        overwrite: bool = False,
        concurrency: int = 8,
        source_conn_id: str | None = None,
        dest_conn_id: str | None = None,
        version: int | str | None = None,
        serving_config: str | None = None,
        model_name: str | None = None,
        version_labels: str | Sequence[str] = (),
        keep_served: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        model_url, destination_url = required(
            type(self).__name__, model_url=model_url, destination_url=destination_url
        )
        self.model_url, self.destination_url, self.version = model_url, destination_url, version
        self.overwrite, self.concurrency = overwrite, concurrency
        self.serving_config, self.model_name = serving_config, model_name
        self.version_labels, self.keep_served = version_labels, keep_served
        self.source_conn_id, self.dest_conn_id = source_conn_id, dest_conn_id
        if version is not None:
            import warnings

            from airflow.exceptions import AirflowProviderDeprecationWarning

            warnings.warn(
                "SavedModelCopyOperator(version=...) publishes to dst/<version>; "
                "use SavedModelPublishOperator(src=..., base_path=...) instead",
                AirflowProviderDeprecationWarning,
                stacklevel=2,
            )

    def execute(self, context: Any) -> dict[str, Any]:
        version = _version(self.version)
        if version is not None:
            return _publish(self, context, self.destination_url, version)
        result = _hook(self.source_conn_id).copy(
            self.model_url,
            self.destination_url,
            dst_hook=_hook(self.dest_conn_id),
            progress=ProgressLog(self.log, f"copying {self.model_url}"),
            overwrite=self.overwrite,
            concurrency=self.concurrency,
        )
        self.log.info("Copied %d files (%s bytes) to %s", result.files, f"{result.bytes:,}", result.dst)
        copied = {"uri": result.dst, "version": None, "fingerprint": result.manifest.fingerprint}
        self._record_lineage([(self.model_url, {})], [(self.destination_url, _version_facet(copied))])
        return copied


class SavedModelPublishOperator(_LineageMixin, BaseOperator):
    """Publish a SavedModel as a new version under a serving base path, complete or not at all
    (TF Serving watching ``base_path`` never loads a half-copied version), verified byte for byte.
    An unchanged model returns the version that already holds it.

    :param model_url: the SavedModel directory to publish (templated).
    :param base_path: the serving base path; the version lands at ``base_path/<version>`` (templated).
    :param version: "auto" (next number), "same" (the number ``model_url`` ends in, for mirrors that
        keep version numbers) or a number (templated).
    :param overwrite: replace an existing version (with a numbered ``version``).
    :param concurrency: files copied at once.
    :param serving_config: TF Serving's model config file (``--model_config_file``) on the
        destination's connection: the version is named there only once complete (templated).
    :param model_name: the model's name in ``serving_config`` (templated).
    :param version_labels: labels to point at the published version, e.g. ``["canary"]`` (templated).
    :param keep_served: newest versions the serving config keeps listed.
    :param source_conn_id: connection for ``model_url`` (templated).
    :param dest_conn_id: connection for ``base_path`` and ``serving_config`` (templated).
    :param signing_conn_id: a connection holding the signing key (PEM private key in its
        password; extra ``certificate_chain`` for the certificate method, ``key_password`` for an
        encrypted key): the version is signed (OMS, ``model.sig``) before it becomes visible.
    :param trusted_signers: trusted signers (a PEM file's location) a signed source must
        verify against; default the deployment's ``[savedmodel] require_signature`` (templated).
    """

    template_fields: Sequence[str] = (
        "model_url",
        "base_path",
        "version",
        "serving_config",
        "model_name",
        "version_labels",
        "source_conn_id",
        "dest_conn_id",
        "signing_conn_id",
        "trusted_signers",
    )
    ui_color = "teal.600"
    operator_extra_links = (SavedModelPublishedLink(),)

    @renamed(src="model_url", labels="version_labels", require_signature="trusted_signers")
    def __init__(
        self,
        *,
        model_url: str | None = None,
        base_path: str,
        version: int | str = "auto",
        overwrite: bool = False,
        concurrency: int = 8,
        serving_config: str | None = None,
        model_name: str | None = None,
        version_labels: str | Sequence[str] = (),
        keep_served: int = 2,
        source_conn_id: str | None = None,
        dest_conn_id: str | None = None,
        signing_conn_id: str | None = None,
        trusted_signers: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        model_url = required(type(self).__name__, model_url=model_url)
        self.signing_conn_id, self.trusted_signers = signing_conn_id, trusted_signers
        self.model_url, self.base_path, self.version = model_url, base_path, version
        self.overwrite, self.concurrency = overwrite, concurrency
        self.serving_config, self.model_name = serving_config, model_name
        self.version_labels, self.keep_served = version_labels, keep_served
        self.source_conn_id, self.dest_conn_id = source_conn_id, dest_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        return _publish(self, context, self.base_path, _version(self.version) or "auto")


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


class SavedModelMirrorOperator(_LineageMixin, BaseOperator):
    """Mirror a serving base path to another filesystem or region: every complete version under
    ``base_path`` that ``mirror_base_path`` lacks is published there under the same number,
    oldest first, verified and atomically (see storage/mirror.py).

    The versions to copy come from the two listings, so Asset events that arrive batched or out
    of order, or a run that was missed, still leave the mirror holding every complete version.

    :param base_path: the source serving base path (templated).
    :param mirror_base_path: the mirror's base path (templated).
    :param newest_only: mirror only the newest complete version, if the mirror lacks it.
    :param versions: mirror only these version numbers (templated: a list, e.g. an upstream
        task's XCom, or a string such as ``"8,9"`` rendered from one), so a version completed
        after that task checked the source waits for the next run.
    :param concurrency: files copied at once.
    :param source_conn_id: connection for ``base_path`` (templated).
    :param dest_conn_id: connection for ``mirror_base_path`` (templated).
    :param trusted_signers: trusted signers (a PEM file's location): a version that does not
        verify is not mirrored and fails the task, named; default the deployment's
        ``[savedmodel] require_signature`` (templated).
    """

    template_fields: Sequence[str] = (
        "base_path",
        "mirror_base_path",
        "source_conn_id",
        "dest_conn_id",
        "trusted_signers",
        "versions",
    )
    ui_color = "teal.600"

    @renamed(require_signature="trusted_signers")
    def __init__(
        self,
        *,
        base_path: str,
        mirror_base_path: str,
        newest_only: bool = False,
        versions: Collection[int] | str | None = None,
        concurrency: int = 8,
        source_conn_id: str | None = None,
        dest_conn_id: str | None = None,
        trusted_signers: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.trusted_signers = trusted_signers
        self.base_path, self.mirror_base_path = base_path, mirror_base_path
        self.newest_only, self.concurrency = newest_only, concurrency
        self.versions = versions
        self.source_conn_id, self.dest_conn_id = source_conn_id, dest_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        _, trust = _signing(self, self.source_conn_id)
        result = _hook(self.source_conn_id).mirror(
            self.base_path,
            self.mirror_base_path,
            dst_hook=_hook(self.dest_conn_id),
            newest_only=_flag(self.newest_only),
            concurrency=self.concurrency,
            progress_for=lambda n: ProgressLog(self.log, f"mirroring version {n}"),
            trust=trust,
            versions=_version_numbers(self.versions),
        )
        for published in result.mirrored:
            _log_published(self.log, published)
        for number, state in sorted(result.skipped.items()):
            self.log.info("Version %s is %s under %s: not mirrored yet", number, state, self.base_path)
        if result.present:
            self.log.info("The mirror already held version(s) %s", ", ".join(map(str, result.present)))
        elif not result.mirrored:
            self.log.info("Nothing to mirror: no complete version under %s", self.base_path)
        self._record_lineage(
            [(f"{self.base_path.rstrip('/')}/{r.version}", {}) for r in result.mirrored],
            [(r.url, {"version": r.version, "fingerprint": r.manifest.fingerprint}) for r in result.mirrored],
        )
        return result.to_json()


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
    _record_outlets(context, task.outlets, published)
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


def _record_outlets(context: Any, outlets: Any, result: Any) -> None:
    """Attach the published version to every Asset outlet's event (consumers read it as extra)."""
    from airflow.sdk import Asset

    for outlet in outlets or ():
        if isinstance(outlet, Asset):
            context["outlet_events"][outlet].extra = _published_json(result)


class SavedModelExportOperator(_LineageMixin, BaseOperator):
    """From a trained model to a published version: optional clear devices and strip default
    attrs, validation, then an atomic publish to ``base_path/<version>``.

    The model is a URL (``model_url``) or written by ``python_callable(export_dir, *op_args,
    **op_kwargs)`` into a temporary directory. Every Asset in ``outlets`` gets an event whose
    extra holds the version, URI and fingerprint.

    :param base_path: the serving base path the version is published under (templated).
    :param model_url: the trained model's directory (templated); or pass ``python_callable``.
    :param python_callable: writes the SavedModel into the directory it is given (it may return
        another URL to publish instead).
    :param op_args: positional arguments for ``python_callable`` (templated).
    :param op_kwargs: keyword arguments for ``python_callable`` (templated).
    :param version: "auto" (next number), "same" (the number the model URL ends in) or a number
        (templated).
    :param clear_devices: clear device placements before publishing (templated flag).
    :param strip_default_attrs: remove default-valued attrs before publishing (templated flag).
    :param validate: validate the rewritten model and fail without publishing when invalid
        (templated flag).
    :param deep: validation reads every variables shard (templated flag).
    :param strict: warnings refuse the model too (templated flag).
    :param tag_set: the meta graph TF Serving loads.
    :param required_signatures: signature keys clients call (default: ``serving_default`` when
        the tag set holds ``serve``, none for other tag sets).
    :param target_tf: the TensorFlow Serving release that must load the model (default: the
        newest the package ships) (templated).
    :param target_device: "cpu" or "gpu": the serving device whose kernels are checked.
    :param require_releases: releases that must all serve the model on ``target_device``, e.g.
        "2.15-2.21" or "2.15+"; nothing is published otherwise (templated).
    :param expect: a signature spec the model must match (templated).
    :param op_policy: the op scan's policy (see SavedModelValidateOperator); a model that
        breaks it is not published.
    :param serving_config: TF Serving's model config file: the version is named there once
        complete (gated publish) (templated).
    :param model_name: the model's name in ``serving_config`` (templated).
    :param version_labels: labels to point at the new version, e.g. ``["canary"]`` (templated).
    :param keep_served: newest versions the serving config keeps listed.
    :param compatible_with: "served" (the version clients are served today: the serving
        config's ``stable`` label, else the newest complete version), a running TF Serving's
        model URL (``http://tf-serving:8501/v1/models/NAME``: the signatures it serves) or a
        model URL (on the destination's connection): a signature change that breaks its clients
        fails the task before anything is published (templated).
    :param tf_serving_conn_id: an HTTP connection for a TF Serving model URL in
        ``compatible_with`` behind a gateway (TLS, CA bundle, headers).
    :param inputs_url: an .npz file (``numpy.savez``) of inputs for ``signature_name``: the
        version is published with TF Serving warmup requests built from them
        (``assets.extra/tf_serving_warmup_requests``), checked against the signature (templated).
    :param signature_name: the signature the warmup requests call.
    :param warmup_count: how many warmup records (TF Serving replays each; at most 1000).
    :param source_conn_id: connection for ``model_url`` (templated).
    :param dest_conn_id: connection for ``base_path`` and ``serving_config``; default
        ``source_conn_id`` (templated).
    :param savedmodel_conn_id: deprecated name of ``source_conn_id``.
    :param signing_conn_id: a connection holding the signing key (PEM private key in its
        password; extra ``certificate_chain`` for the certificate method, ``key_password`` for an
        encrypted key): the version is signed (OMS, ``model.sig``) before it becomes visible.
    :param trusted_signers: trusted signers (a PEM file's location) a signed source must
        verify against; default the deployment's ``[savedmodel] require_signature`` (templated).
    """

    template_fields: Sequence[str] = (
        "signing_conn_id",
        "trusted_signers",
        "model_url",
        "base_path",
        "version",
        "target_tf",
        "require_releases",
        "expect",
        "strip_default_attrs",
        "clear_devices",
        "validate",
        "deep",
        "strict",
        "op_args",
        "op_kwargs",
        "serving_config",
        "model_name",
        "version_labels",
        "inputs_url",
        "compatible_with",
        "source_conn_id",
        "dest_conn_id",
    )
    ui_color = "teal.700"
    operator_extra_links = (SavedModelPublishedLink(),)

    @renamed(
        warmup_inputs="inputs_url", warmup_signature="signature_name", require_signature="trusted_signers"
    )
    def __init__(
        self,
        *,
        base_path: str,
        model_url: str | None = None,
        python_callable: Callable[..., Any] | None = None,
        op_args: Sequence[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        version: int | str = "auto",
        clear_devices: bool | str = False,
        strip_default_attrs: bool | str = True,
        validate: bool | str = True,
        deep: bool | str = True,
        strict: bool | str = False,
        tag_set: str = "serve",
        required_signatures: Collection[str] | None = None,
        target_tf: str | None = None,
        target_device: str = "cpu",
        require_releases: str | None = None,
        expect: str | Mapping[str, Any] | None = None,
        op_policy: Mapping[str, Any] | str | None = None,
        serving_config: str | None = None,
        model_name: str | None = None,
        version_labels: str | Sequence[str] = (),
        keep_served: int = 2,
        compatible_with: str | None = None,
        inputs_url: str | None = None,
        signature_name: str = "serving_default",
        warmup_count: int = 1,
        source_conn_id: str | None = None,
        dest_conn_id: str | None = None,
        savedmodel_conn_id: str | None = None,
        tf_serving_conn_id: str | None = None,
        signing_conn_id: str | None = None,
        trusted_signers: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.signing_conn_id, self.trusted_signers = signing_conn_id, trusted_signers
        self.tf_serving_conn_id = tf_serving_conn_id
        self.inputs_url, self.signature_name = inputs_url, signature_name
        self.warmup_count, self.compatible_with = warmup_count, compatible_with
        self.serving_config, self.model_name = serving_config, model_name
        self.version_labels, self.keep_served = version_labels, keep_served
        if (model_url is None) == (python_callable is None):
            raise ValueError("pass exactly one of model_url and python_callable")
        self.base_path, self.model_url, self.python_callable = base_path, model_url, python_callable
        self.op_args, self.op_kwargs = list(op_args or []), dict(op_kwargs or {})
        self.version = version
        self.clear_devices, self.strip_default_attrs = clear_devices, strip_default_attrs
        self.validate, self.deep, self.strict, self.tag_set = validate, deep, strict, tag_set
        self.required_signatures = None if required_signatures is None else tuple(required_signatures)
        self.target_tf, self.expect = target_tf or None, expect or None
        self.target_device, self.require_releases = target_device, require_releases or None
        self.op_policy = op_policy
        self.source_conn_id = _renamed_conn_id(source_conn_id, savedmodel_conn_id, type(self).__name__)
        self.dest_conn_id = dest_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_savedmodel.format.validate import Checks

        rewrites = [
            name
            for name, wanted in (
                ("clear_devices", self.clear_devices),
                ("strip_default_attrs", self.strip_default_attrs),
            )
            if _flag(wanted)
        ]
        checks = None
        if _flag(self.validate):
            checks = Checks(
                tags=self.tag_set,
                required_signatures=self.required_signatures,
                deep=_flag(self.deep),
                strict=_flag(self.strict),
                target_tf=self.target_tf or None,
                target_device=self.target_device,
                expect=self.expect or None,
                op_policy=self.op_policy,
                releases=bool(self.require_releases),
                require_releases=self.require_releases or None,
            )
        signer, trust = _signing(self, self.dest_conn_id or self.source_conn_id)
        with tempfile.TemporaryDirectory(prefix="savedmodel-export-") as tmp:
            src_hook = _hook(self.source_conn_id)
            model_url = self.model_url
            if self.python_callable is not None:
                src_hook, model_url = _hook(None), f"{tmp}/exported"
                returned = self.python_callable(model_url, *self.op_args, **self.op_kwargs)
                if isinstance(returned, str) and returned:
                    model_url = returned
            if not model_url:
                raise ValueError(f"{self.task_id}: model_url rendered empty; nothing to export")
            warmup = None
            if self.inputs_url:
                from airflow_savedmodel.storage.export import Warmup

                warmup = Warmup(
                    _hook(self.source_conn_id).warmup_inputs(self.inputs_url),
                    signature=self.signature_name,
                    count=int(self.warmup_count),
                    tags=self.tag_set,
                    model_name=self.model_name or "",
                )
            exported = src_hook.export(
                model_url,
                self.base_path,
                rewrites=rewrites,
                checks=checks,
                version=_version(self.version) or "auto",
                dst_hook=_hook(self.dest_conn_id or self.source_conn_id),
                progress=ProgressLog(self.log, f"publishing to {self.base_path}"),
                serving_config=self.serving_config or None,
                model_name=self.model_name or None,
                version_labels=_labels(self.version_labels),
                keep_served=int(self.keep_served),
                warmup=warmup,
                compatible_with=self.compatible_with or None,
                on_report=lambda report: self.log.info("%s", report.to_text()),
                tf_serving=(
                    _tf_serving(None, self.tf_serving_conn_id).endpoint() if self.tf_serving_conn_id else None
                ),
                signer=signer,
                trust=trust,
            )
        if "strip_default_attrs" in rewrites:
            self.log.info("Stripped or cleared %d attrs and devices", exported.changed)
        summary = None
        if exported.report is not None:
            _push_report(context, exported.report)
            if not exported.report.valid:
                _fail_invalid(exported.report)
            summary = exported.report.summary()
        result = exported.published
        if result is None:  # only an invalid report stops the publish, and that failed above
            raise RuntimeError(f"{self.task_id}: the model was validated but not published")
        _log_published(self.log, result)
        _record_outlets(context, self.outlets, result)
        published = {**_published_json(result), "validation": summary}
        source = {"valid": summary["valid"], "findings": summary["codes"]} if summary else {}
        inputs = [(self.model_url, source)] if self.model_url else []  # a callable's export is temporary
        self._record_lineage(inputs, [(result.url, _version_facet(published))])
        return published


class SavedModelRetentionOperator(BaseOperator):
    """Remove old versions and stale staging areas under a serving base path (see storage.gc).

    Never removes a version a live publish holds a lease on, one the serving config names or
    labels, or the newest complete one.

    :param base_path: the serving base path (templated).
    :param keep_last: how many of the newest complete versions to keep (templated).
    :param min_age_seconds: keep versions younger than this.
    :param keep: version numbers never to remove.
    :param dry_run: only report what would be removed (templated flag; kept as ``report_only``,
        since ``dry_run`` is a BaseOperator method Airflow calls for ``tasks test --dry-run``).
    :param serving_config: TF Serving's model config file whose named versions stay (templated).
    :param savedmodel_conn_id: connection for ``base_path`` and ``serving_config`` (templated).
    """

    template_fields: Sequence[str] = (
        "base_path",
        "keep_last",
        "report_only",
        "serving_config",
        "savedmodel_conn_id",
    )
    ui_color = "teal.500"

    def __init__(
        self,
        *,
        base_path: str,
        keep_last: int | str = 5,
        min_age_seconds: float = 0,
        keep: Collection[int] = (),
        dry_run: bool | str = False,
        serving_config: str | None = None,
        savedmodel_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.serving_config = serving_config
        self.base_path, self.keep_last = base_path, keep_last
        self.min_age_seconds, self.keep, self.report_only = min_age_seconds, tuple(keep), dry_run
        self.savedmodel_conn_id = savedmodel_conn_id

    def execute(self, context: Any) -> dict[str, Any]:
        dry_run = _flag(self.report_only)
        result = _hook(self.savedmodel_conn_id).gc(
            self.base_path,
            keep_last=int(self.keep_last),
            min_age_seconds=self.min_age_seconds,
            keep=self.keep,
            dry_run=dry_run,
            serving_config=self.serving_config or None,
        )
        for url in result.removed:
            self.log.info("%s %s", "Would remove" if dry_run else "Removed", url)
        self.log.info("Kept %d version(s)", len(result.kept))
        return result.to_json()


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
    :param server_url: TF Serving's REST API, e.g. ``http://tf-serving:8501`` (templated); or
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
        server_url: str | None = None,
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

    def _policy(self) -> Any:
        from airflow_savedmodel.release.policy import load

        return load(self.policy)

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

        from airflow_savedmodel.errors import SignatureError
        from airflow_savedmodel.release.policy import PolicyError
        from airflow_savedmodel.release.rollout import ServerUnreachableError

        hook = _hook(self.savedmodel_conn_id)
        version = int(str(self.version))
        try:  # a policy that does not parse fails here, before anything changes
            policy = self._policy()
        except PolicyError as exc:
            hook.rollout_refused(
                self.serving_config, self.model_name, version, self._run_id(context), str(exc)
            )
            raise AirflowFailException(str(exc)) from None  # a retry would read the same policy
        tf_serving = _tf_serving(self.server_url, self.tf_serving_conn_id)
        endpoint = tf_serving.endpoint()
        done = hook.rollout_unchanged(self.serving_config, self.model_name, version)
        if done is not None:  # a rerun whose export is the version already stable
            self.log.info("%s", done.message)
            return done.to_json()
        try:
            active, stable = hook.begin_rollout(
                self.serving_config,
                self.model_name,
                version,
                endpoint,
                policy,
                run_id=self._run_id(context),
                metrics=self._metrics(),
            )
        except (ServerUnreachableError, SignatureError) as exc:  # no retry changes these: fail at once
            raise AirflowFailException(str(exc)) from None
        self.log.info(
            "Rolling out %s version %s (stable: %s); waiting until TF Serving serves it",
            self.model_name,
            version,
            stable,
        )
        state = {"active": active.to_json(), "stable": stable}
        timeout = float(policy["available_timeout_seconds"])
        self.log.info("Release record: %s", state)
        from airflow_savedmodel.errors import SavedModelError
        from airflow_savedmodel.release.rollout import available_check

        try:  # already settled (loaded, or refused): no wait to hand to the triggerer
            settled = available_check(tf_serving.status(self.model_name, version).to_json(), timeout)
        except (OSError, SavedModelError):
            settled = None
        if settled is not None:
            return self._finish(context, state, settled)
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
                ),
                method_name="execute_complete",
            )
        from airflow_savedmodel.release.rollout import wait_available

        check = wait_available(endpoint, self.model_name, version, timeout, self.poke_interval)
        return self._finish(context, state, check)

    def execute_complete(self, context: Any, event: dict[str, Any], **kwargs: Any) -> Any:
        from airflow_savedmodel.release.evidence import FAIL, Check
        from airflow_savedmodel.release.rollout import available_check
        from airflow_savedmodel.tfserving import VersionStatus

        timeout = float(self._policy()["available_timeout_seconds"])
        if event.get("status") == "error":
            check: Check | None = Check(
                "available", FAIL, f"TF Serving could not be asked: {event['message']}"
            )
        elif event.get("status") == "timeout":
            last = VersionStatus(**event["served"]).waiting_for() if event.get("served") else "never answered"
            check = Check("available", FAIL, f"not AVAILABLE after {timeout:g} s: {last}", None, timeout)
        else:
            check = available_check(event["served"], timeout)
        assert check is not None  # the trigger fires once the version is AVAILABLE or failed
        # The rollout's state lives beside the versions (claim and record), not in the deferral.
        return self._finish(
            context,
            _hook(self.savedmodel_conn_id).rollout_state(
                self.serving_config, self.model_name, int(str(self.version))
            ),
            check,
        )

    def _finish(self, context: Any, state: dict[str, Any], check: Any) -> Any:
        from airflow_savedmodel.release.records import Active

        hook = _hook(self.savedmodel_conn_id)
        policy = self._policy()
        endpoint = _tf_serving(self.server_url, self.tf_serving_conn_id).endpoint()
        result = hook.finish_rollout(
            self.serving_config,
            self.model_name,
            active=Active(**state["active"]),
            stable=state["stable"],
            available=check,
            endpoint=endpoint,
            policy=policy,
            inputs_url=self.inputs_url or None,
            signature_name=self.signature_name,
            metrics=self._metrics(),
            hold_for_approval=_flag(self.hold_for_approval),
        )
        for item in result.checks:
            self.log.info("%s %s: %s", item.status.upper(), item.name, item.message)
        self.log.info("%s (record: %s)", result.message, result.record_url)
        doc = result.to_json()
        version_url = str(
            hook.release_target(self.serving_config, self.model_name).base.join(str(result.version)).url
        )
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


def _rollout_outcome(context: Any, result: Any, fail_on_rollback: bool) -> dict[str, Any]:
    """The decision as XCom; a rollback fails the task (after the XCom) when asked to."""
    doc = result.to_json()
    if result.decision == "rolled_back" and fail_on_rollback:
        context["ti"].xcom_push(key="return_value", value=doc)
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(result.message)
    return doc


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
    """

    template_fields: Sequence[str] = (
        "serving_config",
        "model_name",
        "version",
        "answer",
        "savedmodel_conn_id",
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.serving_config, self.model_name, self.version = serving_config, model_name, version
        self.answer, self.approve_option = answer, approve_option
        self.fail_on_rollback, self.savedmodel_conn_id = fail_on_rollback, savedmodel_conn_id

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
        result = _hook(self.savedmodel_conn_id).conclude_rollout(
            self.serving_config, self.model_name, int(str(self.version)), approved=approved, approval=approval
        )
        self.log.info("%s (record: %s)", result.message, result.record_url)
        return _rollout_outcome(context, result, self.fail_on_rollback)


def _tf_serving(server_url: str | None, tf_serving_conn_id: str | None) -> Any:
    """The TF Serving hook of a task (its REST API from a URL or an HTTP connection)."""
    from airflow_savedmodel.hooks.tfserving import TFServingHook

    return TFServingHook(server_url or None, tf_serving_conn_id or None)


def _default_deferrable() -> bool:
    from airflow.sdk import conf

    return conf.getboolean("operators", "default_deferrable", fallback=False)
