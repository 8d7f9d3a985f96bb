"""Parsing and serializing our protos under TensorFlow's names.

Our generated messages live in package ``airflow_savedmodel.tf``; files written by TensorFlow
name types ``tensorflow.X`` in google.protobuf.Any values (the TF1 asset collection) and in the
expanded Any syntax of text protos. This module translates between the two.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, text_format, wrappers_pb2
from google.protobuf.message import DecodeError, Message

from airflow_savedmodel.errors import FormatError
from airflow_savedmodel.protos import fingerprint_pb2, meta_graph_pb2, tensor_bundle_pb2

OUR_PACKAGE = "airflow_savedmodel.tf"
TF_PACKAGE = "tensorflow"
TYPE_URL_PREFIX = "type.googleapis.com/"
M = TypeVar("M", bound=Message)


def tf_full_name(message: Message | type[Message]) -> str:
    """The name TensorFlow gives this message type, e.g. ``tensorflow.AssetFileDef``."""
    full = message.DESCRIPTOR.full_name
    return TF_PACKAGE + full[len(OUR_PACKAGE) :] if full.startswith(OUR_PACKAGE + ".") else full


def pack_any(message: Message) -> any_pb2.Any:
    """An Any holding ``message`` with the type URL TensorFlow writes."""
    return any_pb2.Any(type_url=TYPE_URL_PREFIX + tf_full_name(message), value=message.SerializeToString())


def unpack_any(value: any_pb2.Any, cls: type[M]) -> M | None:
    """The message in ``value`` if its type URL names ``cls`` (under TF's or our package), else None."""
    type_name = value.type_url.rsplit("/", 1)[-1]
    if type_name not in (tf_full_name(cls), cls.DESCRIPTOR.full_name):
        return None
    try:
        return cls.FromString(value.value)
    except DecodeError:
        return None


@functools.cache
def _tf_named_pool() -> descriptor_pool.DescriptorPool:
    """A private pool holding our messages again under package ``tensorflow``, for text-format Any."""
    pool = descriptor_pool.DescriptorPool()
    done: set[str] = set()

    def add(fd: Any) -> None:
        if fd.name in done:
            return
        for dep in fd.dependencies:
            add(dep)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        if proto.package == OUR_PACKAGE:
            proto.package = TF_PACKAGE
            _rename_types(proto)
        pool.Add(proto)
        done.add(fd.name)

    for module in (meta_graph_pb2, fingerprint_pb2, tensor_bundle_pb2, any_pb2, wrappers_pb2):
        add(module.DESCRIPTOR)
    return pool


def _rename_types(proto: descriptor_pb2.FileDescriptorProto) -> None:
    old, new = "." + OUR_PACKAGE + ".", "." + TF_PACKAGE + "."

    def fix(message: descriptor_pb2.DescriptorProto) -> None:
        for fld in message.field:
            if fld.type_name.startswith(old):
                fld.type_name = new + fld.type_name[len(old) :]
        for nested in message.nested_type:
            fix(nested)

    for message in proto.message_type:
        fix(message)


def parse_binary(cls: type[M], data: bytes, path: str, what: str | None = None) -> M:
    """Parse ``data``; a malformed message raises FormatError naming ``path`` (and ``what`` in it)."""
    try:
        return cls.FromString(data)
    except (DecodeError, RecursionError) as exc:
        where = f"{what}: " if what else ""
        raise FormatError(f"{where}not a valid {tf_full_name(cls)}: {exc}", path) from None


def parse_text(cls: type[M], text: str, path: str) -> M:
    message = cls()
    try:
        text_format.Parse(text, message, descriptor_pool=_tf_named_pool())
    except (text_format.ParseError, DecodeError, RecursionError, ValueError) as exc:
        raise FormatError(f"not a valid text {tf_full_name(cls)}: {exc}", path) from None
    return message


def to_text(message: Message) -> str:
    """Text format as TensorFlow writes it (Any values left as type_url and bytes)."""
    return text_format.MessageToString(message)
