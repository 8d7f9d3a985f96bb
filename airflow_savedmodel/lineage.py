"""OpenLineage for the operators (with ``apache-airflow-providers-openlineage`` installed): the
models read and the versions written as datasets, named as the OpenLineage naming spec names
each store, with a ``savedmodel`` facet carrying version, fingerprint and signature hash.

Imported only from ``get_openlineage_facets_on_complete``, which the OpenLineage listener
calls after ``execute()``; nothing here runs without that provider.
"""

from __future__ import annotations

import os
from typing import Any

import attr
from airflow.providers.common.compat.openlineage.facet import Dataset, DatasetFacet
from airflow.providers.openlineage.extractors import OperatorLineage

from airflow_savedmodel import schemes
from airflow_savedmodel.location import redact

FACET_KEY = "savedmodel"
SCHEMA_URL = "urn:airflow-provider-savedmodel:openlineage:SavedModelDatasetFacet:1"


@attr.define
class SavedModelDatasetFacet(DatasetFacet):
    """What identifies a SavedModel: the version number under its base path (None outside
    one), fingerprint.pb's singleprint and its signature_def_hash (None without
    fingerprint.pb), the validation verdict when the task validated it, and a rollout's
    decision (``release``: decision, stable before and after, the failed checks, the record)."""

    version: int | None = attr.field(default=None)
    fingerprint: str | None = attr.field(default=None)
    signatureDefHash: str | None = attr.field(default=None)
    valid: bool | None = attr.field(default=None)
    findings: list[str] | None = attr.field(default=None)
    release: dict[str, Any] | None = attr.field(default=None)

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL


def naming(url: str) -> tuple[str, str]:
    """(namespace, name) of a location: ``gs://bucket`` + key, ``s3://bucket`` + key,
    ``file`` + absolute path, else ``scheme://authority`` + path. Credentials never appear."""
    url = redact(url).rstrip("/")
    if "://" not in url:
        return "file", os.path.abspath(url)
    scheme, rest = url.split("://", 1)
    authority, _, path = rest.partition("/")
    if scheme == "file":
        return "file", "/" + path if authority in ("", "localhost") else f"/{authority}/{path}"
    return f"{schemes.canonical(scheme)}://{authority}", path


def dataset(url: str, **facet: Any) -> Dataset:
    """A dataset for the model at ``url``; ``facet`` fields (see SavedModelDatasetFacet) attached."""
    namespace, name = naming(url)
    fingerprint = facet.get("fingerprint")
    if fingerprint and "signatureDefHash" not in facet:
        parts = str(fingerprint).split("/")
        facet["signatureDefHash"] = parts[1] if len(parts) == 4 else None
    facets: dict[str, DatasetFacet] = {FACET_KEY: SavedModelDatasetFacet(**facet)} if facet else {}
    return Dataset(namespace=namespace, name=name, facets=facets)


def lineage(inputs: list[Dataset], outputs: list[Dataset]) -> OperatorLineage:
    return OperatorLineage(inputs=inputs, outputs=outputs)
