"""Signature compatibility: what changes between the signatures a server exposes today and a
candidate's, and which of those break clients that work today.

A client calls a signature by key and method, sends some inputs and reads some outputs. For
those clients a change is breaking when a request that works today would fail, or a response
field it reads would disappear or change type: a removed signature, input or output; a changed
method; a new input without a default (requests lacking it fail); a changed rank; a fixed
dimension made different, or an open one fixed; an input dtype narrowed or changed in kind; an
output dtype changed. Added signatures and outputs, inputs with defaults, dimensions opened up
and input dtypes widened within their kind (float32 -> float64: REST clients send JSON numbers,
which TF Serving converts to the signature's dtype) are compatible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from airflow_savedmodel.format.signatures import RESERVED_KEYS, Signature, TensorSpec

# Within a kind, each dtype converts losslessly to the later ones.
_WIDENING = (
    ("DT_INT8", "DT_INT16", "DT_INT32", "DT_INT64"),
    ("DT_UINT8", "DT_UINT16", "DT_UINT32", "DT_UINT64"),
    ("DT_BFLOAT16", "DT_FLOAT", "DT_DOUBLE"),
    ("DT_HALF", "DT_FLOAT", "DT_DOUBLE"),
)


@dataclass(frozen=True)
class Change:
    """One difference: ``what`` (e.g. ``input-removed``), where, before and after, and whether
    clients that work today would break."""

    what: str
    signature: str
    key: str | None
    old: str | None
    new: str | None
    breaking: bool

    def describe(self) -> str:
        """``input 'x' of 'serving_default' dtype DT_FLOAT -> DT_INT32`` and the like."""
        side, action = self.what.split("-", 1)
        subject = (
            f"signature {self.signature!r}"
            if self.key is None
            else f"{side} {self.key!r} of {self.signature!r}"
        )
        detail = action if action in ("added", "removed") else f"{action} {self.old} -> {self.new}"
        return f"{subject} {detail}"

    def text(self) -> str:
        """The description with its verdict: ``BREAKING: input 'x' of 'serving_default' removed``."""
        return f"{'BREAKING' if self.breaking else 'compatible'}: {self.describe()}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _widens(old: str, new: str) -> bool:
    return any(old in chain and new in chain and chain.index(new) > chain.index(old) for chain in _WIDENING)


def _shape_text(shape: tuple[int, ...] | None) -> str:
    return "unknown rank" if shape is None else "(" + ", ".join(str(d) for d in shape) + ")"


def _shape_breaks(old: tuple[int, ...] | None, new: tuple[int, ...] | None, is_input: bool) -> bool:
    if new is None:
        return False  # any rank accepted now
    if old is None:
        return is_input  # inputs of any rank were accepted; outputs now say what they are
    if len(old) != len(new):
        return True
    for before, after in zip(old, new, strict=True):
        if after == -1:
            continue  # opened up
        if before == -1:
            if is_input:
                return True  # requests of other sizes worked before
            continue
        if before != after:
            return True
    return False


def _tensor_changes(sig: str, side: str, old: TensorSpec, new: TensorSpec) -> list[Change]:
    found = []
    is_input = side == "input"
    if old.dtype != new.dtype:
        widened = is_input and _widens(old.dtype, new.dtype)
        found.append(Change(f"{side}-dtype", sig, old.key, old.dtype, new.dtype, not widened))
    if old.shape != new.shape:
        found.append(
            Change(
                f"{side}-shape",
                sig,
                old.key,
                _shape_text(old.shape),
                _shape_text(new.shape),
                _shape_breaks(old.shape, new.shape, is_input),
            )
        )
    if old.encoding != new.encoding:
        found.append(Change(f"{side}-encoding", sig, old.key, old.encoding, new.encoding, True))
    return found


def diff(old: Mapping[str, Signature], new: Mapping[str, Signature]) -> list[Change]:
    """Every difference between two meta graphs' signatures, in a stable order."""
    changes: list[Change] = []
    keys = sorted((set(old) | set(new)) - RESERVED_KEYS)
    for key in keys:
        before, after = old.get(key), new.get(key)
        if after is None:
            changes.append(Change("signature-removed", key, None, None, None, True))
            continue
        if before is None:
            changes.append(Change("signature-added", key, None, None, None, False))
            continue
        if before.method_name != after.method_name:
            changes.append(Change("signature-method", key, None, before.method_name, after.method_name, True))
        for name in sorted(set(before.inputs) | set(after.inputs)):
            was, now = before.inputs.get(name), after.inputs.get(name)
            if now is None:
                changes.append(Change("input-removed", key, name, None, None, True))
            elif was is None:
                changes.append(Change("input-added", key, name, None, None, name not in after.defaults))
            else:
                changes += _tensor_changes(key, "input", was, now)
        for name in sorted(set(before.outputs) | set(after.outputs)):
            was, now = before.outputs.get(name), after.outputs.get(name)
            if now is None:
                changes.append(Change("output-removed", key, name, None, None, True))
            elif was is None:
                changes.append(Change("output-added", key, name, None, None, False))
            else:
                changes += _tensor_changes(key, "output", was, now)
    return changes


@dataclass(frozen=True)
class Baseline:
    """Signatures clients use today, from wherever they were read (a running server's metadata)."""

    source: str
    signatures: Mapping[str, Signature]


def breaking(changes: list[Change]) -> list[Change]:
    return [c for c in changes if c.breaking]
