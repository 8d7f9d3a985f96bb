"""TensorFlow Serving's warmup file, written and checked without TensorFlow.

TF Serving replays ``assets.extra/tf_serving_warmup_requests`` when it loads a version, so the
first real request does not pay for lazy initialisation. The file is TFRecord-framed (per
record: little-endian uint64 length, masked crc32c of those 8 bytes, the data, masked crc32c
of the data) ``PredictionLog`` protos; at most 1000 records. A corrupt or unparseable record,
more records, an unsupported log type or a request the signature refuses fails the load of
that version, so :func:`check` reports each as a problem before the model ships.
"""

from __future__ import annotations

import io
import struct
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
from google.protobuf.message import DecodeError

from airflow_savedmodel.errors import InputMismatchError
from airflow_savedmodel.format import dtypes, tensor_proto
from airflow_savedmodel.format.crc import crc32c, mask, unmask
from airflow_savedmodel.format.model import ASSETS_EXTRA_DIR
from airflow_savedmodel.format.signatures import (
    CLASSIFY_METHOD,
    PREDICT_METHOD,
    REGRESS_METHOD,
    Signature,
    TensorSpec,
)
from airflow_savedmodel.protos import example_pb2, prediction_log_pb2

WARMUP_FILE = f"{ASSETS_EXTRA_DIR}/tf_serving_warmup_requests"
MAX_RECORDS = 1000  # TF Serving refuses more (kMaxNumRecords)
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_LOG_METHODS = {
    "predict_log": PREDICT_METHOD,
    "classify_log": CLASSIFY_METHOD,
    "regress_log": REGRESS_METHOD,
}


def frame(data: bytes) -> bytes:
    """One TFRecord: length, its masked crc32c, the data, the data's masked crc32c."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", mask(crc32c(length))) + data + _FOOTER.pack(mask(crc32c(data)))


def records(handle: BinaryIO, size: int) -> Iterator[tuple[int, bytes | str]]:
    """``(index, data)`` for each record of a TFRecord stream of ``size`` bytes, or, for the
    first record that is not intact, ``(index, problem)`` and the end. A declared length is
    checked against the bytes left before anything is allocated."""
    offset = index = 0
    while offset < size:
        header = handle.read(_HEADER.size)
        if len(header) < _HEADER.size:
            yield index, f"truncated record header at byte {offset}"
            return
        length, length_crc = _HEADER.unpack(header)
        if unmask(length_crc) != crc32c(header[:8]):
            yield index, f"corrupted record at byte {offset}: the length's crc32c does not match"
            return
        left = size - offset - _HEADER.size - _FOOTER.size
        if length > left:
            yield index, f"truncated record at byte {offset}: {length} bytes declared, {max(left, 0)} left"
            return
        data = handle.read(length)
        footer = handle.read(_FOOTER.size)
        if len(data) < length or len(footer) < _FOOTER.size:
            yield index, f"truncated record at byte {offset}"
            return
        if unmask(_FOOTER.unpack(footer)[0]) != crc32c(data):
            yield index, f"corrupted record at byte {offset}: the data's crc32c does not match"
            return
        yield index, data
        offset += _HEADER.size + length + _FOOTER.size
        index += 1


@dataclass(frozen=True)
class Problem:
    """Why TF Serving would refuse a warmup file: a finding code and what is wrong."""

    code: str
    message: str


def check(handle: BinaryIO, size: int, signatures: Mapping[str, Signature]) -> list[Problem]:
    """Read a warmup file record by record as TF Serving replays it, against the signatures of
    the meta graph it serves; return the problems (none: TF Serving would accept it)."""
    problems: list[Problem] = []
    count = 0
    for index, data in records(handle, size):
        if isinstance(data, str):
            problems.append(Problem("warmup-corrupt", f"record {index}: {data}"))
            break
        count += 1
        if count > MAX_RECORDS:
            problems.append(
                Problem(
                    "warmup-too-many-records",
                    f"more than {MAX_RECORDS} records; TF Serving refuses the version",
                )
            )
            break
        log = prediction_log_pb2.PredictionLog()
        try:
            log.ParseFromString(data)
        except DecodeError as exc:
            problems.append(
                Problem("warmup-record-unparseable", f"record {index} is not a PredictionLog: {exc}")
            )
            continue
        problems += [
            Problem(code, f"record {index}: {message}") for code, message in _check_log(log, signatures)
        ]
    return problems


def _check_log(
    log: prediction_log_pb2.PredictionLog, signatures: Mapping[str, Signature]
) -> list[tuple[str, str]]:
    kind = log.WhichOneof("log_type")
    if kind not in (*_LOG_METHODS, "multi_inference_log"):
        return [("warmup-log-type-unsupported", f"log type {kind or '(none)'} is not replayed by TF Serving")]
    if kind == "multi_inference_log":
        tasks = log.multi_inference_log.request.tasks
        return [
            finding
            for task in tasks
            for finding in _check_signature(task.model_spec.signature_name, task.method_name, signatures)[1]
        ]
    request: Any = getattr(log, kind).request
    signature, found = _check_signature(request.model_spec.signature_name, _LOG_METHODS[kind], signatures)
    if signature is None or found:
        return found
    if kind != "predict_log":
        problem = _examples_input_problem(signature)
        return [("warmup-input-mismatch", problem)] if problem else []
    return _check_inputs(signature, request.inputs)


def _examples_input_problem(signature: Signature) -> str | None:
    """Classify and regress requests carry tf.Examples, fed serialized to one string input."""
    specs = list(signature.inputs.values())
    if len(specs) != 1 or specs[0].dtype != "DT_STRING":
        have = ", ".join(f"{s.key} ({s.dtype})" for s in specs) or "none"
        return (
            f"signature {signature.key!r} must take one DT_STRING input of serialized tf.Examples "
            f"for classify and regress requests; it takes {have}"
        )
    return None


def _check_signature(
    name: str, method: str, signatures: Mapping[str, Signature]
) -> tuple[Signature | None, list[tuple[str, str]]]:
    key = name or "serving_default"
    signature = signatures.get(key)
    if signature is None:
        have = ", ".join(sorted(signatures)) or "(none)"
        return None, [("warmup-signature-missing", f"signature {key!r} is not in the model; have: {have}")]
    if signature.method_name != method:
        return signature, [
            (
                "warmup-method-mismatch",
                f"a {method.rsplit('/', 1)[-1]} request for signature {key!r}, whose method is {signature.method_name}",
            )
        ]
    return signature, []


def _check_inputs(signature: Signature, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
    found = []
    unknown = sorted(set(inputs) - set(signature.inputs))
    missing = sorted(set(signature.inputs) - set(inputs) - set(signature.defaults))
    if unknown or missing:
        parts = [f"unknown {unknown}" if unknown else "", f"missing {missing}" if missing else ""]
        found.append(
            ("warmup-input-mismatch", f"inputs of {signature.key!r}: " + "; ".join(p for p in parts if p))
        )
    for key in sorted(set(inputs) & set(signature.inputs)):
        proto, spec = inputs[key], signature.inputs[key]
        problem = _fits(spec, dtypes.name(proto.dtype), tensor_proto.shape(proto))
        if problem is not None:
            found.append(problem)
    return found


def _fits(spec: TensorSpec, dtype: str, shape: tuple[int, ...]) -> tuple[str, str] | None:
    if spec.encoding != "dense":
        return None  # sparse and composite inputs are fed as components; not checked here
    if dtype != spec.dtype:
        return "warmup-dtype-mismatch", f"input {spec.key!r} is {dtype}; the signature takes {spec.dtype}"
    if spec.shape is not None and (
        len(shape) != len(spec.shape)
        or any(want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True))
    ):
        return (
            "warmup-shape-mismatch",
            f"input {spec.key!r} has shape {list(shape)}; the signature takes {spec.shape_text()}",
        )
    return None


# ---- writing -------------------------------------------------------------------------------

MAX_INPUTS_BYTES = 1 << 30


def write_into(
    where: Any,
    inputs: Mapping[str, np.ndarray],
    *,
    signature: str = "serving_default",
    count: int = 1,
    tags: str = "serve",
    model_name: str = "",
    overwrite: bool = False,
) -> str:
    """Write warmup requests into the model at ``where`` (a Location) with one atomic write,
    after checking ``inputs`` against the signature; return the file's URL."""
    from airflow_savedmodel import location
    from airflow_savedmodel.errors import SavedModelError, WriteError
    from airflow_savedmodel.format.model import SavedModel

    with SavedModel.open(where.path, fs=where.fs) as model:
        try:
            data = requests(
                model.meta_graph(tags).signature(signature), inputs, count=count, model_name=model_name
            )
        except SavedModelError as exc:  # inputs that do not fit: named after the model
            raise exc.at(str(where.url)) from None
    target = where.join(WARMUP_FILE)
    if target.exists() and not overwrite:
        raise WriteError("a warmup file exists (replace it with --overwrite, overwrite=True)", target.url)
    where.fs.makedirs(target.parent.path, exist_ok=True)
    location.write_atomic(where.fs, target.path, data)
    return str(target.url)


def load_inputs(fs: Any, path: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz file (``numpy.savez``) at ``path``; pickled objects are refused."""
    from airflow_savedmodel import location
    from airflow_savedmodel.errors import FormatError

    data = location.read_file(fs, path, limit=MAX_INPUTS_BYTES)
    if not data.startswith(b"PK"):  # numpy would take anything else for a pickle and say so
        raise FormatError(
            "not a numpy .npz file (numpy.savez writes a zip archive)", location.url_of(fs, path)
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise FormatError(f"not a numpy .npz file of arrays: {exc}", location.url_of(fs, path)) from None


def requests(
    signature: Signature, inputs: Mapping[str, np.ndarray], *, model_name: str = "", count: int = 1
) -> bytes:
    """A warmup file of ``count`` identical requests for ``signature`` with ``inputs``.

    Predict signatures take ``inputs`` keyed by the signature's input keys, each checked against
    its dtype and shape. Classify and regress signatures take features (key: feature name,
    leading dimension: one example each), sent as tf.Examples as TF Serving's classify and
    regress APIs do.
    """
    if not 1 <= count <= MAX_RECORDS:
        raise InputMismatchError(
            f"count must be between 1 and {MAX_RECORDS} (TF Serving's limit), not {count}"
        )
    log = prediction_log_pb2.PredictionLog()
    spec = prediction_log_pb2.ModelSpec(name=model_name, signature_name=signature.key)
    if signature.method_name == PREDICT_METHOD:
        request = log.predict_log.request
        request.model_spec.CopyFrom(spec)
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tensor_proto.from_numpy(np.asarray(value)))
        problems = _check_inputs(signature, request.inputs)
        if problems:
            raise InputMismatchError("; ".join(message for _, message in problems))
    elif signature.method_name in (CLASSIFY_METHOD, REGRESS_METHOD):
        problem = _examples_input_problem(signature)
        if problem is not None:
            raise InputMismatchError(problem)
        target: Any = (
            log.classify_log.request if signature.method_name == CLASSIFY_METHOD else log.regress_log.request
        )
        target.model_spec.CopyFrom(spec)
        target.input.example_list.examples.extend(examples(inputs))
    else:
        raise InputMismatchError(
            f"signature {signature.key!r} has method {signature.method_name!r}; TF Serving warms up "
            "predict, classify and regress signatures"
        )
    record = frame(log.SerializeToString(deterministic=True))
    return record * count


def examples(features: Mapping[str, np.ndarray]) -> list[example_pb2.Example]:
    """One tf.Example per row of ``features`` (every array's leading dimension is the number of
    examples): floats as float_list, integers as int64_list, bytes and text as bytes_list."""
    arrays = {name: np.asarray(value) for name, value in features.items()}
    counts = {name: (a.shape[0] if a.ndim else 1) for name, a in arrays.items()}
    if len(set(counts.values())) > 1:
        raise InputMismatchError(f"features have different numbers of examples: {counts}")
    out = []
    for row in range(next(iter(counts.values()), 0)):
        example = example_pb2.Example()
        for name, array in sorted(arrays.items()):
            values = (array[row] if array.ndim else array).reshape(-1)
            feature = example.features.feature[name]
            if values.dtype.kind == "f":
                feature.float_list.value.extend(values.astype(np.float32).tolist())
            elif values.dtype.kind in "iub":
                feature.int64_list.value.extend(values.astype(np.int64).tolist())
            elif values.dtype.kind in "SUO":
                feature.bytes_list.value.extend(
                    v.encode() if isinstance(v, str) else bytes(v) for v in values
                )
            else:
                raise InputMismatchError(
                    f"feature {name!r} has dtype {values.dtype}, not float, int or bytes"
                )
        out.append(example)
    return out
