"""Signed versions on every kind of store (local, memory, a GCS JSON-API server, moto's S3): a
publish signs from the copy stream (or one streamed read where the server copies), the gated
publish signs before the config names the version, the signature survives a copy back to local
disk where the reference tool verifies it, and a version tampered with in the bucket (its crc32c
manifest forged to match) is refused by promote, rollback and the mirror with the file named,
the serving config left as it was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from airflow_savedmodel.errors import SignedContentError, StorageError
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.location import resolve
from airflow_savedmodel.signing.keys import Signer, Trust
from airflow_savedmodel.storage import copy, list_versions, model_config, publish, signed
from airflow_savedmodel.storage import manifest as manifests
from airflow_savedmodel.storage.mirror import mirror
from airflow_savedmodel.storage.publish import ServingTarget

from signing_keys import key_pair

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def model(root: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    layer = DenseLayer(rng.standard_normal((8, 4)).astype(np.float32), np.zeros(4, np.float32), "softmax")
    return export_dense_model(str(root / f"model-{seed}"), [layer])


def test_signed_publish_tamper_and_refusal_on_each_store(
    store_base: tuple[str, dict], tmp_path: Path
) -> None:
    base_url, options = store_base
    keys = key_pair(tmp_path / "keys", "release")
    signer, trust = Signer.from_pem(keys.private_pem), Trust.from_pem(keys.public.read_bytes())
    base = resolve(base_url, options)
    config = resolve(str(tmp_path / "models.config"))
    for seed in (1, 2):  # local -> store: digests from the copy stream; gated: signed before named
        done = publish(
            model(tmp_path, seed),
            base,
            signer=signer,
            serving=ServingTarget(config, "ranker", labels=("stable",), trust=trust),
        )
        assert done.signed_by == signer.describe() and done.version == seed
    for n in (1, 2):
        assert signed.check(base.join(str(n)), trust).signer == signer.describe()

    # Store -> same store: the server copies, the signature's digests come from one streamed read.
    again = publish(base.join("2"), base.parent.join("copy"), signer=signer)
    assert signed.check(resolve(again.url, options), trust).ok

    # The signature travels: copied back to local disk, the reference tool verifies it.
    local = tmp_path / "back"
    copy(base.join("2"), resolve(str(local)))
    ran = subprocess.run(
        [
            str(Path(sys.executable).parent / "model_signing"),
            "verify",
            "key",
            str(local),
            "--signature",
            str(local / "model.sig"),
            "--public_key",
            str(keys.public),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0 and "Verification succeeded" in ran.stdout, ran.stdout + ran.stderr

    # A bucket writer changes version 1's variables and forges its crc32c manifest to match.
    v1 = base.join("1")
    shard = v1.join("variables", "variables.data-00000-of-00001")
    data = bytearray(v1.fs.cat_file(shard.path))
    data[len(data) // 2] ^= 0x01
    v1.fs.pipe_file(shard.path, bytes(data))
    manifests.write(v1.fs, v1.path, manifests.scan(v1.fs, v1.path))
    assert [i.state for i in list_versions(base)] == ["complete", "complete"]  # nothing else notices
    before = Path(config.path).read_bytes()
    with pytest.raises(
        SignedContentError, match=r"variables/variables\.data-00000-of-00001: content changed"
    ):
        model_config.rollback(config, "ranker", base, trust=trust)  # stable 2 -> 1
    with pytest.raises(SignedContentError, match="differs from what was signed"):
        model_config.set_labels(config, "ranker", base, {"canary": 1}, trust)
    assert Path(config.path).read_bytes() == before
    with pytest.raises(StorageError, match=r"1 version\(s\) not mirrored: .*/1: .*content changed"):
        mirror(base, resolve(str(tmp_path / "mirror")), trust=trust)
    assert [i.version for i in list_versions(str(tmp_path / "mirror")) if i.state == "complete"] == [2]


def test_signed_in_shards_on_each_store(store_base: tuple[str, dict], tmp_path: Path) -> None:
    """The shards serialization through every copy path: local -> store (digests from the copy
    stream, cut at shard boundaries), store -> same store (one streamed read beside the
    server's copy), checked on the store shard by shard, a changed byte named with its file."""
    base_url, options = store_base
    keys = key_pair(tmp_path / "keys", "release")
    sharded = Signer.from_pem(keys.private_pem, shard_size=64)
    trust = Trust.from_pem(keys.public.read_bytes())
    base = resolve(base_url, options)
    first = publish(model(tmp_path, 1), base, signer=sharded)
    again = publish(base.join(str(first.version)), base.parent.join("copy"), signer=sharded)
    for url in (first.url, again.url):
        version = resolve(url, options)
        assert signed.check(version, trust).ok
        statement = signed.digests(version, shard_size=64)
        assert len(statement) > 5 and all(name.count(":") >= 2 for name in statement)
    v1 = resolve(first.url, options)
    data_file = v1.join("variables", "variables.data-00000-of-00001")
    data = bytearray(v1.fs.cat_file(data_file.path))
    data[-1] ^= 0x01
    v1.fs.pipe_file(data_file.path, bytes(data))
    found = signed.check(v1, trust).findings
    assert [(c, f) for c, f, _ in found] == [("file-changed", "variables/variables.data-00000-of-00001")]
