"""Requests a rollout sends to TF Serving's REST API, and the answers it gets back.

Requests come from the model's own warmup file (``assets.extra/tf_serving_warmup_requests``:
PredictionLog records, turned into REST bodies as TF Serving's JSON mapping reads them: columnar
``inputs`` for predict, tf.Examples as JSON ``examples`` for classify and regress, binary values as
``{"b64": ...}``) or from a user's .npz of inputs, as ``savedmodel warmup`` takes them.
:func:`send` sends one to ``/v1/models/NAME/labels/LABEL:VERB`` and times it; every
failure is an answer with an error, never an exception, so a canary that fails every request is
evidence, not a crash.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from airflow_savedmodel.errors import FormatError
from airflow_savedmodel.tfserving import Endpoint

VERBS = {"predict_log": "predict", "classify_log": "classify", "regress_log": "regress"}


@dataclass(frozen=True)
class Request:
    """One REST request: ``verb`` (predict, classify, regress) and its JSON body."""

    verb: str
    signature: str
    body: dict[str, Any]
    outputs: tuple[str, ...] = ()  # the signature's output keys (a lone output is answered unnamed)

    @functools.cached_property
    def payload(self) -> bytes:
        """The body as sent: encoded once, however often a bake repeats the request."""
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Answer:
    """What TF Serving answered: the JSON (``predictions``/``outputs``/``results``) or an error."""

    status: int
    doc: Any
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# ---- building requests -----------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value] if value.ndim else _json_value(value[()])
    if isinstance(value, bytes | np.bytes_):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _example_json(example: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "float_list":
            values: list[Any] = list(feature.float_list.value)
        elif kind == "int64_list":
            values = list(feature.int64_list.value)
        elif kind == "bytes_list":
            values = [_json_value(v) for v in feature.bytes_list.value]
        else:
            values = []
        out[name] = values[0] if len(values) == 1 else values
    return out


def from_warmup(data: bytes, where: str = "") -> list[Request]:
    """The REST requests a warmup file holds (one per record), refusing a damaged file."""
    import io

    from airflow_savedmodel.format import tensor_proto
    from airflow_savedmodel.format.warmup import records
    from airflow_savedmodel.protos import prediction_log_pb2

    out: list[Request] = []
    for index, record in records(io.BytesIO(data), len(data)):
        if isinstance(record, str):
            raise FormatError(f"warmup record {index}: {record}", where)
        log = prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(record)
        except Exception:  # protobuf's DecodeError
            raise FormatError(f"warmup record {index} is not a PredictionLog", where) from None
        kind = log.WhichOneof("log_type")
        if kind not in VERBS:
            raise FormatError(
                f"warmup record {index} holds a {kind}, which TF Serving does not replay", where
            )
        if kind == "predict_log":
            predict = log.predict_log.request
            inputs = {k: _json_value(tensor_proto.to_numpy(v)) for k, v in predict.inputs.items()}
            signature = predict.model_spec.signature_name or "serving_default"
            out.append(Request("predict", signature, {"inputs": inputs}))
            continue
        spec_request = getattr(log, kind).request
        examples = [_example_json(e) for e in spec_request.input.example_list.examples]
        signature = spec_request.model_spec.signature_name or "serving_default"
        out.append(Request(VERBS[kind], signature, {"examples": examples}))
    for built in out:
        built.body["signature_name"] = built.signature
    return out


def from_inputs(arrays: Mapping[str, np.ndarray], signature: str, method: str) -> list[Request]:
    """One request per row of a user's inputs (.npz arrays: signature inputs for predict, features
    for classify and regress), so agreement is judged row by row."""
    from airflow_savedmodel.format.signatures import CLASSIFY_METHOD, REGRESS_METHOD
    from airflow_savedmodel.format.warmup import examples

    rows = {len(np.asarray(a)) if np.ndim(a) else 1 for a in arrays.values()}
    if len(rows) != 1:
        raise FormatError(f"inputs have different numbers of rows: {sorted(rows)}")
    (count,) = rows
    out = []
    for row in range(count):
        if method in (CLASSIFY_METHOD, REGRESS_METHOD):
            verb = "classify" if method == CLASSIFY_METHOD else "regress"
            part = {k: np.asarray(v)[row : row + 1] for k, v in arrays.items()}
            body = {"signature_name": signature, "examples": [_example_json(e) for e in examples(part)]}
            out.append(Request(verb, signature, body))
        else:
            inputs = {k: _json_value(np.asarray(v)[row : row + 1]) for k, v in arrays.items()}
            out.append(Request("predict", signature, {"signature_name": signature, "inputs": inputs}))
    return out


# ---- sending ---------------------------------------------------------------------------------


def send(endpoint: Endpoint, model: str, label: str, request: Request) -> Answer:
    """Send ``request`` to the version ``label`` names; time it; errors become answers."""
    url = f"{endpoint.model_url(model, label=label)}:{request.verb}"
    start = time.perf_counter()
    try:
        status, raw = endpoint.open(url, request.payload)
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        return Answer(0, None, time.perf_counter() - start, f"{type(exc).__name__}: {reason}")
    seconds = time.perf_counter() - start
    try:
        doc = json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return Answer(status, None, seconds, f"HTTP {status}: not JSON: {raw[:120]!r}")
    if status != 200:
        error = doc.get("error") if isinstance(doc, dict) else None
        return Answer(status, doc, seconds, f"HTTP {status}: {error or doc}")
    if not isinstance(doc, dict) or not ({"predictions", "outputs", "results"} & set(doc)):
        return Answer(status, doc, seconds, "HTTP 200 without predictions, outputs or results")
    return Answer(status, doc, seconds)


def for_version(
    version: Any, inputs: Mapping[str, np.ndarray] | None = None, signature: str = "serving_default"
) -> list[Request]:
    """The requests for a rollout of the version at ``version`` (a Location): its warmup file's,
    then one per row of ``inputs`` (for ``signature``, of the version's ``serve`` meta graph)."""
    from airflow_savedmodel.format.model import SavedModel
    from airflow_savedmodel.format.warmup import WARMUP_FILE
    from airflow_savedmodel.location import read_file

    out: list[Request] = []
    warmup = version.join(WARMUP_FILE)
    if warmup.exists():
        out.extend(from_warmup(read_file(warmup.fs, warmup.path, limit=64 << 20), str(warmup.url)))
    with SavedModel.open(version.path, fs=version.fs) as model:
        mg = model.meta_graph("serve")
        if inputs:
            out.extend(from_inputs(inputs, signature, mg.signature(signature).method_name))
        keys = {key: tuple(sorted(sig.outputs)) for key, sig in mg.signatures.items()}
    return [replace(r, outputs=keys.get(r.signature, ())) for r in out]
