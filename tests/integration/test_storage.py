"""Copy, publish, versions, retention and verify on local, memory, a real GCS API server and a real S3 server."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest

from airflow_savedmodel.errors import MissingFileError, StorageError
from airflow_savedmodel.format.model import SavedModel
from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.storage import copy, gc, list_versions, publish, verify
from airflow_savedmodel.storage import manifest as manifests

from integration.servers import Store

pytestmark = pytest.mark.integration


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def small_model(root: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    layers = [
        DenseLayer(
            rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal(3).astype(np.float32), "relu"
        )
    ]
    return export_dense_model(str(root / f"model-{seed}"), layers)


def test_copy_chain_local_gs_s3_local_is_byte_identical_and_loads(
    zoo: dict[str, Path], gcs: Store, s3: Store, tmp_path: Path
) -> None:
    src = zoo["tf1_builder"]
    gs_url = gcs.bucket() + "/chain/model"
    s3_url = s3.bucket() + "/chain/model"
    seen = []
    first = copy(str(src), gs_url, dst_options=gcs.options, progress=seen.append, concurrency=4)
    assert first.files == len(tree(src)) and not first.server_side
    assert seen[-1].bytes_done == seen[-1].bytes_total == first.bytes and seen[-1].files_done == first.files
    copy(gs_url, s3_url, src_options=gcs.options, dst_options=s3.options)
    copy(s3_url, str(tmp_path / "back"), src_options=s3.options)
    back = tree(tmp_path / "back")
    manifest_file = back.pop(manifests.MANIFEST_PATH)
    assert back == tree(src)
    assert manifests.Manifest.from_json(__import__("json").loads(manifest_file), "m").source.startswith(
        "s3://"
    )
    assert (
        verify(str(tmp_path / "back")).ok and verify(gs_url, gcs.options).ok and verify(s3_url, s3.options).ok
    )
    from interop import tf_oracle

    x = np.ones((2, 3), np.float32)
    expected = tf_oracle.run_tf1(src, ["serve"], "regress", {"inputs": x})
    got = tf_oracle.run_tf1(tmp_path / "back", ["serve"], "regress", {"inputs": x})
    np.testing.assert_array_equal(got["outputs"], expected["outputs"])


@pytest.mark.parametrize("store_name", ["gcs", "s3"])
def test_same_store_copies_server_side_and_verifies(
    store_name: str, request: pytest.FixtureRequest, zoo: dict[str, Path]
) -> None:
    store: Store = request.getfixturevalue(store_name)
    bucket = store.bucket()
    copy(str(zoo["sharded"]), bucket + "/a", dst_options=store.options)
    result = copy(bucket + "/a", bucket + "/b", src_options=store.options, dst_options=store.options)
    assert result.server_side
    assert verify(bucket + "/b", store.options).ok
    with SavedModel.open(bucket + "/b", store.options) as model:
        assert model.variables().num_shards == 3  # type: ignore[union-attr]


def test_copy_refuses_existing_destination_and_leaves_it(zoo: dict[str, Path], tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "precious").write_text("x")
    with pytest.raises(StorageError, match="destination exists and is not empty"):
        copy(str(zoo["tf2_module"]), str(dst))
    assert tree(dst) == {"precious": b"x"}
    copy(str(zoo["tf2_module"]), str(dst), overwrite=True)
    assert "precious" not in tree(dst) and "saved_model.pb" in tree(dst)
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(MissingFileError, match=r"not a SavedModel: no saved_model\.pb"):
        copy(str(tmp_path / "not-a-model"), str(tmp_path / "elsewhere"))


def test_publish_versions_idempotence_and_verify(store_base: tuple[str, dict], tmp_path: Path) -> None:
    base, options = store_base
    a, b = small_model(tmp_path, 1), small_model(tmp_path, 2)
    first = publish(a, base, base_options=options)
    assert (first.version, first.created) == (1, True)
    again = publish(a, base, base_options=options)
    assert (again.version, again.created) == (1, False)
    second = publish(b, base, base_options=options)
    assert second.version == 2 and second.created
    explicit = publish(a, base, version=10, base_options=options)
    assert explicit.version == 10 and explicit.created
    with pytest.raises(StorageError, match="version exists"):
        publish(b, base, version=10, base_options=options)
    assert publish(b, base, version=10, base_options=options, overwrite=True).version == 10
    found = list_versions(base, options)
    assert [(i.version, i.state) for i in found] == [(1, "complete"), (2, "complete"), (10, "complete")]
    assert publish(small_model(tmp_path, 3), base, base_options=options).version == 11
    fs = fsspec.filesystem(base.split("://")[0] if "://" in base else "file", **options)
    prefix = base.split("://", 1)[-1]
    names = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(prefix, detail=False)}
    assert not any(n.startswith(".savedmodel-staging") for n in names)
    assert verify(found[1].url, options).ok
    with SavedModel.open(found[1].url, options) as model:
        assert model.meta_graph("serve").signature("serving_default").inputs["x"].shape == (-1, 4)


def test_eight_concurrent_publishers_get_eight_versions(store_base: tuple[str, dict], tmp_path: Path) -> None:
    base, options = store_base
    models = [small_model(tmp_path, seed) for seed in range(8)]
    results: list[Any] = [None] * 8
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = publish(models[i], base, base_options=options, concurrency=2)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(r.version for r in results) == list(range(1, 9))
    found = list_versions(base, options, deep=True)
    assert [i.state for i in found] == ["complete"] * 8
    by_version = {r.version: r.manifest.fingerprint for r in results}
    for info in found:
        assert info.manifest is not None and info.manifest.fingerprint == by_version[info.version]


def versions_in(urls: list[str]) -> set[str]:
    """Version numbers among gc's URLs (claims under .savedmodel-claims/ left out)."""
    return {u.rsplit("/", 1)[-1] for u in urls if "/.savedmodel-claims/" not in u}


def test_gc_keeps_the_right_versions(store_base: tuple[str, dict], tmp_path: Path) -> None:
    base, options = store_base
    for seed in range(5):
        publish(small_model(tmp_path, seed), base, base_options=options)
    fs = fsspec.filesystem(base.split("://")[0] if "://" in base else "file", **options)
    prefix = base.split("://", 1)[-1]
    fs.pipe_file(prefix + "/README.txt", b"not a version")
    fs.makedirs(prefix + "/7/variables", exist_ok=True)
    fs.pipe_file(prefix + "/7/variables/variables.index", b"half copied")  # partial, newest number
    dry = gc(base, keep_last=2, dry_run=True, storage_options=options)
    assert versions_in(dry.removed) == {"1", "2", "3", "7"}
    assert len(list_versions(base, options)) == 6
    kept = gc(base, keep_last=2, keep=[1], storage_options=options)
    assert versions_in(kept.kept) == {"1", "4", "5"}
    assert [i.version for i in list_versions(base, options)] == [1, 4, 5]
    assert fs.exists(prefix + "/README.txt")
    young = gc(base, keep_last=1, min_age=3600, storage_options=options)
    assert young.removed == [] and len(young.kept) == 3
    gc(base, keep_last=1, storage_options=options)
    assert [i.version for i in list_versions(base, options)] == [5]


def test_gc_never_removes_the_newest_servable_version(tmp_path: Path) -> None:
    base = tmp_path / "serving"
    publish(small_model(tmp_path, 0), str(base))
    (base / "2" / "variables").mkdir(parents=True)  # a newer but partial version
    result = gc(str(base), keep_last=1)
    assert [u.rsplit("/", 1)[-1] for u in result.removed] == ["2"]
    assert [i.version for i in list_versions(str(base))] == [1]


def test_stale_staging_is_collected_but_fresh_staging_is_not(tmp_path: Path) -> None:
    base = tmp_path / "serving"
    publish(small_model(tmp_path, 0), str(base))
    (base / ".savedmodel-staging-1000-abcdef012345").mkdir()
    fresh = base / f".savedmodel-staging-{int(__import__('time').time())}-0123456789ab"
    fresh.mkdir()
    result = gc(str(base), keep_last=1)
    assert [u.rsplit("/", 1)[-1] for u in result.removed] == [".savedmodel-staging-1000-abcdef012345"]
    assert fresh.exists()


def test_verify_detects_changes(store_base: tuple[str, dict], tmp_path: Path) -> None:
    base, options = store_base
    url = publish(small_model(tmp_path, 0), base, base_options=options).url
    fs = fsspec.filesystem(base.split("://")[0] if "://" in base else "file", **options)
    path = url.split("://", 1)[-1] if "://" in url else url
    data = bytearray(fs.cat_file(path + "/variables/variables.data-00000-of-00001"))
    data[0] ^= 1
    fs.pipe_file(path + "/variables/variables.data-00000-of-00001", bytes(data))
    result = verify(url, options)
    assert not result.ok and "crc32c" in result.problems[0]
    assert verify(url, options, deep=False).ok
    fs.rm(path + "/fingerprint.pb")
    assert list_versions(base, options)[0].state == "partial"


def test_export_within_gcs_moves_only_the_protos_through_the_worker(gcs: Store, tmp_path: Path) -> None:
    """gs:// -> gs:// export with clear devices + strip: variables are copied by the server (the
    worker downloads no variables data and writes no temporary files), and TensorFlow loads the
    published version with the trained network's outputs."""
    from airflow_savedmodel.format import transforms
    from airflow_savedmodel.format.servable import forward
    from airflow_savedmodel.format.validate import Checks
    from airflow_savedmodel.location import resolve
    from airflow_savedmodel.storage.export import export

    rng = np.random.default_rng(11)
    layers = [
        DenseLayer(rng.standard_normal((4, 64)).astype(np.float32), np.zeros(64, np.float32), "relu"),
        DenseLayer(rng.standard_normal((64, 3)).astype(np.float32), np.zeros(3, np.float32), "softmax"),
    ]
    lean = export_dense_model(str(tmp_path / "lean"), layers)
    full = transforms.add_default_attrs(lean, str(tmp_path / "full")).dst  # defaults written out, as TF does
    bucket = gcs.bucket()
    copy(full, f"{bucket}/exports/model", dst_options=gcs.options)
    src, base = resolve(f"{bucket}/exports/model", gcs.options), resolve(f"{bucket}/serving", gcs.options)
    assert src.fs is base.fs

    downloads: list[str] = []
    original = src.fs._call

    async def spy(method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        if "alt=media" in path:
            downloads.append(path)
        return await original(method, path, *args, **kwargs)

    src.fs._call = spy
    try:
        result = export(src, base, rewrites=["clear_devices", "strip_default_attrs"], checks=Checks())
    finally:
        del src.fs._call
    assert result.published is not None and result.published.created and result.changed > 0
    assert result.report is not None and result.report.valid
    assert downloads and not [d for d in downloads if "variables.data" in d], downloads
    assert any("saved_model.pb" in d for d in downloads)
    assert verify(result.published.url, gcs.options).ok

    back = tmp_path / "back"
    copy(result.published.url, str(back), src_options=gcs.options)
    with SavedModel.open(str(back)) as model:
        assert model.meta_graphs[0].proto.meta_info_def.stripped_default_attrs
    from interop import tf_oracle

    x = rng.standard_normal((5, 4)).astype(np.float32)
    served = tf_oracle.run_tf1(back, ["serve"], "serving_default", {"x": x})["y"]
    np.testing.assert_allclose(served, forward(layers, x), atol=1e-5)


def test_an_upload_corrupted_in_flight_is_caught_by_the_listing_check_and_sent_again(
    gcs: Store, tmp_path: Path
) -> None:
    """Bulk files are verified from one listing of the destination (the crc32c GCS computed),
    not one metadata request each; a file whose stored bytes differ is copied again."""
    from integration.servers import FaultProxy

    model = Path(small_model(tmp_path, 5))
    shard = model / "variables" / "variables.data-00000-of-00001"
    proxy = FaultProxy(gcs.options["endpoint_url"])
    flipped: list[str] = []

    data = shard.read_bytes()

    def mangle(method: str, path: str, body: bytes) -> bytes:
        at = body.find(data)  # a simple upload's body is multipart: metadata, then the bytes
        if at < 0 or flipped:
            return body
        flipped.append(path)
        at += len(data) // 2
        return body[:at] + bytes([body[at] ^ 0xFF]) + body[at + 1 :]

    proxy.mangle = mangle
    options = {"token": "anon", "endpoint_url": proxy.endpoint}
    try:
        bucket = gcs.bucket()
        result = copy(str(model), f"{bucket}/m", dst_options=options, concurrency=4)
    finally:
        proxy.stop()
    assert len(flipped) == 1
    uploads = [p for m, p, _ in proxy.requests if m == "POST" and "/upload/" in p]
    object_gets = [p for m, p, _ in proxy.requests if m == "GET" and "/o/" in p and "alt=media" not in p]
    files = sum(1 for p in model.rglob("*") if p.is_file())
    assert len(uploads) == files + 2  # every file once, the corrupted one twice, the manifest
    checked_alone = [p.rsplit("%2F", 1)[-1] for p in object_gets]
    assert "variables.index" not in checked_alone  # a bulk file: checked from the listing
    assert "variables.data-00000-of-00001" in checked_alone  # the re-sent copy, checked by itself
    listings = [p for m, p, _ in proxy.requests if m == "GET" and "delimiter=&prefix=m/&" in p]
    assert len(listings) == 1  # all bulk files from one recursive listing
    fs = gcs.fs()
    assert fs.cat_file(f"{bucket.split('://')[1]}/m/variables/variables.data-00000-of-00001") == data
    assert verify(result.dst, gcs.options).ok


def test_a_listing_cached_mid_copy_does_not_hide_what_is_written_next(gcs: Store, tmp_path: Path) -> None:
    """Something else in the process lists the destination while the copy runs (a sensor's poll
    on the same filesystem instance), and a listing it started before a file was written lands in
    gcsfs's cache after the write: each file is still checked against the store, not that cache
    (which said "no such file", failing the copy with "destination disappeared during the copy")."""
    model = Path(small_model(tmp_path, 6))
    bucket = gcs.bucket()
    fs = fsspec.core.url_to_fs(f"{bucket}/m", **gcs.options)[0]  # the instance copy() resolves to
    taken: dict[str, list[dict[str, Any]]] = {}
    landed: list[str] = []

    def poll(_: Any) -> None:
        """Called after each write: the listings taken at the previous call land in the cache now
        (all taken first: gcsfs drops a path's parents from the cache when it lists the path)."""
        stale = dict(taken)
        for where in (f"{bucket}/m", f"{bucket}/m/variables"):
            with contextlib.suppress(FileNotFoundError):  # nothing written there yet
                taken[where] = fs.ls(where, detail=True, refresh=True)
        for where, listing in stale.items():
            fs.dircache[fs._strip_protocol(where)] = listing
            landed.append(where)

    result = copy(str(model), f"{bucket}/m", dst_options=gcs.options, progress=poll, concurrency=1)
    assert landed  # stale listings were in the cache when files were checked
    assert result.files == sum(1 for p in model.rglob("*") if p.is_file())
    assert verify(f"{bucket}/m", gcs.options).ok


@pytest.mark.parametrize("store", ["gs", "s3"])
def test_a_copy_to_a_bucket_that_does_not_exist_names_the_bucket(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: Store = request.getfixturevalue("gcs" if store == "gs" else "s3")
    rng = np.random.default_rng(0)
    src = export_dense_model(
        str(tmp_path / "m"),
        [DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32))],
    )
    with pytest.raises(
        StorageError,
        match=rf"{store}://no-such-bucket-x1/.*bucket {store}://no-such-bucket-x1 does not exist",
    ):
        copy(src, f"{store}://no-such-bucket-x1/models/m", dst_options=server.options)
    assert not server.fs().exists("no-such-bucket-x1")  # nothing made a bucket on the way
