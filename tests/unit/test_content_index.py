"""A publish whose requests do not grow with the versions kept (storage/publish.py and
storage/content_index.py): the same requests at version 1,000 as at version 10, a republish
recognized through the content index, an index that is a hint checked against the version,
a base path from before the index indexed once, and retention dropping what it removed."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pytest

from airflow_savedmodel.format.servable import DenseLayer, export_dense_model
from airflow_savedmodel.storage import catalog, content_index, gc, publish
from airflow_savedmodel.storage.versions import versions_of

WATCHED = (
    "find",
    "ls",
    "info",
    "cat_file",
    "cat",
    "exists",
    "isfile",
    "isdir",
    "pipe_file",
    "pipe",
    "rm",
    "rm_file",
)


def make_model(root: Path, seed: int) -> str:
    """The model of ``seed`` (the same directory when asked again)."""
    if (root / f"model-{seed}").exists():
        return str(root / f"model-{seed}")
    rng = np.random.default_rng(seed)
    layer = DenseLayer(rng.standard_normal((4, 3)).astype(np.float32), np.zeros(3, np.float32))
    return export_dense_model(str(root / f"model-{seed}"), [layer])


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    fs = fsspec.filesystem("memory")
    base = f"/index-{tmp_path.name}"
    yield fs, base
    for name in WATCHED:
        fs.__dict__.pop(name, None)
    fs.rm(base, recursive=True)


def fill(fs: Any, base: str, tmp_path: Path, upto: int) -> None:
    """Versions 1..upto, copies of one published version (published before the index existed:
    the first publish indexes them)."""
    publish(make_model(tmp_path, 0), f"memory://{base}")
    template = {p.removeprefix(f"{base}/1/"): fs.cat_file(p) for p in fs.find(f"{base}/1")}
    fs.pipe({f"{base}/{n}/{rel}": data for n in range(2, upto + 1) for rel, data in template.items()})


def counted(fs: Any, run: Any, base: str = "") -> Counter[str]:
    """The calls ``run`` makes to ``fs`` by method; a recursive listing of ``base`` itself is
    counted as ``find base``."""
    calls: Counter[str] = Counter()
    for name in WATCHED:
        real = getattr(fs, name)

        def call(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            whole = _name == "find" and str(args[0]).rstrip("/") == base
            calls["find base" if whole else _name] += 1
            return _real(*args, **kwargs)

        setattr(fs, name, call)
    try:
        run()
    finally:
        for name in WATCHED:
            fs.__dict__.pop(name, None)
    return calls


@pytest.mark.parametrize("same_content", [False, True], ids=["new content", "republish"])
def test_a_publish_makes_the_same_requests_at_1000_versions_as_at_10(
    memory: tuple[Any, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, same_content: bool
) -> None:
    monkeypatch.setattr(catalog, "COMPACT_AFTER", 10_000)  # compactions are counted on their own
    fs, root = memory
    made: dict[int, Counter[str]] = {}
    for kept in (10, 1000):
        base = f"{root}/kept-{kept}"
        fill(fs, base, tmp_path / str(kept), kept)
        first = make_model(tmp_path / str(kept), 1)
        publish(first, f"memory://{base}")  # indexes the history once
        source = first if same_content else make_model(tmp_path / str(kept), 2)
        result: list[Any] = []
        made[kept] = counted(fs, lambda: result.append(publish(source, f"memory://{base}")), base)  # noqa: B023
        assert (result[0].version, result[0].created) == (
            (kept + 1, False) if same_content else (kept + 2, True)
        )
    assert made[1000] == made[10], made
    assert "find base" not in made[1000]  # nothing lists every object under the base path


def test_a_base_path_from_before_the_index_is_indexed_once(memory: tuple[Any, str], tmp_path: Path) -> None:
    fs, base = memory
    fill(fs, base, tmp_path, 5)
    fs.rm(f"{base}/{content_index.INDEX_DIR}", recursive=True)  # as an earlier release left it
    again = publish(make_model(tmp_path, 0), f"memory://{base}")  # version 1's content
    assert (again.version, again.created) == (5, False)  # the newest version holding it
    assert content_index.is_ready(fs, base)
    assert content_index.holders(fs, base, again.manifest.content_key()) == [5, 4, 3, 2, 1]
    told: list[int] = []
    real = versions_of

    def spy(*args: Any, **kwargs: Any) -> Any:
        told.append(1)
        return real(*args, **kwargs)

    from airflow_savedmodel.storage import versions

    original = versions.versions_of
    versions.versions_of = spy
    try:
        assert publish(make_model(tmp_path, 0), f"memory://{base}").version == 5
    finally:
        versions.versions_of = original
    assert told == []  # indexed: no telling of every version any more


def test_the_index_is_a_hint_checked_against_the_version(tmp_path: Path) -> None:
    """A version the index names that is gone, or now holds other content, is never reused, and
    its marker is dropped; retention drops the markers of the versions it removes."""
    base = tmp_path / "serving"
    first = publish(make_model(tmp_path, 1), str(base))
    publish(make_model(tmp_path, 2), str(base))
    key = first.manifest.content_key()
    fs = fsspec.filesystem("file")
    shutil.rmtree(base / "1")  # removed by hand, behind retention's back
    assert content_index.holders(fs, str(base), key) == [1]
    again = publish(make_model(tmp_path, 1), str(base))
    assert (again.version, again.created) == (3, True)
    assert content_index.holders(fs, str(base), key) == [3]  # the stale marker dropped
    # Version 3 replaced by other content under the same number: not taken for the old content.
    publish(make_model(tmp_path, 4), str(base), version=3, overwrite=True)
    fourth = publish(make_model(tmp_path, 1), str(base))
    assert (fourth.version, fourth.created) == (4, True)
    assert content_index.holders(fs, str(base), key) == [4]
    for seed in (5, 6):
        publish(make_model(tmp_path, seed), str(base))
    gc(str(base), keep_last=1)
    assert content_index.holders(fs, str(base), key) == []  # version 4 removed, its marker too
