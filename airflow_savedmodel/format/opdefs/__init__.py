"""Op and kernel registries of TensorFlow releases, shipped as package data (scripts/gen_op_registry.py).

Per release: ``tf-X.Y.pb.gz`` (gzipped OpList) supplies OpDefs for ops a model's own
``stripped_op_list`` lacks and tells which ops and attrs that release knows;
``tf-X.Y.kernels.pb.gz`` (gzipped KernelList) tells which ops it can run on CPU and GPU, for
which attr values; ``releases.json`` holds each release's GraphDef version range.
"""

from __future__ import annotations

import functools
import gzip
import json
from importlib import resources

from airflow_savedmodel.errors import NotFoundError
from airflow_savedmodel.protos import graph_pb2, kernel_def_pb2


@functools.cache
def _names() -> tuple[str, ...]:
    return tuple(p.name for p in resources.files(__name__).iterdir() if p.name.startswith("tf-"))


def releases() -> list[str]:
    """Releases with a shipped registry, oldest first (``["2.12", ..., "2.21"]``)."""
    names = _names()
    found = [n[len("tf-") : -len(".pb.gz")] for n in names if n.endswith(".pb.gz") and ".kernels." not in n]
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def latest() -> str:
    return releases()[-1]


def normalize(release: str) -> str:
    """``"2.15"``, ``"2.15.1"`` or ``"v2.15"`` -> ``"2.15"``."""
    parts = release.strip().lstrip("v").split(".")
    return ".".join(parts[:2])


def _shipped(release: str | None) -> str:
    wanted = normalize(release) if release else latest()
    if wanted not in releases():
        raise NotFoundError(
            f"no op registry for TensorFlow {wanted}; shipped releases: {', '.join(releases())}"
        )
    return wanted


@functools.cache
def kernels(release: str | None = None) -> dict[str, list[kernel_def_pb2.KernelDef]]:
    """op name -> its kernels (CPU, GPU and DEFAULT ones) in a release (default: the newest)."""
    wanted = _shipped(release)
    data = gzip.decompress(resources.files(__name__).joinpath(f"tf-{wanted}.kernels.pb.gz").read_bytes())
    found: dict[str, list[kernel_def_pb2.KernelDef]] = {}
    for kernel in kernel_def_pb2.KernelList.FromString(data).kernel:
        found.setdefault(kernel.op, []).append(kernel)
    return found


@functools.cache
def constrained_attrs(release: str | None = None) -> dict[str, tuple[str, ...]]:
    """op name -> the attrs any of its kernels in a release constrains (sorted)."""
    return {
        op: tuple(sorted({c.name for k in found for c in k.constraint}))
        for op, found in kernels(release).items()
    }


@functools.cache
def function_attrs() -> dict[str, tuple[str, ...]]:
    """op name -> its function-valued attrs (``func`` or ``list(func)``) in the newest release
    (an op it lacks has its attrs scanned one by one: see reach.called)."""
    return {
        op.name: tuple(a.name for a in op.attr if a.type in ("func", "list(func)"))
        for op in registry().values()
    }


@functools.cache
def graph_versions(release: str | None = None) -> tuple[int, int]:
    """``(GraphDef version, oldest producer accepted)`` of a release (TF_GRAPH_DEF_VERSION and
    TF_GRAPH_DEF_VERSION_MIN_PRODUCER): a graph loads when its min_consumer is at most the first,
    its producer at least the second, and the first is not among its bad_consumers."""
    wanted = _shipped(release)
    table = json.loads(resources.files(__name__).joinpath("releases.json").read_text())
    entry = table[wanted]
    return int(entry["graph_def_version"]), int(entry["graph_def_version_min_producer"])


@functools.cache
def registry(release: str | None = None) -> dict[str, graph_pb2.OpDef]:
    """op name -> OpDef for a release (default: the newest shipped)."""
    wanted = _shipped(release)
    data = gzip.decompress(resources.files(__name__).joinpath(f"tf-{wanted}.pb.gz").read_bytes())
    ops = graph_pb2.OpList.FromString(data)
    return {op.name: op for op in ops.op}
