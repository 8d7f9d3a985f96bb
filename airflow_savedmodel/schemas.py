"""JSON Schemas of the documents users and tools hand us (signature specs, manifests), checked
with ``jsonschema`` so a wrong document fails with a message that points at the offending
field instead of an AttributeError deep inside the check that reads it."""

from __future__ import annotations

from typing import Any

import jsonschema

from airflow_savedmodel.errors import FormatError

_TENSOR = {
    "type": ["object", "null"],
    "properties": {
        "dtype": {"type": "string", "minLength": 1},  # DT_FLOAT, float32, ...: see dtypes.from_name
        "shape": {"type": ["array", "null"], "items": {"type": ["integer", "null"], "minimum": -1}},
    },
    "additionalProperties": False,
}
_TENSORS = {"type": ["object", "null"], "additionalProperties": _TENSOR}

SIGNATURE_SPEC = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "airflow-savedmodel signature spec",
    "type": "object",
    "required": ["signatures"],
    "properties": {
        "tag_set": {"type": ["string", "array"], "items": {"type": "string"}},
        "signatures": {
            "type": "object",
            "additionalProperties": {
                "type": ["object", "null"],
                "properties": {
                    "method_name": {"type": "string"},
                    "inputs": _TENSORS,
                    "outputs": _TENSORS,
                },
                "additionalProperties": False,
            },
        },
    },
}

MANIFEST = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "airflow-savedmodel/manifest/v1",
    "type": "object",
    "required": ["files"],
    "properties": {
        "schema": {"type": "string"},
        "files": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path", "size", "crc32c"],
                "properties": {
                    "path": {"type": "string", "minLength": 1},
                    "size": {"type": "integer", "minimum": 0},
                    "crc32c": {"type": "string", "pattern": "^[0-9a-f]{8}$"},
                },
            },
        },
        "source": {"type": "string"},
        "created": {"type": "string"},
        "tool_version": {"type": "string"},
        "fingerprint": {"type": ["string", "null"]},
    },
}


def check(doc: Any, schema: dict[str, Any], what: str, where: str | None) -> None:
    """Raise a FormatError naming the first offending field (``signatures.serving.inputs``) of
    ``doc``, a ``what`` (e.g. "signature spec") read from ``where``."""
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is None:
        return
    field = ".".join(str(p) for p in error.absolute_path) or "(the document)"
    message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    raise FormatError(f"{what}: {field}: {message}", where)
