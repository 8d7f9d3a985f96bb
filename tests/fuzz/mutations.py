"""Structure-aware mutations of a SavedModel directory, for the fuzzer.

Each mutation edits one thing the way a broken or hostile producer would: a field of
saved_model.pb (integers to their edges, strings emptied, lengthened or made to escape, repeated
entries dropped or duplicated), a field of a variables.index entry (shape, dtype, offset, size,
shard, slices) with the sstable rebuilt around it, the bytes of any file (flips, truncation,
growth), or the kind of a file (a directory, a FIFO, a symlink to /dev/zero or out of the model).
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from airflow_savedmodel.format import sstable
from airflow_savedmodel.protos import meta_graph_pb2, tensor_bundle_pb2

INT_EDGES = [0, 1, -1, 2, 7, 255, 2**16, 2**31 - 1, -(2**31), 2**32 - 1, 2**40, 2**62, 2**63 - 1, -(2**63)]
_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}
STRINGS = ["", "x" * 4096, "../../../../etc/passwd", "/dev/zero", "a/b/../../..", "\x00", "ü" * 3, "DT_FLOAT"]


def _scalar_sites(
    message: Message, sites: list[tuple[Message, FieldDescriptor, int | None]], budget: int
) -> None:
    """(message, field, index or None) of scalar values, and repeated-message fields (index -1)."""
    for field, value in message.ListFields():
        if len(sites) >= budget:
            return
        repeated = field.is_repeated
        if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                items = list(value.values()) if hasattr(value, "values") else []
                for item in items:
                    if isinstance(item, Message):
                        _scalar_sites(item, sites, budget)
                continue
            if repeated:
                sites.append((message, field, -1))
                for item in value:
                    _scalar_sites(item, sites, budget)
            else:
                _scalar_sites(value, sites, budget)
        elif repeated:
            sites.extend((message, field, i) for i in range(min(len(value), 4)))
        else:
            sites.append((message, field, None))


def _new_scalar(rng: random.Random, field: FieldDescriptor, old: Any) -> Any:
    cpp = field.cpp_type
    if cpp in _RANGES:
        low, high = _RANGES[cpp]
        choices = [v for v in INT_EDGES if low <= v <= high]
        if isinstance(old, int):
            choices += [v for v in (old + 1, old - 1, old * 2, old * 1024) if low <= v <= high]
        return rng.choice(choices)
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        return rng.choice([0, 1, 2, 3, 19, 23, 101, 2**31 - 1])
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return not old
    if cpp in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        return rng.choice([0.0, -1.0, float("inf"), float("nan"), 1e38])
    if field.type == FieldDescriptor.TYPE_BYTES:
        if isinstance(old, bytes) and old and rng.random() < 0.5:
            data = bytearray(old)
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            return bytes(data)
        return rng.choice([b"", b"\xff" * 64, os.urandom(16), (old or b"") * 3])
    return rng.choice(STRINGS)


def mutate_message(rng: random.Random, message: Message) -> str:
    """One edit somewhere in ``message``; returns what was done."""
    sites: list[tuple[Message, FieldDescriptor, int | None]] = []
    _scalar_sites(message, sites, budget=200_000)
    if not sites:
        return "no fields"
    owner, field, index = rng.choice(sites)
    value = getattr(owner, field.name)
    if index == -1:  # a repeated message field: drop or duplicate one element
        if len(value) and rng.random() < 0.5:
            del value[rng.randrange(len(value))]
            return f"dropped one {field.full_name}"
        if len(value):
            value.add().CopyFrom(value[rng.randrange(len(value))])
        return f"duplicated one {field.full_name}"
    old = value[index] if index is not None else value
    new = _new_scalar(rng, field, old)
    try:
        if index is not None:
            value[index] = new
        else:
            setattr(owner, field.name, new)
    except (ValueError, TypeError):
        return f"left {field.full_name} (value refused by protobuf)"
    return f"{field.full_name} := {new!r}"[:160]


def _regular(path: Path) -> bool:
    """Only regular files are edited: reading a FIFO an earlier mutation made would block."""
    return path.is_file() and not path.is_symlink()


def mutate_saved_model(rng: random.Random, model: Path) -> str:
    path = model / "saved_model.pb"
    if not _regular(path):
        return mutate_bytes(rng, model)
    proto = meta_graph_pb2.SavedModel()
    proto.ParseFromString(path.read_bytes())
    done = mutate_message(rng, proto)
    path.write_bytes(proto.SerializeToString())
    return f"saved_model.pb: {done}"


def mutate_index(rng: random.Random, model: Path) -> str:
    path = model / "variables" / "variables.index"
    if not _regular(path):
        return mutate_bytes(rng, model)
    items = list(sstable.read_table(path.read_bytes(), str(path)))
    if not items:
        return "empty index"
    i = rng.randrange(len(items))
    key, value = items[i]
    if key == b"":
        proto: Message = tensor_bundle_pb2.BundleHeaderProto()
    else:
        proto = tensor_bundle_pb2.BundleEntryProto()
    proto.ParseFromString(value)
    if key != b"" and rng.random() < 0.4:  # the fields that drive allocation, to their edges
        entry = proto
        assert isinstance(entry, tensor_bundle_pb2.BundleEntryProto)
        choice = rng.choice(["dim", "size", "offset", "shard", "dtype", "slice"])
        if choice == "dim" and entry.shape.dim:
            entry.shape.dim[rng.randrange(len(entry.shape.dim))].size = rng.choice(INT_EDGES[:-1])
        elif choice == "size":
            entry.size = rng.choice([v for v in INT_EDGES if v >= -(2**63)])
        elif choice == "offset":
            entry.offset = rng.choice(INT_EDGES)
        elif choice == "shard":
            entry.shard_id = rng.choice([1, 2, 2**31 - 1, -1])
        elif choice == "dtype":
            entry.dtype = rng.choice([0, 7, 21, 20, 14, 101])
        else:
            extent = entry.slices.add().extent.add()
            extent.start, extent.length = rng.choice([(0, 2**40), (2**62, 1), (0, 0)])
        what = f"{choice} of {key!r}"
    else:
        what = mutate_message(rng, proto)
    items[i] = (key, proto.SerializeToString())
    path.write_bytes(sstable.build_table(items))
    return f"variables.index: {what}"[:200]


def _files(model: Path) -> list[Path]:
    return sorted(p for p in model.rglob("*") if _regular(p))


def mutate_bytes(rng: random.Random, model: Path) -> str:
    files = _files(model)
    target = rng.choice(files)
    data = bytearray(target.read_bytes())
    how = rng.choice(["flip", "truncate", "grow", "zero-run"])
    if how == "flip" and data:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == "truncate":
        del data[rng.randrange(len(data) + 1) :]
    elif how == "grow":
        data += os.urandom(rng.choice([1, 7, 4096]))
    elif data:
        start = rng.randrange(len(data))
        data[start : start + 64] = bytes(len(data[start : start + 64]))
    target.write_bytes(bytes(data))
    return f"{target.relative_to(model)}: {how}"


def mutate_kind(rng: random.Random, model: Path) -> str:
    target = rng.choice(_files(model))
    how = rng.choice(["directory", "fifo", "dev-zero", "outside", "dangling"])
    target.unlink()
    if how == "directory":
        target.mkdir()
    elif how == "fifo":
        os.mkfifo(target)
    elif how == "dev-zero":
        target.symlink_to("/dev/zero")
    elif how == "outside":
        target.symlink_to("/etc/hostname")
    else:
        target.symlink_to(model / "does-not-exist")
    return f"{target.relative_to(model)}: became a {how}"


MUTATIONS: list[tuple[float, Callable[[random.Random, Path], str]]] = [
    (0.45, mutate_saved_model),
    (0.25, mutate_index),
    (0.2, mutate_bytes),
    (0.1, mutate_kind),
]


def mutate(rng: random.Random, base: Path, into: Path) -> str:
    """A copy of the model at ``base`` in ``into`` with one to three mutations; what was done."""
    shutil.copytree(base, into, symlinks=True)
    done = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        kinds = [m for _, m in MUTATIONS]
        weights = [w for w, _ in MUTATIONS]
        try:
            done.append(rng.choices(kinds, weights)[0](rng, into))
        except Exception as exc:  # a mutation that cannot apply to this model (already broken)
            done.append(f"mutation skipped: {type(exc).__name__}")
    return "; ".join(done)
