"""Keys of partitioned-variable slices in a tensor bundle (TensorFlow's OrderedCode encoding)."""

from __future__ import annotations

from collections.abc import Sequence

# Header bits for a signed number encoded in 1..10 bytes.
_LENGTH_HEADER = [
    (0, 0),
    (0x80, 0),
    (0xC0, 0),
    (0xE0, 0),
    (0xF0, 0),
    (0xF8, 0),
    (0xFC, 0),
    (0xFE, 0),
    (0xFF, 0),
    (0xFF, 0x80),
    (0xFF, 0xC0),
]


def num_increasing(value: int) -> bytes:
    """A length byte then the big-endian significant bytes of a non-negative integer."""
    body = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return bytes([len(body)]) + body


def _escape(value: bytes) -> bytes:
    out = bytearray()
    for byte in value:
        if byte == 0x00:
            out += b"\x00\xff"
        elif byte == 0xFF:
            out += b"\xff\x00"
        else:
            out.append(byte)
    return bytes(out) + b"\x00\x01"


def signed_num_increasing(value: int) -> bytes:
    magnitude = ~value if value < 0 else value
    if magnitude < 64:
        return bytes([(_LENGTH_HEADER[1][0] ^ value) & 0xFF])
    bits = magnitude.bit_length() + 1
    length = (bits + 6) // 7
    raw = bytearray((value & ((1 << 80) - 1)).to_bytes(10, "big"))
    begin = raw[10 - length :]
    begin[0] ^= _LENGTH_HEADER[length][0]
    begin[1] ^= _LENGTH_HEADER[length][1]
    return bytes(begin)


def slice_key(name: str, extents: Sequence[tuple[int, int]]) -> bytes:
    """Bundle key of one slice of tensor ``name``; each extent is ``(start, length)``, length -1 = whole dim."""
    parts = [num_increasing(0), _escape(name.encode()), num_increasing(len(extents))]
    for start, length in extents:
        parts.append(signed_num_increasing(start))
        parts.append(signed_num_increasing(length))
    return b"".join(parts)
