"""NOT TensorFlow Serving: a stand-in for the tests, because no TF Serving binary installs here
(no Docker; tensorflow-model-server is not a Debian or PyPI package).

It follows TF Serving's documented REST contract for what the provider reads (TensorFlow
Serving REST API docs, "Model status API": ``GET /v1/models/{name}[/versions/{N}|/labels/{L}]``
answering ``{"model_version_status": [{"version": "N", "state": ..., "status": {"error_code",
"error_message"}}]}``, and "Model Metadata API": ``.../metadata`` answering ``{"model_spec",
"metadata": {"signature_def": {"signature_def": {...}}}}``; unknown models, versions and labels
are 404 with ``{"error": ...}``; "Predict/Classify/Regress API": ``POST .../{name}[/versions/{N}|
/labels/{L}]:predict`` with ``instances`` (rows) or ``inputs`` (columns), ``:classify`` and
``:regress`` with ``examples``) and its version rules (a model config file read every poll:
``specific`` versions or the ``latest`` N numeric children of the base path; version labels).
Every version it aspires is loaded with TensorFlow's real TF1 loader, as TF Serving loads it:
AVAILABLE means the version really loaded; a version TensorFlow cannot load ends in END with the
loader's error code and message. Versions load one at a time, in the watcher thread, and stay
loaded in their own session; requests run the signature's tensors in it.

Labels follow TF Serving's reload rule (``ServerCore::ReloadConfig`` updates the label map before
it adds models): a config that points a label at a version this process has not loaded fails the
whole reload, so the process keeps its labels and loads nothing new from that config. With
``allow_unavailable_labels`` (``--allow_version_labels_for_unavailable_models``) a label that
does not exist yet may name an unloaded version; moving an existing one still fails. Several
stand-ins reading one config are a fleet of replicas; each binds its own address (``host``, e.g.
127.0.0.2, and ``port``: a headless Service's pods share the port) and loads at its own pace.

Fault knobs for the tests (not TF Serving's), per process: ``faults[(model, version)]`` =
``{"delay": seconds}`` (answers that much later), ``{"error": message}`` (every request answered
with that error after a successful load) or ``{"shift": x}`` (every number in its answers plus x:
a replica that computes differently); ``load_faults[(model, version)]`` = ``{"delay": seconds}``
(starts loading that much later), ``{"gate": threading.Event()}`` (starts loading once the test
sets it: a load as slow as a test needs, ended by an event) or ``{"error": message}`` (the load
ends in END with that error). ``served`` records (model, what was asked: "label:L", "version:N" or "", version that
answered) for every inference request; ``reload_error`` the last refused reload's reason.
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

INFER = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?:(predict|classify|regress)")


def _code(exc: BaseException) -> str:
    """TF Serving's error_code for a loader exception: ``NotFoundError`` -> ``NOT_FOUND``."""
    name = type(exc).__name__.removesuffix("Error")
    if not type(exc).__module__.startswith("tensorflow"):
        return "UNKNOWN"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


class StandInServing:
    def __init__(
        self,
        config: Path,
        poll: float = 0.2,
        *,
        tls: tuple[str, str] | None = None,
        require_header: tuple[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_unavailable_labels: bool = False,
        load_faults: dict[tuple[str, int], dict[str, Any]] | None = None,
    ) -> None:
        """``tls``: (certificate chain, key) PEM files to serve https, as a gateway in front of
        TF Serving does; ``require_header``: (name, value) every request must carry (else 401)."""
        self.config, self.poll = config, poll
        self.allow_unavailable_labels = allow_unavailable_labels
        self.load_faults: dict[tuple[str, int], dict[str, Any]] = dict(load_faults or {})
        self.aspired: dict[str, tuple[Path, list[int]]] = {}  # from the last reload that succeeded
        self.reload_error = ""
        self.refused_reloads: list[str] = []  # every reload refused, in order
        # Called with (model, what was asked) before each inference request is answered: lets a
        # test act at a moment of the rollout's own making (the fifth canary request of a bake).
        self.on_request: Any = None
        self.states: dict[tuple[str, int], dict[str, Any]] = {}
        self.signatures: dict[tuple[str, int], dict[str, Any]] = {}
        self.labels: dict[str, dict[str, int]] = {}
        self.sessions: dict[tuple[str, int], tuple[Any, Any]] = {}  # (session, meta graph)
        self.faults: dict[tuple[str, int], dict[str, Any]] = {}
        self.served: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def refused(self) -> bool:
                if require_header is None or self.headers.get(require_header[0]) == require_header[1]:
                    return False
                body = json.dumps({"error": "unauthenticated: a valid token is required"}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return True

            def do_GET(self) -> None:
                if self.refused():
                    return
                status, doc = standin.answer(self.path)
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if self.refused():
                    self.rfile.read(length)
                    return
                status, doc = standin.infer(self.path, self.rfile.read(length))
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        scheme = "http"
        if tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.port = self.server.server_address[1]
        self.url = f"{scheme}://{host}:{self.port}"
        self.threads = [
            threading.Thread(target=self.server.serve_forever, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        """Stop answering (the listening socket closed: connections are refused) and unload."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            sessions = list(self.sessions.values())
        for session, _ in sessions:
            session.close()

    def served_by(self, model: str, asked: str) -> list[int]:
        """The versions that answered inference requests for ``asked`` ("label:stable", ...)."""
        with self.lock:
            return [v for m, a, v in self.served if m == model and a == asked]

    # ---- REST ----------------------------------------------------------------------------------

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        match = re.fullmatch(r"/v1/models/([^/]+)(?:/versions/(\d+)|/labels/([^/]+))?(/metadata)?", path)
        if match is None:
            return 404, {"error": f"Malformed request: GET {path}"}
        name, number, label, metadata = match.groups()
        with self.lock:
            known = sorted(v for (n, v) in self.states if n == name)
            if label is not None:
                number = self.labels.get(name, {}).get(label)
                if number is None:
                    return 404, {"error": f"Unrecognized servable version label: {label}"}
            if not known:
                return 404, {"error": f"Could not find any versions of model {name}"}
            versions = [int(number)] if number is not None else known
            if any(v not in known for v in versions):
                return 404, {"error": f"Servable not found for request: Specific({name}, {number})"}
            if metadata:
                available = [v for v in versions if self.states[(name, v)]["state"] == "AVAILABLE"]
                # no version asked: the newest this process serves, as TF Serving answers
                version = available[-1] if number is None and available else versions[-1]
                if self.states[(name, version)]["state"] != "AVAILABLE":
                    return 404, {"error": f"Servable not found for request: Specific({name}, {version})"}
                return 200, {
                    "model_spec": {"name": name, "signature_name": "", "version": str(version)},
                    "metadata": {"signature_def": {"signature_def": self.signatures[(name, version)]}},
                }
            entries = [{"version": str(v), **self.states[(name, v)]} for v in sorted(versions, reverse=True)]
        return 200, {"model_version_status": entries}

    def infer(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        match = INFER.fullmatch(path)
        if match is None:
            return 404, {"error": f"Malformed request: POST {path}"}
        name, number, label, verb = match.groups()
        with self.lock:
            if label is not None:
                number = self.labels.get(name, {}).get(label)
                if number is None:
                    return 400, {"error": f"Unrecognized servable version label: {label}"}
            available = sorted(
                v for (n, v), s in self.states.items() if n == name and s["state"] == "AVAILABLE"
            )
            version = int(number) if number is not None else (available[-1] if available else None)
            if version is None or version not in available:
                return 404, {"error": f"Servable not found for request: Specific({name}, {number})"}
            session, meta = self.sessions[(name, version)]
            fault = dict(self.faults.get((name, version), {}))
            asked = f"label:{label}" if label else (f"version:{number}" if number else "")
            self.served.append((name, asked, version))
        if self.on_request is not None:
            self.on_request(name, asked)
        if fault.get("delay"):
            time.sleep(fault["delay"])
        if fault.get("error"):
            return 500, {"error": fault["error"]}
        try:
            request = json.loads(body)
            answer = _run(session, meta, verb, request)
            return 200, _shifted(answer, fault["shift"]) if fault.get("shift") else answer
        except Exception as exc:  # TF Serving answers a bad request with its error, never a crash
            return 400, {"error": f"{type(exc).__name__}: {exc}"}

    # ---- loading -------------------------------------------------------------------------------

    def _set(self, name: str, version: int, state: str, code: str = "OK", message: str = "") -> None:
        with self.lock:
            self.states[(name, version)] = {
                "state": state,
                "status": {"error_code": code, "error_message": message},
            }

    def _aspired(self, model: Any) -> list[int]:
        base = Path(model.base_path)
        present = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit()) if base.is_dir() else []
        policy = model.model_version_policy
        if policy.HasField("specific"):
            return [v for v in policy.specific.versions if v in present]
        if policy.HasField("all"):
            return present
        return present[-max(1, policy.latest.num_versions or 1) :]

    def _watch(self) -> None:
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2

        while not self.stopped.wait(self.poll):
            try:
                config = text_format.Parse(
                    self.config.read_text(), model_server_config_pb2.ModelServerConfig()
                )
            except (OSError, text_format.ParseError):
                continue  # not written yet, or mid-write: TF Serving keeps its last config too
            self._reload(config.model_config_list.config)
            with self.lock:
                aspired = {name: (base, list(versions)) for name, (base, versions) in self.aspired.items()}
            for name, (base, versions) in aspired.items():
                for version in versions:
                    with self.lock:
                        if (name, version) in self.states:
                            continue
                        self.states[(name, version)] = {
                            "state": "START",
                            "status": {"error_code": "OK", "error_message": ""},
                        }
                    threading.Thread(
                        target=self._load, args=(name, version, base / str(version)), daemon=True
                    ).start()

    def _reload(self, models: Any) -> None:
        """Apply a config as ReloadConfig does: every model's labels first, refused as a whole
        when one names a version this process cannot label yet; then the versions to load."""
        with self.lock:
            for model in models:
                current = self.labels.get(model.name, {})
                for label, version in model.version_labels.items():
                    loaded = self.states.get((model.name, version), {}).get("state") == "AVAILABLE"
                    new_label = label not in current or current[label] == version
                    if not loaded and not (self.allow_unavailable_labels and new_label):
                        self.reload_error = (
                            f"FAILED_PRECONDITION: Request to assign label to version {version} of model "
                            f"{model.name}, which is not currently available for inference"
                        )
                        if not self.refused_reloads or self.refused_reloads[-1] != self.reload_error:
                            self.refused_reloads.append(self.reload_error)
                        return  # the whole reload fails: labels and versions stay as they were
            for model in models:
                self.labels[model.name] = dict(model.version_labels)
                self.aspired[model.name] = (Path(model.base_path), self._aspired(model))
            self.reload_error = ""

    def _load(self, name: str, version: int, path: Path) -> None:
        import tensorflow as tf
        from google.protobuf import json_format

        fault = self.load_faults.get((name, version), {})
        gate = fault.get("gate")  # a threading.Event: the load starts when the test opens it
        while gate is not None and not gate.wait(0.05):
            if self.stopped.is_set():
                return
        if fault.get("delay") and self.stopped.wait(fault["delay"]):  # after the gate, if any
            return
        self._set(name, version, "LOADING")
        if fault.get("error"):
            self._set(name, version, "END", "UNKNOWN", fault["error"])
            return
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph)
        try:
            with graph.as_default():
                meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path))
        except Exception as exc:
            session.close()
            self._set(name, version, "END", _code(exc), str(exc).strip().splitlines()[0])
            return
        with self.lock:
            if self.stopped.is_set():
                session.close()
                return
            self.sessions[(name, version)] = (session, meta)
            self.signatures[(name, version)] = {
                key: json_format.MessageToDict(sig) for key, sig in meta.signature_def.items()
            }
        self._set(name, version, "AVAILABLE")


# ---- inference, as TF Serving's REST handler maps JSON to tensors and back ----------------------


def _shifted(value: Any, by: float) -> Any:
    """Every float in an answer plus ``by``: a replica whose numbers come out different."""
    if isinstance(value, dict):
        return {k: _shifted(v, by) for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted(v, by) for v in value]
    if isinstance(value, float):
        return value + by
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _encode(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.ndarray):
        return [_encode(v) for v in value] if value.ndim else _encode(value.item())
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _signature(meta: Any, request: dict[str, Any]) -> Any:
    key = request.get("signature_name") or "serving_default"
    if key not in meta.signature_def:
        raise KeyError(f'Serving signature name: "{key}" not found in signature def')
    return meta.signature_def[key]


def _example(features: dict[str, Any]) -> bytes:
    import tensorflow as tf

    feature = {}
    for key, value in features.items():
        values = value if isinstance(value, list) else [value]
        values = [_decode(v) for v in values]
        if all(isinstance(v, bytes | str) for v in values):
            feature[key] = tf.train.Feature(
                bytes_list=tf.train.BytesList(
                    value=[v if isinstance(v, bytes) else v.encode() for v in values]
                )
            )
        elif all(isinstance(v, int) for v in values):
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        else:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _run(session: Any, meta: Any, verb: str, request: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    signature = _signature(meta, request)
    outputs = {key: info.name for key, info in signature.outputs.items()}
    if verb in ("classify", "regress"):
        (input_info,) = signature.inputs.values()
        examples = [_example(e) for e in request["examples"]]
        got = session.run(outputs, {input_info.name: np.array(examples, dtype=object)})
        if verb == "regress":
            return {"results": [float(v) for v in np.asarray(got["outputs"]).reshape(-1)]}
        scores = np.asarray(got.get("scores"))
        classes = got.get("classes")
        results = []
        for row in range(len(examples)):
            labels = (
                [_encode(c) for c in classes[row]]
                if classes is not None
                else [str(i) for i in range(scores.shape[1])]
            )
            results.append([[label, float(score)] for label, score in zip(labels, scores[row], strict=True)])
        return {"results": results}
    if "instances" in request:
        rows = request["instances"]
        if len(signature.inputs) == 1 and not isinstance(rows[0], dict):
            (key,) = signature.inputs
            columns = {key: [_decode(r) for r in rows]}
        else:
            columns = {key: [_decode(r[key]) for r in rows] for key in signature.inputs}
    else:
        given = request["inputs"]
        if not isinstance(given, dict):
            (key,) = signature.inputs
            given = {key: given}
        columns = {key: _decode(value) for key, value in given.items()}
    feed = {signature.inputs[key].name: np.asarray(value) for key, value in columns.items()}
    got = session.run(outputs, feed)
    if "instances" in request:
        if len(got) == 1:
            (only,) = got.values()
            return {"predictions": _encode(np.asarray(only))}
        count = len(next(iter(got.values())))
        return {"predictions": [{k: _encode(np.asarray(v)[i]) for k, v in got.items()} for i in range(count)]}
    if len(got) == 1:
        (only,) = got.values()
        return {"outputs": _encode(np.asarray(only))}
    return {"outputs": {k: _encode(np.asarray(v)) for k, v in got.items()}}
