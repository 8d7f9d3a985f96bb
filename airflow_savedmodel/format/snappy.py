"""Decompression of raw Snappy blocks, found in tensor-bundle indexes written by some TF builds."""

from __future__ import annotations

from airflow_savedmodel.errors import FormatError
from airflow_savedmodel.format import varint

# A Snappy copy element expands at most 64 bytes out of 2; anything claiming more is corrupt.
_MAX_EXPANSION = 32


def decompress(data: bytes | memoryview, where: str) -> bytes:
    """Decode one raw (unframed) Snappy block, checking every length and offset."""
    expected, pos = varint.decode(data, 0, where, max_bytes=5)
    if expected > _MAX_EXPANSION * len(data) + 64:
        raise FormatError(f"snappy block claims {expected} bytes from {len(data)}", where)
    out = bytearray()
    end = len(data)
    while pos < end:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            length = (tag >> 2) + 1
            if length > 60:
                extra = length - 60
                if pos + extra > end:
                    raise FormatError("truncated snappy literal length", where)
                length = int.from_bytes(data[pos : pos + extra], "little") + 1
                pos += extra
            if pos + length > end:
                raise FormatError("truncated snappy literal", where)
            out += data[pos : pos + length]
            pos += length
        else:
            if kind == 1:
                if pos + 1 > end:
                    raise FormatError("truncated snappy copy", where)
                length = 4 + ((tag >> 2) & 7)
                offset = ((tag >> 5) << 8) | data[pos]
                pos += 1
            else:
                width = 2 if kind == 2 else 4
                if pos + width > end:
                    raise FormatError("truncated snappy copy", where)
                length = (tag >> 2) + 1
                offset = int.from_bytes(data[pos : pos + width], "little")
                pos += width
            if offset == 0 or offset > len(out):
                raise FormatError(f"snappy copy offset {offset} outside the output", where)
            start = len(out) - offset
            if offset >= length:
                out += out[start : start + length]
            else:
                for i in range(length):
                    out.append(out[start + i])
        if len(out) > expected:
            raise FormatError("snappy block longer than its declared length", where)
    if len(out) != expected:
        raise FormatError(f"snappy block decoded to {len(out)} bytes, header says {expected}", where)
    return bytes(out)
