"""Base-128 varints as used by protobuf, LevelDB tables and TensorFlow's string tensors."""

from __future__ import annotations

from airflow_savedmodel.errors import FormatError

MAX_VARINT64_BYTES = 10


def decode(
    buf: bytes | memoryview, pos: int, where: str, max_bytes: int = MAX_VARINT64_BYTES
) -> tuple[int, int]:
    """Return ``(value, next_pos)``; raise FormatError naming ``where`` on truncation or overlong input."""
    result = 0
    shift = 0
    end = len(buf)
    for i in range(max_bytes):
        if pos + i >= end:
            raise FormatError("truncated varint", where)
        byte = buf[pos + i]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos + i + 1
        shift += 7
    raise FormatError(f"varint longer than {max_bytes} bytes", where)


def encode(value: int) -> bytes:
    if value < 0:
        raise ValueError("varints encode non-negative integers")
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
