"""Export: a trained model to a published version in one pass (rewrite, validate, publish).

The rewrites (clear devices, strip default attrs) change only saved_model.pb and fingerprint.pb,
so they are planned in memory (format/transforms.plan) and validated there, before anything is
written; the publish then writes those two files from memory and copies every other file from
the source as a publish copies: server-side within one object store, so a gs:// -> gs:// export
of a large model moves only its protos through the worker and needs no worker disk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from airflow_savedmodel.errors import SavedModelError
from airflow_savedmodel.format import transforms
from airflow_savedmodel.format import warmup as warmup_requests
from airflow_savedmodel.format.compat import Baseline
from airflow_savedmodel.format.model import SavedModel
from airflow_savedmodel.format.validate import Checks, Report
from airflow_savedmodel.location import Location
from airflow_savedmodel.storage.model_config import served_version
from airflow_savedmodel.storage.publish import PublishResult, ServingTarget, publish
from airflow_savedmodel.storage.transfer import ProgressCallback


@dataclass(frozen=True)
class Warmup:
    """Warmup requests to add to the published version (assets.extra/tf_serving_warmup_requests):
    ``count`` copies of one request for ``signature`` with ``inputs`` (see format/warmup.py)."""

    inputs: Mapping[str, np.ndarray]
    signature: str = "serving_default"
    count: int = 1
    tags: str = "serve"
    model_name: str = ""


@dataclass
class ExportResult:
    """The validation report (None when not validated) and the published version (None when
    the report refused the model); ``changed`` counts the attrs and devices the rewrites changed."""

    report: Report | None
    published: PublishResult | None
    rewrites: tuple[str, ...]
    changed: int


def describe_rewrites(names: Sequence[str]) -> str:
    """``("clear_devices", "strip_default_attrs")`` -> ``"clear devices + strip default attrs"``."""
    return " + ".join(name.replace("_", " ") for name in names)


def export(
    src: Location,
    base: Location,
    *,
    rewrites: Sequence[str] = (),
    checks: Checks | None = None,
    version: int | str = "auto",
    serving: ServingTarget | None = None,
    progress: ProgressCallback | None = None,
    warmup: Warmup | None = None,
    compatible_with: str | Location | Baseline | None = None,
    on_report: Callable[[Report], None] | None = None,
    **publish_options: Any,
) -> ExportResult:
    """Rewrite the model at ``src`` with ``rewrites`` (names in transforms.REWRITES, applied in
    that order), add ``warmup`` requests, validate the result with ``checks`` and, when valid,
    publish it under ``base``. The source is only read; nothing is written when the report has
    errors (or the warmup inputs do not fit the signature). ``compatible_with``: "served" (the
    version clients are served today, see serving.served_version; nothing to compare on a first
    publish), a model whose clients must keep working, or a Baseline (the signatures a running
    TF Serving exposes, see tfserving.fetch_signatures). ``on_report`` sees the report as soon
    as it is made, before anything is copied (a log then reads in the order things happened)."""
    unknown = [name for name in rewrites if name not in transforms.REWRITES]
    if unknown:
        raise ValueError(f"unknown rewrites {unknown}; choose from {sorted(transforms.REWRITES)}")
    with SavedModel.open(src.path, fs=src.fs) as model:
        candidate, replaced, changed = model, {}, 0
        if rewrites:
            plan = transforms.plan(model, rewrites)
            candidate, replaced, changed = plan.model, dict(plan.files), plan.changed
        if warmup is not None:
            signature = candidate.meta_graph(warmup.tags).signature(warmup.signature)
            try:
                data = warmup_requests.requests(
                    signature, warmup.inputs, count=warmup.count, model_name=warmup.model_name
                )
            except SavedModelError as exc:  # inputs that do not fit: named after the model
                raise exc.at(src.url) from None
            replaced[warmup_requests.WARMUP_FILE] = data
            candidate = candidate.with_files({warmup_requests.WARMUP_FILE: data})
        report = None
        if checks is not None and compatible_with is not None:
            baseline = (
                served_version(
                    base, serving.config if serving else None, serving.model_name if serving else None
                )
                if compatible_with == "served"
                else compatible_with
            )
            if baseline is not None:
                checks = replace(checks, compatible_with=baseline)
        if checks is not None:
            report = checks.run(candidate)
            if rewrites:  # the report is about the user's model as it will be published
                report = report.shown_as(src.url, describe_rewrites(rewrites))
            if on_report is not None:
                on_report(report)
            if not report.valid:
                return ExportResult(report, None, tuple(rewrites), changed)
        published = publish(
            src,
            base,
            version=version,
            serving=serving,
            progress=progress,
            replaced=replaced,
            **publish_options,
        )
    return ExportResult(report, published, tuple(rewrites), changed)
