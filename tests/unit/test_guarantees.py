"""Documented guarantees of publish, leases, signing, export and the storage options, each
defended by a test that fails with the guarantee's own words when it is broken.

Each was found to survive a mutation of the code that keeps it: a lease judged by the
publisher's clock, shards that no longer count a file's size, a gated publish or a plain one
going on after its lease lapsed, a source's signature carried into a rewritten version, S3
timeouts left out of s3fs's settings, a gated retry that reuses a version without naming it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_savedmodel.errors import StorageError
from airflow_savedmodel.location import resolve
from airflow_savedmodel.signing.keys import Signer, Trust
from airflow_savedmodel.storage import gc, leases, list_versions, manifest, model_config, publish, signed
from airflow_savedmodel.storage.export import export
from airflow_savedmodel.storage.publish import ServingTarget

from signing_keys import key_pair, shard_statement
from stores import RecordingMemory, make_model


def refused(guarantee: str, call: Any, *args: Any, **kwargs: Any) -> StorageError:
    """The StorageError ``call`` raises; a test failure naming ``guarantee`` when it raises none."""
    try:
        call(*args, **kwargs)
    except StorageError as exc:
        return exc
    pytest.fail(f"{guarantee}: it was not refused", pytrace=False)


# ---- leases are judged by the store's clock ----------------------------------------------------


def lease_file(
    base: Path, token: str, *, version: int, seconds: float, publisher_skew: float, age: float
) -> None:
    """A lease whose publisher's clock is ``publisher_skew`` seconds off (its ``expires`` is
    computed on that clock), last written ``age`` seconds ago by the store's clock."""
    folder = base / leases.LEASES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{token}.json"
    written = time.time() - age
    doc = {"token": token, "expires": written + publisher_skew + seconds, "seconds": seconds}
    path.write_text(json.dumps({**doc, "staging": None, "version": version, "versions": [version]}))
    os.utime(path, (written, written))


def test_a_lease_is_judged_by_the_stores_timestamps_not_the_publishers_clock(tmp_path: Path) -> None:
    guarantee = "a lease's life is the store's time of its last write plus its term"
    base = tmp_path / "serving"
    for seed in range(1, 5):
        publish(make_model(tmp_path, seed), str(base))
    for number in (3, 4):  # both in flight: files there, manifest not yet
        (base / str(number) / manifest.MANIFEST_PATH).unlink()
    # Renewed a second ago by a publisher whose clock is an hour behind: its own `expires` is
    # long past, yet it is alive.
    lease_file(base, "behind", version=3, seconds=120, publisher_skew=-3600, age=1)
    # Last written ten minutes ago by a publisher whose clock is an hour ahead: its `expires`
    # is still in the future, yet it stopped renewing a 60 s lease long ago.
    lease_file(base, "ahead", version=4, seconds=60, publisher_skew=3600, age=600)
    found = {info.token: info for info in leases.leases(resolve(str(base)).fs, str(base))}
    assert found["behind"].live(), f"{guarantee}: a live publisher with a slow clock was taken for dead"
    assert not found["ahead"].live(), f"{guarantee}: a dead publisher with a fast clock was taken for alive"
    gc(str(base), keep_last=1)
    left = [v.version for v in list_versions(str(base))]
    assert 3 in left, f"{guarantee}: retention removed the version a live lease names ({left})"
    assert 4 not in left, f"{guarantee}: retention kept a dead publisher's partial version ({left})"


# ---- a publisher whose lease lapsed names nothing and writes no proto ---------------------------


@pytest.fixture
def stalled_lease(monkeypatch: pytest.MonkeyPatch) -> float:
    """Renewals stop, and right after the publisher names its version in the lease (the window
    between claiming a number and finishing the version) its last renewal is a whole term old,
    as if it had stalled that long: set on the lease's own clock, not waited for, so a busy
    machine cannot move the moment."""
    seconds = 60.0
    monkeypatch.setattr(leases.Lease, "_renew", lambda self: None)
    original = leases.Lease.set_version

    def then_stall(self: leases.Lease, version: int) -> None:
        original(self, version)
        self._renewed = time.monotonic() - self.seconds - 1

    monkeypatch.setattr(leases.Lease, "set_version", then_stall)
    return seconds


def test_a_gated_publish_whose_lease_lapsed_does_not_name_its_version(
    tmp_path: Path, stalled_lease: float
) -> None:
    guarantee = "a gated publisher whose lease lapsed stops before the serving config names the version"
    bucket = f"memory://gated-{uuid.uuid4().hex[:8]}"
    config = resolve(f"{bucket}/models.config")
    target = ServingTarget(config=config, model_name="ranker", labels=("canary",))
    raised = refused(
        guarantee,
        publish,
        make_model(tmp_path, 1),
        f"{bucket}/ranker",
        serving=target,
        lease_seconds=stalled_lease,
    )
    assert "lease was not renewed" in str(raised) and "stopping before anything is named" in str(raised), (
        raised
    )
    named = model_config.models(model_config.read(config))
    assert named == [], f"{guarantee}: the config names {[m.to_json() for m in named]}"


def test_a_plain_publish_whose_lease_lapsed_writes_neither_fingerprint_nor_saved_model(
    tmp_path: Path, stalled_lease: float
) -> None:
    guarantee = (
        "a plain publish on an object store whose lease lapsed writes neither fingerprint.pb nor "
        "saved_model.pb into the version (TF Serving loads a version once saved_model.pb is there)"
    )
    fs = RecordingMemory()
    base = f"/plain-{uuid.uuid4().hex[:8]}"
    raised = refused(
        guarantee, publish, make_model(tmp_path, 1), base, base_fs=fs, lease_seconds=stalled_lease
    )
    assert "lease was not renewed" in str(raised), raised
    in_versions = [p[len(base) + 1 :] for p in fs.written if p.startswith(base + "/1/")]
    assert in_versions, "the publish reached its version before the lease lapsed (the window tested)"
    protos = [p for p in in_versions if p.endswith(("saved_model.pb", "fingerprint.pb"))]
    assert protos == [], f"{guarantee}: wrote {protos}"


# ---- a gated retry that reuses a version still names it -----------------------------------------


def test_a_gated_retry_that_reuses_its_version_names_it_in_the_config(tmp_path: Path) -> None:
    """A gated publish killed after its version was complete but before the config named it is
    retried: the retry finds the content already published and must still name that version."""
    guarantee = "a gated publish that reuses an existing version names it in the serving config"
    model, base = make_model(tmp_path, 1), tmp_path / "serving" / "ranker"
    first = publish(model, str(base))  # the killed try: complete, never named
    config = resolve(str(tmp_path / "serving" / "models.config"))
    target = ServingTarget(config=config, model_name="ranker", labels=("canary",))
    retry = publish(model, str(base), serving=target)
    assert (retry.version, retry.created) == (first.version, False), "the retry reused the version"
    (named,) = model_config.models(model_config.read(config)) or [None]
    assert named is not None, f"{guarantee}: the config names no model"
    assert (named.versions, named.labels) == ([first.version], {"canary": first.version}), (
        f"{guarantee}: {named.to_json()}"
    )
    assert retry.served == named.to_json(), guarantee


# ---- signatures ---------------------------------------------------------------------------------


@pytest.fixture
def signer_and_trust(tmp_path: Path) -> tuple[Signer, Trust]:
    pair = key_pair(tmp_path / "keys", "ours")
    return Signer.from_pem(pair.private_pem), Trust.from_pem(pair.public.read_bytes())


def test_bytes_appended_after_the_last_signed_shard_do_not_verify(
    tmp_path: Path, signer_and_trust: tuple[Signer, Trust]
) -> None:
    guarantee = "a file signed in shards verifies only at the size it was signed at"
    signer, trust = signer_and_trust
    model = Path(make_model(tmp_path, 1))
    (model / "model.sig").write_bytes(signer.sign(json.dumps(shard_statement(model, 64)).encode()))
    assert signed.check(resolve(str(model)), trust).ok
    shard = model / "variables" / "variables.data-00000-of-00001"
    size = shard.stat().st_size
    with shard.open("ab") as handle:
        handle.write(b"appended after signing")
    findings = signed.check(resolve(str(model)), trust).findings
    assert [(code, file) for code, file, _ in findings] == [
        ("file-changed", "variables/variables.data-00000-of-00001")
    ], f"{guarantee}: {findings}"
    assert findings[0][2] == f"{size + 22} bytes, signed as {size}", guarantee


def test_an_export_without_a_key_does_not_carry_the_sources_signature(
    tmp_path: Path, signer_and_trust: tuple[Signer, Trust]
) -> None:
    guarantee = "a rewritten version never carries its source's model.sig (it covers other bytes)"
    signer, _ = signer_and_trust
    src = resolve(make_model(tmp_path, 1))
    signed.sign(src, signer)
    done = export(src, resolve(str(tmp_path / "serving")), rewrites=("clear_devices", "strip_default_attrs"))
    assert done.published is not None and done.published.created
    version = Path(done.published.url)
    assert (version / "saved_model.pb").is_file()
    assert not (version / signed.SIGNATURE_PATH).exists(), f"{guarantee}: {version}/model.sig"
    listed = manifest.read(resolve(str(version)).fs, str(version))
    assert listed is not None and signed.SIGNATURE_PATH not in {f.path for f in listed.files}, guarantee
    assert (Path(src.path) / signed.SIGNATURE_PATH).is_file(), "the source is never touched"


# ---- storage options ----------------------------------------------------------------------------


def test_s3_timeouts_reach_s3fs() -> None:
    guarantee = "connect_timeout and read_timeout reach s3fs's botocore config"
    given = resolve("s3://bucket/m", {"anon": True, "connect_timeout": 1.5, "read_timeout": 2.5}).fs
    assert (given.config_kwargs.get("connect_timeout"), given.config_kwargs.get("read_timeout")) == (
        1.5,
        2.5,
    ), f"{guarantee}: {given.config_kwargs}"
    defaults = resolve("s3://bucket/m", {"anon": True, "endpoint_url": "http://127.0.0.1:9"}).fs
    assert defaults.config_kwargs.get("connect_timeout") == 10.0, (
        f"{guarantee} (defaults): {defaults.config_kwargs}"
    )
    assert defaults.config_kwargs.get("read_timeout") == 30.0, (
        f"{guarantee} (defaults): {defaults.config_kwargs}"
    )
