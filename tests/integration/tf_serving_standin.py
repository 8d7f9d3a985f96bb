"""NOT TensorFlow Serving: a stand-in for the tests, because no TF Serving binary installs here
(no Docker; tensorflow-model-server is not a Debian or PyPI package).

It follows TF Serving's documented REST contract for what the provider reads (TensorFlow
Serving REST API docs, "Model status API": ``GET /v1/models/{name}[/versions/{N}|/labels/{L}]``
answering ``{"model_version_status": [{"version": "N", "state": ..., "status": {"error_code",
"error_message"}}]}``, and "Model Metadata API": ``.../metadata`` answering ``{"model_spec",
"metadata": {"signature_def": {"signature_def": {...}}}}``; unknown models, versions and labels
are 404 with ``{"error": ...}``) and its version rules (a model config file read every poll:
``specific`` versions or the ``latest`` N numeric children of the base path; version labels).
Every version it aspires is loaded with TensorFlow's real TF1 loader, as TF Serving loads it:
AVAILABLE means the version really loaded; a version TensorFlow cannot load ends in END with the
loader's error code and message. Versions load one at a time, in the watcher thread.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from pathlib import Path
from typing import Any


def _code(exc: BaseException) -> str:
    """TF Serving's error_code for a loader exception: ``NotFoundError`` -> ``NOT_FOUND``."""
    name = type(exc).__name__.removesuffix("Error")
    if not type(exc).__module__.startswith("tensorflow"):
        return "UNKNOWN"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


class StandInServing:
    def __init__(self, config: Path, poll: float = 0.2) -> None:
        self.config, self.poll = config, poll
        self.states: dict[tuple[str, int], dict[str, Any]] = {}
        self.signatures: dict[tuple[str, int], dict[str, Any]] = {}
        self.labels: dict[str, dict[str, int]] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, doc = standin.answer(self.path)
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.threads = [
            threading.Thread(target=self.server.serve_forever, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()

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
                version = versions[-1]
                if self.states[(name, version)]["state"] != "AVAILABLE":
                    return 404, {"error": f"Servable not found for request: Specific({name}, {version})"}
                return 200, {
                    "model_spec": {"name": name, "signature_name": "", "version": str(version)},
                    "metadata": {"signature_def": {"signature_def": self.signatures[(name, version)]}},
                }
            entries = [{"version": str(v), **self.states[(name, v)]} for v in sorted(versions, reverse=True)]
        return 200, {"model_version_status": entries}

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
            for model in config.model_config_list.config:
                with self.lock:
                    self.labels[model.name] = dict(model.version_labels)
                for version in self._aspired(model):
                    if (model.name, version) not in self.states:
                        self._load(model.name, version, Path(model.base_path) / str(version))

    def _load(self, name: str, version: int, path: Path) -> None:
        import tensorflow as tf
        from google.protobuf import json_format

        self._set(name, version, "START")
        self._set(name, version, "LOADING")
        graph = tf.Graph()
        try:
            with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
                meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path))
        except Exception as exc:
            self._set(name, version, "END", _code(exc), str(exc).strip().splitlines()[0])
            return
        with self.lock:
            self.signatures[(name, version)] = {
                key: json_format.MessageToDict(sig) for key, sig in meta.signature_def.items()
            }
        self._set(name, version, "AVAILABLE")
