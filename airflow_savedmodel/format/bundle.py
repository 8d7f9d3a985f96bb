"""Tensor bundles: ``variables.index`` plus ``variables.data-NNNNN-of-NNNNN`` shards.

The index is an sstable mapping tensor names to BundleEntryProto records (the empty key holds
the BundleHeaderProto); the shards hold raw tensor bytes. Reading is lazy, one tensor at a
time, and every tensor is checked against its crc32c.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from fsspec import AbstractFileSystem

from airflow_savedmodel import location
from airflow_savedmodel.errors import ChecksumError, FormatError, MissingFileError, VariableNotFoundError
from airflow_savedmodel.format import dtypes, ordered_code, protoio, sstable, varint
from airflow_savedmodel.format.crc import crc32c, mask, unmask
from airflow_savedmodel.protos import tensor_bundle_pb2, trackable_object_graph_pb2, types_pb2

if TYPE_CHECKING:
    import numpy as np

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
BUNDLE_VERSION = 1
MAX_SHARDS = 100_000
_HEADER_KEY = b""


def index_path(prefix: str) -> str:
    return prefix + ".index"


def data_path(prefix: str, shard: int, num_shards: int) -> str:
    return f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"


@dataclass(frozen=True)
class BundleEntry:
    """What the index says about one tensor."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int
    slices: tuple[tuple[tuple[int, int], ...], ...] = field(default=())

    @property
    def dtype_name(self) -> str:
        return dtypes.name(self.dtype)

    @property
    def num_elements(self) -> int:
        return math.prod(self.shape)

    @property
    def partitioned(self) -> bool:
        return bool(self.slices)


def _extents(slice_proto: Any) -> tuple[tuple[int, int], ...]:
    return tuple((e.start, e.length) if e.HasField("length") else (0, -1) for e in slice_proto.extent)


class BundleReader:
    """An open tensor bundle. Use as a context manager, or call :meth:`close`, to release shard handles."""

    def __init__(self, fs: AbstractFileSystem, prefix: str) -> None:
        self.fs = fs
        self.prefix = prefix
        self.index_file = index_path(prefix)
        self.root = posixpath.dirname(posixpath.dirname(prefix.rstrip("/")))  # the model directory
        try:
            raw = location.read_file(fs, self.index_file, root=self.root)
        except MissingFileError:
            raise MissingFileError("variables index does not exist", self.index_file) from None
        self.index_bytes: bytes = raw
        self._entries: dict[str, BundleEntry] = {}
        self._slice_entries: dict[bytes, BundleEntry] = {}
        self._handles: dict[int, IO[bytes]] = {}
        self._shard_sizes: dict[int, int] = {}
        items = sstable.read_table(raw, self.index_file)
        first = next(items, None)
        if first is None or first[0] != _HEADER_KEY:
            raise FormatError("index has no header entry", self.index_file)
        self.header = protoio.parse_binary(
            tensor_bundle_pb2.BundleHeaderProto, first[1], self.index_file, "header entry"
        )
        self._check_header()
        for key, value in items:
            proto = protoio.parse_binary(
                tensor_bundle_pb2.BundleEntryProto, value, self.index_file, f"entry {key!r}"
            )
            name = key.decode("utf-8", "backslashreplace")
            entry = self._entry(name, proto)
            if key.startswith(b"\x00"):
                self._slice_entries[key] = entry
            else:
                self._entries[name] = entry

    def _check_header(self) -> None:
        header = self.header
        if not 1 <= header.num_shards <= MAX_SHARDS:
            raise FormatError(f"header declares {header.num_shards} shards", self.index_file)
        version = header.version
        if version.min_consumer > BUNDLE_VERSION or BUNDLE_VERSION in version.bad_consumers:
            raise FormatError(
                f"bundle version {version.producer} needs a reader of version {version.min_consumer}",
                self.index_file,
            )

    def _entry(self, name: str, proto: Any) -> BundleEntry:
        shape = tuple(d.size for d in proto.shape.dim)
        if proto.shape.unknown_rank or any(d < 0 for d in shape):
            raise FormatError(f"tensor {name!r} has invalid shape {list(shape)}", self.index_file)
        if math.prod(d for d in shape if d) >= 1 << 62:
            raise FormatError(
                f"tensor {name!r} has shape {list(shape)}, larger than any tensor can be", self.index_file
            )
        if not proto.slices and not 0 <= proto.shard_id < self.header.num_shards:
            raise FormatError(
                f"tensor {name!r} is in shard {proto.shard_id} of {self.header.num_shards}", self.index_file
            )
        if proto.offset < 0 or proto.size < 0:
            raise FormatError(
                f"tensor {name!r} has offset {proto.offset} and size {proto.size}", self.index_file
            )
        return BundleEntry(
            name=name,
            dtype=proto.dtype,
            shape=shape,
            shard_id=proto.shard_id,
            offset=proto.offset,
            size=proto.size,
            crc32c=proto.crc32c,
            slices=tuple(_extents(s) for s in proto.slices),
        )

    def __enter__(self) -> BundleReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    @property
    def num_shards(self) -> int:
        return int(self.header.num_shards)

    @property
    def big_endian(self) -> bool:
        return bool(self.header.endianness == tensor_bundle_pb2.BundleHeaderProto.BIG)

    def names(self) -> list[str]:
        """Tensor names in index (bytewise) order, without the per-slice entries."""
        return list(self._entries)

    def entries(self) -> list[BundleEntry]:
        return list(self._entries.values())

    def entry(self, name: str) -> BundleEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise VariableNotFoundError(f"no tensor named {name!r} in the bundle", self.index_file) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def slice_entries(self, name: str) -> list[BundleEntry]:
        """The stored slices of a partitioned tensor (empty for ordinary tensors)."""
        entry = self.entry(name)
        found = (self._slice_entries.get(ordered_code.slice_key(name, extents)) for extents in entry.slices)
        return [e for e in found if e is not None]

    def stored_size(self, name: str) -> int:
        """Bytes the tensor occupies in the data shards (summed over slices when partitioned)."""
        entry = self.entry(name)
        if not entry.partitioned:
            return entry.size
        return sum(e.size for e in self.slice_entries(name))

    def data_files(self) -> list[str]:
        return [data_path(self.prefix, i, self.num_shards) for i in range(self.num_shards)]

    def data_files_at(self, shard: int) -> str:
        return data_path(self.prefix, shard, self.num_shards)

    def present_shards(self) -> set[int]:
        """Shard numbers whose data file of this bundle exists, from one listing of the
        directory: work bounded by what is there, not by the count the header claims."""
        folder, _, stem = self.prefix.rpartition("/")
        pattern = re.compile(rf"^{re.escape(stem)}\.data-(\d{{5}})-of-{self.num_shards:05d}$")
        found = set()
        for name, _ in location.children(self.fs, folder or ".", refresh=True):
            match = pattern.match(name)  # any kind: shard_size says what is wrong with one that is no file
            if match and int(match.group(1)) < self.num_shards:
                found.add(int(match.group(1)))
        return found

    def shard_size(self, shard: int) -> int:
        if shard not in self._shard_sizes:
            path = data_path(self.prefix, shard, self.num_shards)
            if location.is_local(self.fs):
                problem = location.file_kind_problem(path, self.root)
                if problem:
                    raise FormatError(problem, path)
            try:
                self._shard_sizes[shard] = int(self.fs.size(path))
            except FileNotFoundError:
                raise MissingFileError("data shard does not exist", path) from None
        return self._shard_sizes[shard]

    def _read_bytes(self, entry: BundleEntry) -> bytes:
        path = data_path(self.prefix, entry.shard_id, self.num_shards)
        if entry.offset + entry.size > self.shard_size(entry.shard_id):
            raise FormatError(
                f"tensor {entry.name!r} at [{entry.offset}, +{entry.size}) extends beyond the shard "
                f"of {self.shard_size(entry.shard_id)} bytes",
                path,
            )
        handle = self._handles.get(entry.shard_id)
        if handle is None:
            try:
                handle = self.fs.open(path, "rb")
            except FileNotFoundError:
                raise MissingFileError("data shard does not exist", path) from None
            self._handles[entry.shard_id] = handle
        handle.seek(entry.offset)
        data = handle.read(entry.size)
        if len(data) != entry.size:
            raise FormatError(f"tensor {entry.name!r}: short read of {len(data)} of {entry.size} bytes", path)
        return bytes(data)

    def read(self, name: str) -> np.ndarray:
        """The tensor's value as a numpy array (object array of bytes for strings)."""
        entry = self.entry(name)
        if entry.slices:
            return self._assemble(entry)
        return self._read_entry(entry)

    def _read_entry(self, entry: BundleEntry) -> np.ndarray:
        import numpy as np

        where = data_path(self.prefix, entry.shard_id, self.num_shards)
        if entry.dtype == dtypes.STRING:
            return self._decode_strings(entry, self._read_bytes(entry), where)
        if entry.dtype == dtypes.VARIANT:
            return self._decode_variants(entry, self._read_bytes(entry), where)
        np_dtype = dtypes.to_numpy(entry.dtype)
        if np_dtype is None:
            raise FormatError(
                f"tensor {entry.name!r} has dtype {entry.dtype_name}, which has no stored value", where
            )
        expected = entry.num_elements * np_dtype.itemsize
        if expected != entry.size:
            raise FormatError(
                f"tensor {entry.name!r}: invalid size {entry.size} for {entry.dtype_name}{list(entry.shape)} "
                f"(expected {expected})",
                where,
            )
        data = self._read_bytes(entry)
        self._check_crc(entry, crc32c(data), where)
        array = np.frombuffer(data, dtype=np_dtype)
        if self.big_endian and np_dtype.itemsize > 1:
            array = array.byteswap()
        return array.reshape(entry.shape)

    def _check_crc(self, entry: BundleEntry, actual: int, where: str) -> None:
        if actual != unmask(entry.crc32c):
            raise ChecksumError(f"tensor {entry.name!r}: data checksum mismatch", where)

    def _decode_strings(self, entry: BundleEntry, data: bytes, where: str) -> np.ndarray:
        import numpy as np

        count = entry.num_elements
        if count + 4 > len(data):
            raise FormatError(
                f"tensor {entry.name!r}: {count} strings cannot fit in {len(data)} bytes", where
            )
        lengths = []
        pos = 0
        for i in range(count):
            length, pos = varint.decode(data, pos, f"{where} (tensor {entry.name!r})")
            if length > len(data):
                raise FormatError(
                    f"tensor {entry.name!r}: string {i} claims {length} bytes; the entry holds {len(data)}",
                    where,
                )
            lengths.append(length)
        if pos + 4 > len(data):
            raise FormatError(f"tensor {entry.name!r}: string lengths run past the entry", where)
        crc = 0
        for length in lengths:
            crc = crc32c(struct.pack("<I" if length <= 0xFFFFFFFF else "<Q", length), crc)
        (stored,) = struct.unpack_from("<I", data, pos)
        if unmask(stored) != crc:
            raise ChecksumError(f"tensor {entry.name!r}: string length checksum mismatch", where)
        crc = crc32c(data[pos : pos + 4], crc)
        pos += 4
        if pos + sum(lengths) != len(data):
            raise FormatError(
                f"tensor {entry.name!r}: string lengths add up to {sum(lengths)}, entry holds {len(data) - pos}",
                where,
            )
        self._check_crc(entry, crc32c(data[pos:], crc), where)
        out = np.empty(count, dtype=object)
        for i, length in enumerate(lengths):
            out[i] = data[pos : pos + length]
            pos += length
        return out.reshape(entry.shape)

    def _decode_variants(self, entry: BundleEntry, data: bytes, where: str) -> np.ndarray:
        import numpy as np

        count = entry.num_elements
        if count > len(data):
            raise FormatError(
                f"tensor {entry.name!r}: {count} variants cannot fit in {len(data)} bytes", where
            )
        out = np.empty(count, dtype=object)
        pos = 0
        what = f"{where} (tensor {entry.name!r})"
        for i in range(count):
            length, body = varint.decode(data, pos, what)
            if body + length + 4 > len(data):
                raise FormatError(f"tensor {entry.name!r}: variant element {i} runs past the entry", where)
            crc = crc32c(data[body : body + length], crc32c(struct.pack("<Q", length)))
            (stored,) = struct.unpack_from("<I", data, body + length)
            if unmask(stored) != crc:
                raise ChecksumError(f"tensor {entry.name!r}: variant element {i} checksum mismatch", where)
            out[i] = data[body : body + length]
            pos = body + length + 4
        if pos != len(data):
            raise FormatError(f"tensor {entry.name!r}: {len(data) - pos} bytes after the last variant", where)
        return out.reshape(entry.shape)

    def slice_plan(self, entry: BundleEntry) -> list[tuple[tuple[slice, ...], BundleEntry]]:
        """Where each stored slice of a partitioned tensor goes, checked against the index alone
        (nothing is allocated): the slices lie inside the full shape, each stored slice has its
        region's shape (and, for numbers, its bytes), and together they cover the tensor."""
        import numpy as np

        itemsize = (dtypes.to_numpy(entry.dtype) or np.dtype(object)).itemsize
        numeric = dtypes.to_numpy(entry.dtype) is not None
        covered = 0
        parts = []
        for extents in entry.slices:
            if len(extents) != len(entry.shape):
                raise FormatError(
                    f"tensor {entry.name!r}: slice rank differs from its shape", self.index_file
                )
            region = []
            for (start, length), dim in zip(extents, entry.shape, strict=True):
                stop = dim if length < 0 else start + length
                if not 0 <= start <= stop <= dim:
                    raise FormatError(
                        f"tensor {entry.name!r}: slice {extents} outside {entry.shape}", self.index_file
                    )
                region.append(slice(start, stop))
            part = self._slice_entries.get(ordered_code.slice_key(entry.name, extents))
            if part is None:
                raise FormatError(
                    f"tensor {entry.name!r}: slice {extents} has no stored data", self.index_file
                )
            extent = tuple(s.stop - s.start for s in region)
            if part.shape != extent or (numeric and part.size != math.prod(extent) * itemsize):
                raise FormatError(
                    f"tensor {entry.name!r}: slice {extents} covers {list(extent)} but its stored data "
                    f"has shape {list(part.shape)} ({part.size} bytes)",
                    self.index_file,
                )
            covered += math.prod(extent)
            parts.append((tuple(region), part))
        if covered != entry.num_elements:
            raise FormatError(
                f"tensor {entry.name!r}: slices cover {covered} of {entry.num_elements} elements",
                self.index_file,
            )
        return parts

    def _assemble(self, entry: BundleEntry) -> np.ndarray:
        import numpy as np

        parts = self.slice_plan(entry)  # bounds the allocation by the bytes the slices hold
        out = np.empty(entry.shape, dtype=dtypes.to_numpy(entry.dtype) or np.dtype(object))
        for bounds, part in parts:
            value = self._read_entry(part)
            if value.shape != tuple(s.stop - s.start for s in bounds):
                raise FormatError(
                    f"tensor {entry.name!r}: slice data of shape {value.shape}", self.index_file
                )
            out[bounds] = value
        return out

    def object_graph(self) -> Any | None:
        """The TF2 TrackableObjectGraph stored with the variables, or None for TF1 bundles."""
        if OBJECT_GRAPH_KEY not in self._entries:
            return None
        value = self.read(OBJECT_GRAPH_KEY)
        if value.dtype != object or value.size != 1:
            raise FormatError(f"{OBJECT_GRAPH_KEY} is not a string scalar", self.index_file)
        return protoio.parse_binary(
            trackable_object_graph_pb2.TrackableObjectGraph,
            value.reshape(()).item(),
            self.index_file,
            OBJECT_GRAPH_KEY,
        )


def encode_tensor(array: np.ndarray, dtype: int) -> tuple[bytes, int]:
    """``(bytes, crc32c)`` of one tensor as a bundle data shard stores it."""
    import numpy as np

    if dtypes.base(dtype) == dtypes.STRING:
        return _encode_strings(array)
    np_dtype = dtypes.to_numpy(dtype)
    if np_dtype is None:
        raise ValueError(f"cannot store tensors of dtype {dtypes.name(dtype)} in a bundle")
    data = np.ascontiguousarray(array, dtype=np_dtype).tobytes()
    return data, crc32c(data)


def _encode_strings(array: np.ndarray) -> tuple[bytes, int]:
    import numpy as np

    items = [
        x.encode() if isinstance(x, str) else bytes(x) for x in np.asarray(array, dtype=object).reshape(-1)
    ]
    crc = 0
    for item in items:
        crc = crc32c(struct.pack("<I" if len(item) <= 0xFFFFFFFF else "<Q", len(item)), crc)
    length_crc = struct.pack("<I", mask(crc))
    crc = crc32c(length_crc, crc)
    body = b"".join(items)
    crc = crc32c(body, crc)
    return b"".join(varint.encode(len(i)) for i in items) + length_crc + body, crc


class BundleWriter:
    """Writes one single-shard bundle: tensor bytes stream to the data file as they are added,
    the index is written by :meth:`finish`. The output is byte-identical to TensorFlow's for
    the same tensors added in the same order."""

    def __init__(self, fs: AbstractFileSystem, prefix: str) -> None:
        self.fs = fs
        self.prefix = prefix
        self._entries: dict[bytes, tensor_bundle_pb2.BundleEntryProto] = {}
        self._offset = 0
        parent = prefix.rsplit("/", 1)[0]
        if parent:
            fs.makedirs(parent, exist_ok=True)
        self._data = fs.open(data_path(prefix, 0, 1), "wb")
        self._done = False

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()

    def _shape_entry(self, shape: tuple[int, ...], dtype: int) -> tensor_bundle_pb2.BundleEntryProto:
        entry = tensor_bundle_pb2.BundleEntryProto(dtype=types_pb2.DataType.ValueType(dtype))
        entry.shape.SetInParent()
        for dim in shape:
            entry.shape.dim.add(size=dim)
        return entry

    def _append(self, key: bytes, array: np.ndarray, dtype: int) -> tensor_bundle_pb2.BundleEntryProto:
        if key in self._entries:
            raise ValueError(f"duplicate tensor name {key!r}")
        data, crc = encode_tensor(array, dtype)
        entry = self._shape_entry(tuple(array.shape), dtype)
        entry.offset = self._offset
        entry.size = len(data)
        entry.crc32c = mask(crc)
        self._data.write(data)
        self._offset += len(data)
        self._entries[key] = entry
        return entry

    def add(self, name: str, value: Any, dtype: int | None = None) -> None:
        """Append a tensor; ``dtype`` defaults to the numpy dtype's (bytes/str/object arrays are strings)."""
        import numpy as np

        array = np.asarray(value, dtype=object) if dtype == dtypes.STRING else np.asarray(value)
        tf_dtype = dtype if dtype is not None else dtypes.from_numpy(array.dtype)
        if tf_dtype in (dtypes.RESOURCE, dtypes.VARIANT):
            raise ValueError(f"tensor {name!r}: {dtypes.name(tf_dtype)} tensors are not stored in bundles")
        self._append(name.encode(), array, tf_dtype)

    def add_slice(
        self, name: str, full_shape: tuple[int, ...], extents: tuple[tuple[int, int], ...], value: Any
    ) -> None:
        """Append one slice of a partitioned tensor (``extents``: ``(start, length)`` per dim)."""
        import numpy as np

        array = np.asarray(value)
        tf_dtype = dtypes.from_numpy(array.dtype)
        key = name.encode()
        full = self._entries.get(key)
        if full is None:
            full = self._shape_entry(tuple(full_shape), tf_dtype)
            self._entries[key] = full
        elif not full.slices:
            raise ValueError(f"tensor {name!r} was added whole; it cannot also have slices")
        spec = full.slices.add()
        for start, length in extents:
            extent = spec.extent.add()
            if length >= 0:
                extent.start = start
                extent.length = length
        self._append(ordered_code.slice_key(name, extents), array, tf_dtype)

    def finish(self) -> None:
        """Close the data shard and write variables.index."""
        if self._done:
            return
        self._data.close()
        header = tensor_bundle_pb2.BundleHeaderProto(num_shards=1)
        header.version.producer = BUNDLE_VERSION
        items = [(b"", header.SerializeToString(deterministic=True))]
        items += [(k, self._entries[k].SerializeToString(deterministic=True)) for k in sorted(self._entries)]
        with self.fs.open(index_path(self.prefix), "wb") as f:
            f.write(sstable.build_table(items))
        self._done = True

    def abort(self) -> None:
        """Close and remove what was written so far."""
        self._done = True
        self._data.close()
        for path in (data_path(self.prefix, 0, 1), index_path(self.prefix)):
            if self.fs.exists(path):
                self.fs.rm(path)


def write_bundle(url: str, tensors: dict[str, Any], storage_options: dict[str, Any] | None = None) -> None:
    """Write ``{name: array}`` as a bundle at prefix ``url`` (e.g. ``.../variables/variables``)."""
    fs, prefix = location.resolve(url, storage_options)
    with BundleWriter(fs, prefix) as writer:
        for name, value in tensors.items():
            writer.add(name, value)


# Deep verification splits the stored bytes into about this many bytes per task, checked on a few
# threads: the crc32c releases the GIL on large blocks and file reads release it too, so separate
# ranges of one shard (or separate shards) are read and checked on separate cores.
_VERIFY_TASK_BYTES = 32 << 20
_VERIFY_WORKERS = max(1, min(4, os.cpu_count() or 1))


def _check_run(
    fs: AbstractFileSystem, path: str, entries: list[BundleEntry], chunk: int
) -> list[tuple[BundleEntry, str]]:
    """Check the crc32c of each entry in ``entries`` (in offset order) through one open handle."""
    problems: list[tuple[BundleEntry, str]] = []
    buffer = memoryview(bytearray(chunk))
    if location.is_local(fs):
        fd = os.open(fs._strip_protocol(path), os.O_RDONLY)
        try:
            for entry in entries:
                crc, reached = location.fd_crc32c(fd, entry.offset, entry.offset + entry.size, buffer=buffer)
                if reached != entry.offset + entry.size or crc != unmask(entry.crc32c):
                    problems.append((entry, "data checksum mismatch"))
        finally:
            os.close(fd)
        return problems
    with fs.open(path, "rb") as handle:
        for entry in entries:
            handle.seek(entry.offset)
            crc, left = 0, entry.size
            while left:
                n = handle.readinto(buffer[: min(chunk, left)])
                if not n:
                    break
                crc = crc32c(buffer[:n], crc)
                left -= n
            if left or crc != unmask(entry.crc32c):
                problems.append((entry, "data checksum mismatch"))
    return problems


def _runs(entries: list[BundleEntry], task_bytes: int) -> list[list[BundleEntry]]:
    """Split offset-ordered ``entries`` into runs of about ``task_bytes`` each."""
    runs: list[list[BundleEntry]] = [[]]
    size = 0
    for entry in entries:
        if size >= task_bytes:
            runs.append([])
            size = 0
        runs[-1].append(entry)
        size += entry.size
    return [run for run in runs if run]


def verify_entries(reader: BundleReader, chunk: int = 1 << 20) -> list[tuple[BundleEntry, str]]:
    """Check every stored tensor's crc32c, streaming each shard with bounded memory.

    Numeric tensors are checked in runs of about 32 MB on a few threads (each run through its own
    handle, ``chunk`` bytes at a time); strings and variants, whose checksums cover decoded
    lengths, are decoded by the reader. Returns ``(entry, problem)`` for each entry that fails, in
    shard and offset order; layout problems (missing shard, data beyond the end) are reported the
    same way rather than raised.
    """
    problems: list[tuple[BundleEntry, str]] = []
    stored = [e for e in [*reader.entries(), *reader._slice_entries.values()] if not e.partitioned]
    by_shard: dict[int, list[BundleEntry]] = {}
    for entry in stored:
        by_shard.setdefault(entry.shard_id, []).append(entry)
    tasks: list[tuple[str, list[BundleEntry]]] = []
    for shard, entries in sorted(by_shard.items()):
        path = data_path(reader.prefix, shard, reader.num_shards)
        try:
            size = reader.shard_size(shard)
        except MissingFileError:
            problems += [(e, "data shard does not exist") for e in entries]
            continue
        numeric: list[BundleEntry] = []
        for entry in sorted(entries, key=lambda e: e.offset):
            if entry.offset + entry.size > size:
                problems.append((entry, f"extends beyond the shard of {size} bytes"))
            elif entry.dtype in (dtypes.STRING, dtypes.VARIANT):
                try:
                    reader._read_entry(entry)
                except (ChecksumError, FormatError) as exc:
                    problems.append((entry, exc.problem))
            else:
                numeric.append(entry)
        tasks += [(path, run) for run in _runs(numeric, _VERIFY_TASK_BYTES)]
    if len(tasks) <= 1 or _VERIFY_WORKERS == 1:
        for path, run in tasks:
            problems += _check_run(reader.fs, path, run, chunk)
    else:
        with ThreadPoolExecutor(min(_VERIFY_WORKERS, len(tasks)), thread_name_prefix="verify") as pool:
            for found in pool.map(lambda task: _check_run(reader.fs, task[0], task[1], chunk), tasks):
                problems += found
    return sorted(problems, key=lambda p: (p[0].shard_id, p[0].offset))
