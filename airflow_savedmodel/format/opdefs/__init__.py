"""Op registries of TensorFlow releases, shipped as gzipped OpLists (see scripts/gen_op_registry.py).

They supply OpDefs for ops a model's own ``stripped_op_list`` lacks, and tell which ops and
attrs an older TensorFlow Serving binary knows.
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources

from airflow_savedmodel.errors import NotFoundError
from airflow_savedmodel.protos import graph_pb2


def releases() -> list[str]:
    """Releases with a shipped registry, oldest first (``["2.12", ..., "2.21"]``)."""
    names = [p.name for p in resources.files(__name__).iterdir() if p.name.startswith("tf-")]
    found = [n[len("tf-") : -len(".pb.gz")] for n in names if n.endswith(".pb.gz")]
    return sorted(found, key=lambda v: tuple(int(x) for x in v.split(".")))


def latest() -> str:
    return releases()[-1]


def normalize(release: str) -> str:
    """``"2.15"``, ``"2.15.1"`` or ``"v2.15"`` -> ``"2.15"``."""
    parts = release.strip().lstrip("v").split(".")
    return ".".join(parts[:2])


@functools.cache
def registry(release: str | None = None) -> dict[str, graph_pb2.OpDef]:
    """op name -> OpDef for a release (default: the newest shipped)."""
    wanted = normalize(release) if release else latest()
    if wanted not in releases():
        raise NotFoundError(
            f"no op registry for TensorFlow {wanted}; shipped releases: {', '.join(releases())}"
        )
    data = gzip.decompress(resources.files(__name__).joinpath(f"tf-{wanted}.pb.gz").read_bytes())
    ops = graph_pb2.OpList.FromString(data)
    return {op.name: op for op in ops.op}
