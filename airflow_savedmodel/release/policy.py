"""The rollout policy: what a canary must show before it becomes ``stable``, as plain data.

A policy is a JSON object (a dict in a DAG, a JSON or YAML file, or a JSON string on the command
line), checked against :data:`SCHEMA` before anything changes. Every key is optional; what is
left out takes the value of :data:`DEFAULT`, a policy a team can start from: outputs equal to
stable's within 1e-3 + 1% in at least 95% of answers (the same top class in 95%: a retrained
model whose answers should change sets ``outputs.compare`` false and gates on metrics instead), no NaN or Inf, no request errors, at most 1.5x stable's median latency and 2x
its p95, 30 s of bake with at least 20 requests per label. A rollout that has not decided
``abandoned_after_seconds`` after its wait and bake should have ended (its worker was killed) is
rolled back by the next rollout of the model. Against several TF Serving replicas every replica
must load the candidate and serve each moved label, trailing the first by at most
``replicas.max_lag_seconds``, and by default every replica's own evidence must pass
(``replicas.min_passing_fraction``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from airflow_savedmodel.errors import PolicyError

__all__ = ["DEFAULT", "SCHEMA", "Policy", "PolicyError", "load", "parse"]

DEFAULT: dict[str, Any] = {
    "available_timeout_seconds": 600,
    "bake_seconds": 30,
    "abandoned_after_seconds": 300,
    "min_requests": 20,
    "warmup_requests": 3,
    "outputs": {
        "max_abs_diff": 1e-3,
        "max_rel_diff": 1e-2,
        "max_differing_fraction": 0.05,
        "min_top_class_agreement": 0.95,
    },
    "max_error_rate": 0.0,
    "latency": {"max_p50_ratio": 1.5, "max_p95_ratio": 2.0},
    "metrics": {},
    # TF Serving as several replicas: how long a replica may trail the first one at each wait
    # (loading the candidate, serving a moved label), and the share of replicas whose own
    # evidence must pass. Loading is never a quorum: every replica must load the candidate.
    "replicas": {"max_lag_seconds": 120, "min_passing_fraction": 1.0},
}

_THRESHOLDS = {"type": "number", "minimum": 0}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "airflow-savedmodel rollout policy",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "available_timeout_seconds": {"type": "number", "exclusiveMinimum": 0},
        "bake_seconds": {"type": "number", "minimum": 0},
        "abandoned_after_seconds": {"type": "number", "minimum": 0},
        "min_requests": {"type": "integer", "minimum": 1, "maximum": 100000},
        "warmup_requests": {"type": "integer", "minimum": 0, "maximum": 1000},
        "outputs": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_abs_diff": _THRESHOLDS,
                "max_rel_diff": _THRESHOLDS,
                "max_differing_fraction": {"type": "number", "minimum": 0, "maximum": 1},
                "min_top_class_agreement": {"type": "number", "minimum": 0, "maximum": 1},
                "compare": {"type": "boolean"},
            },
        },
        "max_error_rate": {"type": "number", "minimum": 0, "maximum": 1},
        # Trusted signers (a PEM file's location): the candidate must verify to be named or promoted.
        "require_signature": {"type": ["string", "null"]},
        "latency": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_p50_ratio": {"type": "number", "exclusiveMinimum": 0},
                "max_p95_ratio": {"type": "number", "exclusiveMinimum": 0},
            },
        },
        "replicas": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "max_lag_seconds": {"type": "number", "exclusiveMinimum": 0},
                "min_passing_fraction": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            },
        },
        "metrics": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "min": {"type": "number"},
                    "max": {"type": "number"},
                    "max_drop": _THRESHOLDS,
                    "max_rise": _THRESHOLDS,
                },
            },
        },
    },
}


@dataclass(frozen=True)
class Policy:
    """A checked policy; ``doc`` is the whole policy, defaults filled in (recorded as applied)."""

    doc: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.doc[key]

    @property
    def metric_gates(self) -> dict[str, dict[str, float]]:
        return dict(self.doc["metrics"])


def _merged(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "metrics":
            out[key] = _merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse(policy: dict[str, Any] | str | None, where: str | None = None) -> Policy:
    """A Policy from a dict, a JSON text, or None (the defaults); refused with the reason."""
    import jsonschema

    if policy is None:
        given: Any = {}
    elif isinstance(policy, str):
        try:
            given = json.loads(policy) if policy.strip() else {}
        except json.JSONDecodeError as exc:
            raise PolicyError(
                f"rollout policy is not JSON: {exc.msg} at character {exc.pos}", where
            ) from None
    else:
        given = policy
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(validator.iter_errors(given), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        at = "/".join(str(p) for p in first.absolute_path) or "(top level)"
        raise PolicyError(f"rollout policy: {at}: {first.message}", where)
    return Policy(_merged(DEFAULT, given))


def load(text_or_url: str | dict[str, Any] | None, storage_options: dict[str, Any] | None = None) -> Policy:
    """A policy given as a dict, JSON text, or the URL of a JSON/YAML file."""
    if text_or_url is None or isinstance(text_or_url, dict) or text_or_url.lstrip().startswith("{"):
        return parse(text_or_url)
    from airflow_savedmodel import location

    where = location.resolve(text_or_url, storage_options)
    text = location.read_file(where.fs, where.path, limit=1 << 20).decode("utf-8", "replace")
    if where.path.endswith((".yaml", ".yml")):
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PolicyError(f"rollout policy is not YAML: {exc}", where.url) from None
        return parse(doc if doc is not None else {}, where.url)
    return parse(text, where.url)
