"""Publish a SavedModel as a new version under a serving base path, complete or not at all.

Before any byte is copied, the source's content (every file's path, size and crc32c, without
fingerprint.pb's random uuid) is compared with the complete versions already there: an
unchanged model returns the existing version and writes nothing, so retries and nightly
re-exports are free.

Where the version becomes visible depends on the filesystem and the mode:

- **Local / POSIX**: copy into a hidden staging directory, verify, then one atomic ``rename``
  to ``base/<N>`` (which also fails if another publisher took N first).
- **Object stores, plain mode**: copy into a hidden staging prefix and verify; claim N with a
  create-if-absent write; copy server-side into ``base/<N>/`` with variables and assets first
  and saved_model.pb last. A watcher that lists ``base`` sees ``N/`` while this runs.
- **Gated mode** (``serving=ServingTarget(...)``, any filesystem): the version is copied and
  verified first, then named in TensorFlow Serving's model config file with one atomic write
  (storage/model_config.py). A TF Serving reading that file with the ``specific`` policy never sees
  a version before it is complete. On object stores the copy goes straight into ``base/<N>/``.

A publisher holds a lease (storage/leases.py) on its staging area and version while it works;
retention never removes what a live lease names.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_savedmodel import location
from airflow_savedmodel.errors import StorageError
from airflow_savedmodel.format.crc import crc32c
from airflow_savedmodel.format.model import has_saved_model, missing_model_error
from airflow_savedmodel.location import CHUNK, Location, is_local, to_hex
from airflow_savedmodel.signing.keys import Signer, Trust
from airflow_savedmodel.storage import catalog, content_index, leases, model_config, signed
from airflow_savedmodel.storage import manifest as manifests
from airflow_savedmodel.storage import versions as v
from airflow_savedmodel.storage.transfer import CopyOptions, ProgressCallback, superseded

MAX_CLAIM_ATTEMPTS = 100
_TRAILING_NUMBER = re.compile(r"/(\d+)/?$")


@dataclass(frozen=True)
class ServingTarget:
    """Gate a publish through TensorFlow Serving's model config file.

    :param config: where the config file is (TF Serving's ``--model_config_file``).
    :param model_name: the model's name in that file (added when missing).
    :param labels: labels to point at the new version (needs TF Serving's
        ``--allow_version_labels_for_unavailable_models``, or set them once the version is AVAILABLE).
    :param keep_served: how many of the newest versions stay listed (labelled ones always do).
    :param base_path: the base path as TF Serving reads it, when it differs from the publish URL.
    """

    config: Location
    model_name: str
    labels: tuple[str, ...] = ()
    keep_served: int = model_config.DEFAULT_KEEP_SERVED
    base_path: str | None = None
    trust: Trust | None = None  # labels and versions named must verify (an existing version may be reused)


@dataclass
class PublishResult:
    version: int
    url: str
    created: bool  # False when an existing version already held this content
    manifest: manifests.Manifest
    seconds: float
    served: dict[str, Any] | None = field(default=None)  # the model's serving config after a gated publish
    signed_by: str | None = None  # who signed the version (a signing publish), as Signer.describe says
    config_wait_seconds: float = 0.0  # queued behind other writers of the serving config (gated)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "url": self.url,
            "created": self.created,
            "fingerprint": self.manifest.fingerprint,
            "bytes": self.manifest.total_bytes,
            "files": len(self.manifest.files),
            "seconds": round(self.seconds, 3),
            "served": self.served,
            "signed_by": self.signed_by,
            "config_wait_seconds": round(self.config_wait_seconds, 3),
        }


def version_of_url(url: str) -> int:
    """The version number a model URL ends in (``.../ranker/7`` -> 7), for ``version="same"``."""
    match = _TRAILING_NUMBER.search("/" + url)
    if not match:
        raise StorageError('version "same" needs a source that ends in a version number', url)
    return int(match.group(1))


def _already_published(
    src: Location,
    base: Location,
    infos: dict[str, dict[str, Any]],
    replaced: Mapping[str, bytes],
    signer: Signer | None,
    *,
    numbers: list[int],
) -> tuple[v.VersionInfo | None, tuple[tuple[str, int, str], ...] | None]:
    """The newest complete version holding the source's content (with ``replaced`` files in
    place of the source's protos), decided before copying; with a ``signer``, one it signed.
    ``numbers``: the version directories under the base path, as just listed.

    The content index (storage/content_index.py) names the candidates, so this costs a few
    requests whatever the history; checksums of the source are only taken when some version has
    the same files and sizes. A base path the index does not cover yet is indexed first, once.
    """
    if not numbers:
        return None, None
    sizes = {rel: int(info.get("size") or 0) for rel, info in infos.items()}
    sizes.update({rel: len(data) for rel, data in replaced.items()})
    shape = manifests.shape_of(sizes)
    fs, path = base
    if not content_index.is_ready(fs, path):
        told = v.versions_of(fs, path)
        content_index.build(
            fs,
            path,
            [(i.version, i.manifest) for i in told if i.state == v.COMPLETE and i.manifest is not None],
        )
    if not content_index.has_shape(fs, path, shape):
        return None, None
    new = [manifests.FileEntry(rel, len(data), to_hex(crc32c(data))) for rel, data in replaced.items()]
    key = manifests.content_key(manifests.source_entries(src.fs, src.path, infos) + new)
    for number in content_index.holders(fs, path, key):
        target = base.join(str(number))
        state, manifest, _ = v.state_of(fs, target.path)
        if state != v.COMPLETE or manifest is None or manifest.content_key() != key:
            content_index.forget(fs, path, key, number)  # gone, or replaced by other content
            continue
        if signer is None or signed.signed_by(target, signer):
            return v.VersionInfo(number, target.url, state, manifest, []), key
    return None, key


def publish(
    src_url: str | Location,
    base_url: str | Location,
    *,
    version: int | str = "auto",
    src_options: dict[str, Any] | None = None,
    base_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    concurrency: int = 8,
    chunk_size: int = CHUNK,
    retries: int = 3,
    progress: ProgressCallback | None = None,
    src_fs: Any = None,
    base_fs: Any = None,
    serving: ServingTarget | None = None,
    lease_seconds: float = leases.DEFAULT_LEASE_SECONDS,
    replaced: Mapping[str, bytes] | None = None,
    signer: Signer | None = None,
    trust: Trust | None = None,
) -> PublishResult:
    """Publish the model at ``src_url`` as ``base_url/<version>``.

    ``version`` is "auto" (one above every existing or claimed version), "same" (the number the
    source URL ends in, for mirrors) or a number. ``replaced`` publishes files from memory in
    place of (or beside) the source's: a rewrite's saved_model.pb and fingerprint.pb, warmup
    requests; every other file comes from the source.

    With a ``signer`` the version is signed (``model.sig``) before it becomes visible, and an
    existing version only counts as this content when this signer signed it. With ``trust``, a
    source that carries a signature must verify (a signed source is never re-signed unchecked).
    """
    replaced = dict(replaced or {})
    started = time.monotonic()
    src = location.resolve(src_url, src_options, src_fs)
    base = location.resolve(base_url, base_options, base_fs)
    if version == "same":
        version = version_of_url(src.path)
    if version != "auto" and (not isinstance(version, int) or isinstance(version, bool) or version < 0):
        raise StorageError(
            f"version must be 'auto', 'same' or a non-negative integer, not {version!r}", base.url
        )
    if not has_saved_model(src.fs, src.path):
        raise missing_model_error(src.fs, src.path)
    if serving is not None:  # refused before anything is copied
        model_config.check_base(serving.config, serving.model_name, base, serving.base_path)
    if trust is not None and src.join(signed.SIGNATURE_PATH).exists():
        signed.require(src, trust)
    infos = location.relative_infos(src.fs, src.path)  # refuses a source it cannot copy
    if replaced:
        infos = {rel: info for rel, info in infos.items() if rel not in superseded(replaced)}
    overlap = location.overlap(src.fs, src.path, base.fs, base.path)
    if overlap == "the destination is inside the source":
        raise StorageError(
            "the base path is inside the source model: a publish never writes into its source", base.url
        )
    numbers = _refuse_not_directories(base)
    existing, source_key = _already_published(src, base, infos, replaced, signer, numbers=numbers)
    waited: list[float] = []
    if existing is not None and version in ("auto", existing.version):
        assert existing.manifest is not None
        served = _serve(serving, base, existing.version, waited)
        return PublishResult(
            existing.version,
            existing.url,
            False,
            existing.manifest,
            time.monotonic() - started,
            served,
            signer.describe() if signer else None,
            sum(waited),
        )
    copy = CopyOptions(concurrency=concurrency, chunk_size=chunk_size, retries=retries, progress=progress)

    def unchanged(manifest: manifests.Manifest) -> manifests.Manifest:
        """The copy's manifest, refused if the source changed since its content was compared."""
        if source_key is not None and manifest.content_key() != source_key:
            raise StorageError("the source changed while it was being published", src.url)
        return manifest

    def announce(number: int, manifest: manifests.Manifest) -> None:
        """Index the version before it becomes visible (a first version starts the index)."""
        content_index.add(base.fs, base.path, manifest, number)
        if not numbers:
            with contextlib.suppress(Exception):  # the next publish indexes the base path then
                content_index.mark_ready(base.fs, base.path)

    location.makedirs(base.fs, base.path)  # only now: a refused source leaves no base behind
    with leases.Lease(base.fs, base.path, lease_seconds) as lease:
        if serving is not None and not is_local(base.fs):
            number, manifest = _copy_direct(
                src,
                base,
                version=version,
                overwrite=overwrite,
                lease=lease,
                copy=copy,
                replaced=replaced,
                signer=signer,
            )
            unchanged(manifest)  # before the config names it
            announce(number, manifest)
        else:
            staging = v.new_staging(base.path)
            lease.start(staging)
            try:
                manifest = unchanged(
                    copy.tree(
                        src.fs,
                        src.path,
                        base.fs,
                        staging,
                        src.url,
                        replaced=replaced,
                        signer=signer,
                        signed_as=base.name,
                    )[0]
                )
                staged = manifest
                if is_local(base.fs):
                    number = _rename_into_place(
                        base,
                        staging,
                        version,
                        overwrite,
                        lease,
                        announce=lambda n: announce(n, staged),
                        listed=numbers,
                    )
                else:
                    number = _copy_into_place(
                        base,
                        staging,
                        version=version,
                        overwrite=overwrite,
                        manifest=manifest,
                        lease=lease,
                        copy=copy,
                        announce=lambda n: announce(n, staged),
                    )
            finally:
                location.remove_quietly(base.fs, staging)
        if serving is not None:
            lease.check()  # a publisher retention may take for dead names nothing
        served = _serve(serving, base, number, waited)
    catalog.record(base.fs, base.path, number, manifest)  # best effort: readers heal it
    final = base.join(str(number))
    return PublishResult(
        number,
        final.url,
        True,
        manifest,
        time.monotonic() - started,
        served,
        signer.describe() if signer else None,
        sum(waited),
    )


def _refuse_not_directories(base: Location) -> list[int]:
    """An entry named like a version that is not a directory (a symlink, a file) would make
    every number at or below it unusable and TF Serving's view of the base path unclear:
    refused at once, with its name, before anything is written. Returns the version
    directories the listing found."""
    numbers, found = v.numbered(base.fs, base.path)
    if found:
        number, kind = found[0]
        raise StorageError(
            f"named like a version but a {kind}, not a directory; remove or rename it before "
            "publishing under this base path",
            base.join(str(number)).url,
        )
    return numbers


def _serve(
    serving: ServingTarget | None, base: Location, number: int, waited: list[float] | None = None
) -> dict[str, Any] | None:
    if serving is None:
        return None
    model = model_config.serve_version(
        serving.config,
        serving.model_name,
        base,
        number,
        base_path=serving.base_path,
        keep_served=serving.keep_served,
        labels=dict.fromkeys(serving.labels, number),
        trust=serving.trust,
        waited=waited,
    )
    return model.to_json()


def _next_number(base: Location) -> int:
    taken = v.version_numbers(base.fs, base.path) + v.claimed_versions(base.fs, base.path)
    return max(taken, default=0) + 1


def _rename_into_place(
    base: Location,
    staging: str,
    version: int | str,
    overwrite: bool,
    lease: leases.Lease,
    *,
    announce: Callable[[int], None],
    listed: list[int],
) -> int:
    """``listed``: the version directories as listed before the copy; the first attempt takes
    the number above them (the rename refuses it if another publisher took it meanwhile, and
    the next attempt lists again)."""
    fs = base.fs
    for attempt in range(MAX_CLAIM_ATTEMPTS):
        if version != "auto":
            number = int(version)
        else:
            number = max(listed, default=0) + 1 if attempt == 0 else _next_number(base)
        target = base.join(str(number)).path
        if version != "auto" and overwrite and os.path.exists(target):
            lease.set_version(number)  # retention must see the version being replaced as in use
            announce(number)
            old = location.sibling(target, "old")
            os.rename(target, old)
            os.rename(staging, target)
            fs.rm(old, recursive=True)
            return number
        try:
            if os.path.exists(target):
                raise FileExistsError(errno.EEXIST, "exists", target)
            lease.set_version(number)
            announce(number)  # a number lost to another publisher leaves a marker checked away
            os.rename(staging, target)  # atomic; refuses a non-empty existing directory
            return number
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise StorageError(f"moving the staged model into place failed: {exc}", target) from exc
            if version != "auto":
                raise StorageError(
                    "version exists (replace it with --overwrite, overwrite=True)", target
                ) from None
    raise StorageError(f"no free version after {MAX_CLAIM_ATTEMPTS} attempts", base.url)


def _claim_number(
    base: Location, version: int | str, overwrite: bool, lease: leases.Lease
) -> tuple[int, bool]:
    """Claim a version number on an object store; ``(number, whether it already exists)``."""
    fs = base.fs
    for _ in range(MAX_CLAIM_ATTEMPTS):
        number = _next_number(base) if version == "auto" else int(version)
        target = base.join(str(number))
        exists = bool(location.children(fs, target.path, refresh=True))
        replace = version != "auto" and overwrite
        if exists and not replace:
            if version != "auto":
                raise StorageError("version exists (replace it with --overwrite, overwrite=True)", target.url)
            continue
        claim = location.join(base.path, leases.CLAIMS_DIR, str(number))
        won = leases.claim(fs, claim, lease.token)
        if won and not replace and location.children(fs, target.path, refresh=True):
            # Retention removes a claim once its version exists; a claimant that came after
            # that removal wins an empty claim for a number already in use.
            leases.release(fs, claim, lease.token)
            won = False
        if not won and not replace:
            if version != "auto":
                raise StorageError("another publisher claimed this version", target.url)
            continue
        # The lease names the version before any byte lands under it, so retention (which
        # lists versions first and leases second) never mistakes it for an abandoned one.
        lease.set_version(number)
        return number, exists
    raise StorageError(f"no free version after {MAX_CLAIM_ATTEMPTS} attempts", base.url)


def _check_final(target: Location, manifest: manifests.Manifest) -> None:
    final = manifests.read(target.fs, target.path)
    problems = manifests.check(target.fs, target.path, manifest, deep=False)
    if final is None or final.content_key() != manifest.content_key() or problems:
        raise StorageError(
            "published version does not match the staged manifest: " + "; ".join(problems), target.url
        )


def _copy_into_place(
    base: Location,
    staging: str,
    *,
    version: int | str,
    overwrite: bool,
    manifest: manifests.Manifest,
    lease: leases.Lease,
    copy: CopyOptions,
    announce: Callable[[int], None],
) -> int:
    number, exists = _claim_number(base, version, overwrite, lease)
    announce(number)
    target = base.join(str(number))
    if exists:
        base.fs.rm(target.path, recursive=True)
    copy.tree(base.fs, staging, base.fs, target.path, manifest.source, before_last=lease.check)
    _check_final(target, manifest)
    return number


def _copy_direct(
    src: Location,
    base: Location,
    *,
    version: int | str,
    overwrite: bool,
    lease: leases.Lease,
    copy: CopyOptions,
    replaced: Mapping[str, bytes],
    signer: Signer | None,
) -> tuple[int, manifests.Manifest]:
    """Gated mode on an object store: nothing serves ``base/<N>`` until the config names it,
    so the model is copied straight into place and verified there."""
    lease.start(None)
    number, exists = _claim_number(base, version, overwrite, lease)
    target = base.join(str(number))
    if exists:
        base.fs.rm(target.path, recursive=True)
    manifest, _ = copy.tree(
        src.fs, src.path, base.fs, target.path, src.url, replaced=replaced, signer=signer, signed_as=base.name
    )
    _check_final(target, manifest)
    return number, manifest
