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
from dataclasses import dataclass, field
from typing import Any

from airflow_savedmodel.errors import NotFoundError, SavedModelError
from airflow_savedmodel.location import Location
from airflow_savedmodel.release import records
from airflow_savedmodel.storage import model_config
from airflow_savedmodel.storage.manifest import SIGNATURE_PATH
from airflow_savedmodel.storage.versions import VersionInfo, versions_of


@dataclass(frozen=True)
class ModelRef:
    """A model as the registry knows it: the config file naming it, its name there, its base
    path, and its entry as that file held it when the model was found (so a page that shows the
    entry does not read the config again)."""

    config: Location
    name: str
    base: Location
    served: Any = field(default=None, compare=False, repr=False)  # the config read (ModelServerConfig)

    @property
    def key(self) -> str:
        return f"{self.config.url}#{self.name}"


def models_in(configs: Iterable[Location], resolve: Callable[[str], Location]) -> list[ModelRef]:
    """Every model the given config files name (a config that cannot be read is left out:
    the page says which, the rest still shows)."""
    out = []
    for config in configs:
        current = model_config.read(config)
        for model in model_config.models(current):
            out.append(ModelRef(config, model.name, resolve(model.base_path), current))
    return out


def find(configs: Iterable[Location], resolve: Callable[[str], Location], name: str) -> ModelRef:
    configs = list(configs)
    for ref in models_in(configs, resolve):
        if ref.name == name:
            return ref
    raise NotFoundError(f"no model named {name!r} in the serving config", ", ".join(c.url for c in configs))


def entry(ref: ModelRef) -> tuple[model_config.ServedModel, str]:
    """The model's entry in its config, as data and as the text TF Serving reads (as found with
    the model, else read now)."""
    current = ref.served if ref.served is not None else model_config.read(ref.config, missing_ok=False)
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


def _version_row(
    info: VersionInfo, labels: dict[str, int], served: set[int], verified: dict[int, str]
) -> dict[str, Any]:
    manifest = info.manifest
    return {
        "version": info.version,
        "state": info.state,
        "problems": list(info.problems or []),
        "bytes": manifest.total_bytes if manifest else None,
        "created": manifest.created if manifest else None,
        "fingerprint": manifest.fingerprint if manifest else None,
        "signed": manifest is not None and any(f.path == SIGNATURE_PATH for f in manifest.files),
        "verified": verified.get(info.version),
        "labels": sorted(label for label, number in labels.items() if number == info.version),
        "served": info.version in served,
    }


def _verified(history: Sequence[dict[str, Any]]) -> dict[int, str]:
    """Version -> what its rollout's signature check said when it passed ("signed by ...")."""
    out = {}
    for record in history:
        for check in record.get("checks") or []:
            if check.get("name") == "signature" and check.get("status") == "pass":
                out[int(record["version"])] = str(check.get("message") or "verified")
    return out


def overview(ref: ModelRef) -> dict[str, Any]:
    """What the Models page lists for a model: its newest complete version, what ``stable`` and
    ``canary`` point at, how many versions, and the last release's outcome."""
    served, _ = entry(ref)
    found = versions_of(ref.base.fs, ref.base.path, record=False)
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


PAGE_ROWS = 50  # versions per page of a model's page


def model_page(ref: ModelRef, page: int = 1, rows: int = PAGE_ROWS) -> dict[str, Any]:
    """A model's page: its versions newest first (``rows`` of them, page ``page``, with who
    signed each), the config entry, every release."""
    served, text = entry(ref)
    found = versions_of(ref.base.fs, ref.base.path, record=False)
    labels = dict(served.labels)
    listed = set(served.versions)
    history = records.history(ref.base)
    verified = _verified(history)
    newest_first = list(reversed(found))
    pages = max(1, -(-len(newest_first) // rows))
    page = min(max(1, page), pages)
    shown = [_version_row(v, labels, listed, verified) for v in newest_first[(page - 1) * rows : page * rows]]
    who = signers(ref, [r["version"] for r in shown if r["signed"]])
    for row in shown:
        row["signer"] = who.get(row["version"])
    return {
        "name": ref.name,
        "config": ref.config.url,
        "base_path": ref.base.url,
        "entry": served.to_json(),
        "entry_text": text,
        "labels": dict(sorted(labels.items())),
        "count": len(found),
        "complete": [v.version for v in found if v.servable],
        "page": page,
        "pages": pages,
        "versions": shown,
        "releases": [_release_summary(r) for r in reversed(history)],
    }


def signers(ref: ModelRef, versions: Sequence[int]) -> dict[int, str | None]:
    """Who signed each of ``versions``, their ``model.sig`` files read in one batch."""
    paths = {ref.base.join(str(v), SIGNATURE_PATH).path: v for v in versions}
    found = ref.base.fs.cat(list(paths), on_error="omit") if paths else {}
    out: dict[int, str | None] = dict.fromkeys(versions)
    for path, raw in found.items():
        version = paths.get(path) or paths.get(str(path).split("://", 1)[-1])
        if version is not None and isinstance(raw, bytes):
            out[version] = _signer_of(raw, ref.base.join(str(version), SIGNATURE_PATH).url)
    return out


def signer(ref: ModelRef, version: int) -> str | None:
    """Who signed ``version`` as its ``model.sig`` names them (its key's hint or certificate
    subject); not a verification, which needs the deployment's trusted signers. None: unsigned."""
    return signers(ref, [version])[version]


def _signer_of(raw: bytes, url: str) -> str:
    from airflow_savedmodel.signing import oms

    try:
        bundle = oms.parse_bundle(raw, url)
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


def signatures(ref: ModelRef, version: int, tag_set: str = "serve") -> list[dict[str, Any]]:
    """The signatures clients call on ``version``: name, method, and each input and output with
    its dtype and shape (one read of its saved_model.pb)."""
    from airflow_savedmodel.format.model import SavedModel

    with SavedModel.open(ref.base.join(str(version)).path, fs=ref.base.fs) as model:
        found = model.meta_graph(tag_set).signatures
    return [
        {
            "name": name,
            "method": sig.method_name,
            "inputs": [f"{k}: {v.dtype} {v.shape_text()}" for k, v in sorted(sig.inputs.items())],
            "outputs": [f"{k}: {v.dtype} {v.shape_text()}" for k, v in sorted(sig.outputs.items())],
        }
        for name, sig in sorted(found.items())
        if not name.startswith("__")
    ]


def signature_diff(ref: ModelRef, old: int, new: int, tag_set: str = "serve") -> list[dict[str, Any]]:
    """What changed in the signatures from version ``old`` to ``new``, and whether it breaks
    clients of ``old``."""
    from airflow_savedmodel.format import compat
    from airflow_savedmodel.format.model import SavedModel

    def signatures(version: int) -> Any:
        with SavedModel.open(ref.base.join(str(version)).path, fs=ref.base.fs) as model:
            return model.meta_graph(tag_set).signatures

    return [{**c.to_json(), "text": c.text()} for c in compat.diff(signatures(old), signatures(new))]


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
