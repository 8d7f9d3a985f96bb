"""The LevelDB table format that TensorFlow uses for ``variables.index``.

A table is ``data blocks, metaindex block, index block, footer``. Each block is a run of
prefix-compressed entries followed by a restart array, then a 5-byte trailer (compression
type and masked crc32c). Readers accept uncompressed and Snappy blocks; the writer produces
uncompressed blocks laid out exactly as TensorFlow's table builder does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

from airflow_savedmodel.errors import ChecksumError, FormatError
from airflow_savedmodel.format import snappy, varint
from airflow_savedmodel.format.crc import crc32c, mask, unmask

MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
TRAILER_SIZE = 5
NO_COMPRESSION = 0
SNAPPY_COMPRESSION = 1
BLOCK_SIZE = 262144
DATA_RESTART_INTERVAL = 16


def _decode_handle(buf: bytes, pos: int, where: str) -> tuple[int, int, int]:
    offset, pos = varint.decode(buf, pos, where)
    size, pos = varint.decode(buf, pos, where)
    return offset, size, pos


def _encode_handle(offset: int, size: int) -> bytes:
    return varint.encode(offset) + varint.encode(size)


def _read_block(data: bytes, offset: int, size: int, path: str, what: str) -> bytes:
    where = f"{path} ({what} at offset {offset})"
    limit = len(data) - FOOTER_SIZE
    if offset < 0 or size < 0 or offset + size + TRAILER_SIZE > limit:
        raise FormatError(f"{what} [{offset}, +{size}) lies outside the table of {len(data)} bytes", path)
    block = data[offset : offset + size]
    ctype = data[offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    actual = crc32c(data[offset : offset + size + 1])
    if actual != unmask(stored):
        raise ChecksumError(f"{what} at offset {offset}: block checksum mismatch", path)
    if ctype == NO_COMPRESSION:
        return block
    if ctype == SNAPPY_COMPRESSION:
        return snappy.decompress(block, where)
    raise FormatError(f"{what} at offset {offset}: unknown compression type {ctype}", path)


def _block_entries(block: bytes, path: str, what: str) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise FormatError(f"{what}: block of {len(block)} bytes is too short", path)
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    if num_restarts * 4 + 4 > len(block):
        raise FormatError(f"{what}: {num_restarts} restart points do not fit the block", path)
    end = len(block) - 4 - 4 * num_restarts
    where = f"{path} ({what})"
    pos = 0
    key = b""
    while pos < end:
        shared, pos = varint.decode(block, pos, where, max_bytes=5)
        unshared, pos = varint.decode(block, pos, where, max_bytes=5)
        vlen, pos = varint.decode(block, pos, where, max_bytes=5)
        if shared > len(key):
            raise FormatError(f"{what}: entry shares {shared} bytes of a {len(key)}-byte key", path)
        if pos + unshared + vlen > end:
            raise FormatError(f"{what}: entry runs past the end of the block", path)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + vlen]
        pos += vlen


def read_table(data: bytes, path: str) -> Iterator[tuple[bytes, bytes]]:
    """Yield every ``(key, value)`` of a table held in memory, in key order, checking structure and CRCs."""
    if len(data) < FOOTER_SIZE:
        raise FormatError(f"file of {len(data)} bytes is too short for a table footer", path)
    footer = data[-FOOTER_SIZE:]
    lo, hi = struct.unpack_from("<II", footer, 40)
    if (hi << 32) | lo != MAGIC:
        raise FormatError("not an sstable (bad magic number)", path)
    _, _, pos = _decode_handle(footer, 0, f"{path} (footer)")
    index_offset, index_size, _ = _decode_handle(footer, pos, f"{path} (footer)")
    index = _read_block(data, index_offset, index_size, path, "index block")
    previous: bytes | None = None
    for _, handle in _block_entries(index, path, "index block"):
        offset, size, _ = _decode_handle(handle, 0, f"{path} (index entry)")
        block = _read_block(data, offset, size, path, "data block")
        for key, value in _block_entries(block, path, f"data block at offset {offset}"):
            if previous is not None and key <= previous:
                raise FormatError(f"keys out of order: {key!r} after {previous!r}", path)
            previous = key
            yield key, value


class _BlockBuilder:
    def __init__(self, restart_interval: int) -> None:
        self.interval = restart_interval
        self.buf = bytearray()
        self.restarts = [0]
        self.counter = 0
        self.last_key = b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.counter < self.interval:
            limit = min(len(self.last_key), len(key))
            while shared < limit and self.last_key[shared] == key[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buf))
            self.counter = 0
        self.buf += varint.encode(shared) + varint.encode(len(key) - shared) + varint.encode(len(value))
        self.buf += key[shared:] + value
        self.last_key = key
        self.counter += 1

    def size_estimate(self) -> int:
        return len(self.buf) + 4 * len(self.restarts) + 4

    def finish(self) -> bytes:
        tail = b"".join(struct.pack("<I", r) for r in self.restarts)
        return bytes(self.buf) + tail + struct.pack("<I", len(self.restarts))

    def empty(self) -> bool:
        return not self.buf


def _shortest_separator(start: bytes, limit: bytes) -> bytes:
    n = min(len(start), len(limit))
    i = 0
    while i < n and start[i] == limit[i]:
        i += 1
    if i < n:
        byte = start[i]
        if byte < 0xFF and byte + 1 < limit[i]:
            return start[:i] + bytes([byte + 1])
    return start


def _short_successor(key: bytes) -> bytes:
    for i, byte in enumerate(key):
        if byte != 0xFF:
            return key[:i] + bytes([byte + 1])
    return key


def build_table(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Serialize strictly increasing ``(key, value)`` pairs as TensorFlow's table builder does."""
    out = bytearray()
    index = _BlockBuilder(1)
    block = _BlockBuilder(DATA_RESTART_INTERVAL)
    pending: tuple[bytes, int, int] | None = None  # last key of the flushed block and its handle

    def write_block(contents: bytes) -> tuple[int, int]:
        offset = len(out)
        out.extend(contents)
        out.append(NO_COMPRESSION)
        out.extend(struct.pack("<I", mask(crc32c(contents + bytes([NO_COMPRESSION])))))
        return offset, len(contents)

    def flush() -> None:
        nonlocal block, pending
        if block.empty():
            return
        offset, size = write_block(block.finish())
        pending = (block.last_key, offset, size)
        block = _BlockBuilder(DATA_RESTART_INTERVAL)

    last: bytes | None = None
    for key, value in items:
        if last is not None and key <= last:
            raise ValueError(f"table keys must be strictly increasing: {key!r} after {last!r}")
        if len(key) + len(value) >= 2 * BLOCK_SIZE:
            flush()
        if pending is not None:
            index.add(_shortest_separator(pending[0], key), _encode_handle(pending[1], pending[2]))
            pending = None
        block.add(key, value)
        last = key
        if block.size_estimate() >= BLOCK_SIZE:
            flush()
    flush()
    if pending is not None:
        index.add(_short_successor(pending[0]), _encode_handle(pending[1], pending[2]))
    meta_offset, meta_size = write_block(_BlockBuilder(DATA_RESTART_INTERVAL).finish())
    index_offset, index_size = write_block(index.finish())
    footer = _encode_handle(meta_offset, meta_size) + _encode_handle(index_offset, index_size)
    footer = footer.ljust(40, b"\0") + struct.pack("<II", MAGIC & 0xFFFFFFFF, MAGIC >> 32)
    out.extend(footer)
    return bytes(out)
