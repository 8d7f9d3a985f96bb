"""Operators that act on one model: validate it, rewrite it (strip or fill default attrs, clear
devices) and copy it, verified, across filesystems.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator

from airflow_savedmodel.deprecation import renamed, required
from airflow_savedmodel.links import SavedModelPublishedLink
from airflow_savedmodel.operators._common import (
    ProgressLog,
    _fail_invalid,
    _hook,
    _LineageMixin,
    _publish,
    _push_report,
    _renamed_conn_id,
    _validation_facet,
    _version,
    _version_facet,
)


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
