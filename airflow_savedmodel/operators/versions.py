"""Operators that act on a base path's versions: publish, export (rewrite + validate + publish in
one pass), mirror to a second store, and retention.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator

from airflow_savedmodel.deprecation import renamed, required
from airflow_savedmodel.links import SavedModelPublishedLink
from airflow_savedmodel.operators._common import (
    ProgressLog,
    _fail_invalid,
    _flag,
    _hook,
    _labels,
    _LineageMixin,
    _log_published,
    _publish,
    _published_json,
    _push_report,
    _record_outlets,
    _renamed_conn_id,
    _signing,
    _tf_serving,
    _version,
    _version_facet,
    _version_numbers,
)


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
        _record_outlets(context, self.outlets, result, self)
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
