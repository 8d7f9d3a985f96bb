"""Moving SavedModels between fsspec filesystems safely: verified copy, atomic versioned publish
(plain, or gated through TensorFlow Serving's model config file), labels and rollback, version
listing, retention that never races a publish, and integrity manifests. No Airflow imports;
built on ``format`` and ``location``."""

from __future__ import annotations

from airflow_savedmodel.storage.manifest import Manifest, verify
from airflow_savedmodel.storage.publish import PublishResult, ServingTarget, publish
from airflow_savedmodel.storage.retention import GcResult, gc
from airflow_savedmodel.storage.transfer import CopyResult, Progress, copy
from airflow_savedmodel.storage.versions import VersionInfo, list_versions

__all__ = [
    "CopyResult",
    "GcResult",
    "Manifest",
    "Progress",
    "PublishResult",
    "ServingTarget",
    "VersionInfo",
    "copy",
    "gc",
    "list_versions",
    "publish",
    "verify",
]
