"""A model served by TF Serving as a registry shows it, read from storage: its versions with
their state, labels and signing, the model config entry TF Serving reads, its releases, and one
release's evidence. Plain data for the Models view (and anything else that wants a page of it).

Reads are what the publish and the rollout already keep beside the versions: the catalog and
one listing tell every version's state (storage/versions.py), the release records come in one
batch, a version's signer from its ``model.sig`` only for the versions asked about. Never every
version's files, so a model with 1,000 versions and 200 releases costs a few requests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_savedmodel.errors import NotFoundError, SavedModelError
from airflow_savedmodel.location import Location
from airflow_savedmodel.release import records
from airflow_savedmodel.storage import model_config
from airflow_savedmodel.storage.manifest import SIGNATURE_PATH
from airflow_savedmodel.storage.versions import VersionInfo, versions_of


@dataclass(frozen=True)
class ModelRef:
    """A model as the registry knows it: the config file naming it, its name there, its base path."""

    config: Location
    name: str
    base: Location

    @property
    def key(self) -> str:
        return f"{self.config.url}#{self.name}"


def models_in(configs: Iterable[Location], resolve: Callable[[str], Location]) -> list[ModelRef]:
    """Every model the given config files name (a config that cannot be read is left out:
    the page says which, the rest still shows)."""
    out = []
    for config in configs:
        for model in model_config.models(model_config.read(config)):
            out.append(ModelRef(config, model.name, resolve(model.base_path)))
    return out


def find(configs: Iterable[Location], resolve: Callable[[str], Location], name: str) -> ModelRef:
    for ref in models_in(configs, resolve):
        if ref.name == name:
            return ref
    raise NotFoundError(f"no model named {name!r} in the serving configs the registry knows")


def entry(ref: ModelRef) -> tuple[model_config.ServedModel, str]:
    """The model's entry in its config, as data and as the text TF Serving reads."""
    current = model_config.read(ref.config, missing_ok=False)
    found = model_config.find(current, ref.name)
    if found is None:
        raise NotFoundError(f"no model named {ref.name!r} in the serving config", ref.config.url)
    from airflow_savedmodel.protos import serving_config_pb2 as pb

    one = pb.ModelServerConfig()
    one.model_config_list.config.add().CopyFrom(found)
    return model_config.describe(found), model_config.render(one)


def _release_summary(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if not record:
        return None
    checks = record.get("checks") or []
    return {
        "version": record.get("version"),
        "state": record.get("state"),
        "run_id": record.get("run_id"),
        "started": record.get("started"),
        "decided": record.get("decided"),
        "message": record.get("message"),
        "stable_before": record.get("stable_before"),
        "stable_after": record.get("stable_after"),
        "failed": [c["name"] for c in checks if c.get("status") == "fail" and not c.get("replica")],
        "replicas": sorted({c["replica"] for c in checks if c.get("replica")}),
        "approval": record.get("approval"),
        "earlier": len(record.get("earlier") or []),
    }


def _version_row(info: VersionInfo, labels: dict[str, int], served: set[int]) -> dict[str, Any]:
    manifest = info.manifest
    return {
        "version": info.version,
        "state": info.state,
        "problems": list(info.problems or []),
        "bytes": manifest.total_bytes if manifest else None,
        "created": manifest.created if manifest else None,
        "fingerprint": manifest.fingerprint if manifest else None,
        "signed": manifest is not None and any(f.path == SIGNATURE_PATH for f in manifest.files),
        "labels": sorted(label for label, number in labels.items() if number == info.version),
        "served": info.version in served,
    }


def overview(ref: ModelRef) -> dict[str, Any]:
    """What the Models page lists for a model: its newest complete version, what ``stable`` and
    ``canary`` point at, how many versions, and the last release's outcome."""
    served, _ = entry(ref)
    found = versions_of(ref.base.fs, ref.base.path)
    complete = [v.version for v in found if v.servable]
    history = records.history(ref.base)
    last = max(history, key=lambda r: str(r.get("decided") or r.get("started") or "")) if history else None
    return {
        "name": ref.name,
        "config": ref.config.url,
        "base_path": ref.base.url,
        "labels": dict(sorted(served.labels.items())),
        "versions": len(found),
        "newest": complete[-1] if complete else None,
        "partial": [v.version for v in found if not v.servable],
        "last_release": _release_summary(last),
    }


def model_page(ref: ModelRef) -> dict[str, Any]:
    """A model's page: every version (newest first), the config entry, every release."""
    served, text = entry(ref)
    found = versions_of(ref.base.fs, ref.base.path)
    labels = dict(served.labels)
    listed = set(served.versions)
    history = records.history(ref.base)
    return {
        "name": ref.name,
        "config": ref.config.url,
        "base_path": ref.base.url,
        "entry": served.to_json(),
        "entry_text": text,
        "versions": [_version_row(v, labels, listed) for v in reversed(found)],
        "releases": [_release_summary(r) for r in reversed(history)],
    }


def signer(ref: ModelRef, version: int) -> str | None:
    """Who signed ``version`` as its ``model.sig`` names them (its key's hint or certificate
    subject); not a verification, which needs the deployment's trusted signers. None: unsigned."""
    from airflow_savedmodel.signing import oms

    path = ref.base.join(str(version), SIGNATURE_PATH)
    try:
        raw = ref.base.fs.cat_file(path.path)
    except FileNotFoundError:
        return None
    try:
        bundle = oms.parse_bundle(raw, path.url)
    except SavedModelError:
        return "model.sig present (unreadable)"
    if bundle.certificates:
        from cryptography import x509

        try:
            return f"certificate {x509.load_der_x509_certificate(bundle.certificates[0]).subject.rfc4514_string()}"
        except ValueError:
            return "certificate (unreadable)"
    if bundle.key_hint:
        return f"key sha256:{bundle.key_hint[:16]}"
    return f"{bundle.method} signature"


def signature_diff(ref: ModelRef, old: int, new: int, tag_set: str = "serve") -> list[dict[str, Any]]:
    """What changed in the signatures from version ``old`` to ``new``, and whether it breaks
    clients of ``old``."""
    from airflow_savedmodel.format import compat
    from airflow_savedmodel.format.model import SavedModel

    def signatures(version: int) -> Any:
        with SavedModel.open(ref.base.join(str(version)).path, fs=ref.base.fs) as model:
            return model.meta_graph(tag_set).signatures

    return [c.to_json() for c in compat.diff(signatures(old), signatures(new))]


def release_page(ref: ModelRef, version: int) -> dict[str, Any]:
    """One release: the record (each check with its figure and threshold, per replica where
    there were several, the approval) and the bake request by request, for the plots."""
    record = records.read(ref.base, version)
    if record is None:
        raise NotFoundError(f"no release recorded for version {version}", ref.base.url)
    checks = record.get("checks") or []
    return {
        "name": ref.name,
        "version": version,
        "summary": _release_summary(record),
        "policy": record.get("policy"),
        "metrics": record.get("metrics"),
        "checks": [c for c in checks if not c.get("replica")],
        "replica_checks": _by_replica(checks),
        "earlier": record.get("earlier") or [],
        "bake": records.read_bake(ref.base, version),
    }


def _by_replica(checks: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for check in checks:
        replica = check.get("replica")
        if replica:
            named = dict(check, name=str(check["name"]).removeprefix(f"replica:{replica}:"))
            out.setdefault(replica, []).append(named)
    return out


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)
