"""Deterministic protobuf serialization in the byte order TensorFlow's C++ code produces.

Asked for deterministic output, Python's upb backend orders map keys unlike C++: integer keys
descend, and a string key sorts after the longer keys it prefixes ("config_proto" before
"config"). Fingerprints hash C++ bytes, so every message that can hold a map is encoded here
field by field, keys ascending bytewise; map-free submessages (tensors, shapes) are delegated
to upb, whose output for them is identical.
"""

from __future__ import annotations

import functools
import struct
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from airflow_savedmodel.format import varint

_VARINT = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_BOOL,
    FieldDescriptor.TYPE_ENUM,
}
_FIXED = {
    FieldDescriptor.TYPE_FIXED32: "<I",
    FieldDescriptor.TYPE_SFIXED32: "<i",
    FieldDescriptor.TYPE_FLOAT: "<f",
    FieldDescriptor.TYPE_FIXED64: "<Q",
    FieldDescriptor.TYPE_SFIXED64: "<q",
    FieldDescriptor.TYPE_DOUBLE: "<d",
}
_LENGTH_DELIMITED = 2


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _entry_field(field: FieldDescriptor, name: str) -> FieldDescriptor:
    entry = field.message_type
    assert entry is not None
    return entry.fields_by_name[name]


@functools.cache
def _needs_care(descriptor: Descriptor) -> bool:
    """Whether this message type can (transitively) contain a map field."""
    seen: set[str] = set()

    def walk(d: Descriptor) -> bool:
        if d.full_name in seen:
            return False
        seen.add(d.full_name)
        for f in d.fields:
            if _is_map(f):
                return True
            if f.message_type is not None and walk(f.message_type):
                return True
        return False

    return walk(descriptor)


def _tag(number: int, wire_type: int) -> bytes:
    return varint.encode((number << 3) | wire_type)


def _scalar(field: FieldDescriptor, value: Any) -> tuple[int, bytes]:
    """(wire type, payload) of one scalar value."""
    t = field.type
    if t in _VARINT:
        return 0, varint.encode(int(value) & 0xFFFFFFFFFFFFFFFF)
    if t in (FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64):
        v = int(value)
        return 0, varint.encode((v << 1) ^ (v >> 63) if v < 0 else v << 1)
    if t in _FIXED:
        fmt = _FIXED[t]
        return (5 if fmt[1] in "Iif" else 1), struct.pack(fmt, value)
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return _LENGTH_DELIMITED, varint.encode(len(data)) + data


def _message_bytes(message: Message) -> bytes:
    if _needs_care(message.DESCRIPTOR):
        return serialize(message)
    return message.SerializeToString(deterministic=True)


def _field(field: FieldDescriptor, value: Any) -> bytes:
    out = bytearray()
    number = field.number
    if _is_map(field):
        key_field = _entry_field(field, "key")
        value_field = _entry_field(field, "value")
        for key in sorted(value, key=_sort_key):
            entry = _single(key_field, key) + _single(value_field, value[key])
            out += _tag(number, _LENGTH_DELIMITED) + varint.encode(len(entry)) + entry
        return bytes(out)
    if field.is_repeated:
        if field.is_packed:
            payload = b"".join(_scalar(field, v)[1] for v in value)
            return _tag(number, _LENGTH_DELIMITED) + varint.encode(len(payload)) + payload
        for item in value:
            out += _single(field, item)
        return bytes(out)
    return _single(field, value)


def _sort_key(key: Any) -> Any:
    return key.encode("utf-8") if isinstance(key, str) else key


def _single(field: FieldDescriptor, value: Any) -> bytes:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        body = _message_bytes(value)
        return _tag(field.number, _LENGTH_DELIMITED) + varint.encode(len(body)) + body
    wire, payload = _scalar(field, value)
    return _tag(field.number, wire) + payload


def serialize(message: Message) -> bytes:
    """``message`` serialized deterministically as C++ protobuf would (integer map keys ascending)."""
    if not _needs_care(message.DESCRIPTOR):
        return message.SerializeToString(deterministic=True)
    out = bytearray()
    for field, value in message.ListFields():
        out += _field(field, value)
    return bytes(out)
