"""A test stand-in for TensorFlow Serving's file-system source, loading with TensorFlow's own loader.

It behaves as ``file_system_storage_path_source.cc`` does: every poll (50 ms) it lists the base
path's children and aspires the numeric ones its policy picks: ``latest`` (the highest) or, with a
model config file, the ``specific`` versions listed there (parsed with tensorflow_serving's own
``ModelServerConfig``) that exist. Each newly aspired version is snapshotted at once (what the
server would read) and loaded in a TensorFlow subprocess with the TF1 session loader and tag
``serve``, as TF Serving does, then ``serving_default`` is run on a probe input. A failed load is
retried later, as TF Serving retries. Every failed load and every load whose files or outputs
differ from one of the published sources is recorded.

This is test code: it is not TF Serving and does not claim to be; it reproduces the one decision
that matters here (which directories get loaded, and when).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

from airflow_savedmodel.storage.manifest import MANIFEST_PATH

_LOADER = r"""
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np
import tensorflow as tf
tf.get_logger().setLevel("ERROR")
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    try:
        with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
            meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], request["path"])
            signature = meta.signature_def["serving_default"]
            feeds = {signature.inputs[k].name: np.asarray(v, np.float32) for k, v in request["inputs"].items()}
            fetches = {k: t.name for k, t in signature.outputs.items()}
            outputs = session.run(fetches, feeds)
        reply = {"ok": True, "outputs": {k: np.asarray(v).tolist() for k, v in outputs.items()}}
    except Exception as exc:
        reply = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:400]}"}
    print(json.dumps(reply), flush=True)
"""


class TensorFlowLoader:
    """One long-lived TensorFlow process answering load requests (TF takes seconds to import)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LOADER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
        )
        self.lock = threading.Lock()
        assert json.loads(self._line())["ready"]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the TensorFlow loader process died")
        return line

    def load(self, path: str, inputs: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        with self.lock:
            self.proc.stdin.write(json.dumps({"path": path, "inputs": inputs}) + "\n")
            self.proc.stdin.flush()
            return dict(json.loads(self._line()))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def tree_crcs(root: Path) -> dict[str, int]:
    """crc32c of every file below ``root`` but this tool's manifest (what a version must hold)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_file() and rel != MANIFEST_PATH:
            out[rel] = int(google_crc32c.value(p.read_bytes()))
    return out


@dataclass
class Published:
    """A source model the watcher may legitimately load: its files and its outputs on the probe."""

    files: dict[str, int]
    outputs: dict[str, Any]


@dataclass
class Load:
    version: int
    ok: bool
    error: str | None = None
    matches: bool = True
    missing: tuple[str, ...] = ()  # files of the closest published source the snapshot lacked
    differing: tuple[str, ...] = ()  # files the snapshot holds with other bytes than it, or in excess


@dataclass
class ServingWatcher:
    """Poll ``base`` on ``fs`` like TF Serving; see the module docstring."""

    fs: Any
    base: str
    loader: TensorFlowLoader
    probe: dict[str, Any]
    sources: list[Published] = field(default_factory=list)
    config: tuple[Any, str] | None = None  # (filesystem, path) of the model config file
    model_name: str = ""
    interval: float = 0.05
    loads: list[Load] = field(default_factory=list)
    polls: int = 0
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._loaded: set[int] = set()
        self._retry_at: dict[int, float] = {}
        self._work: queue.Queue[tuple[int, str] | None] = queue.Queue()
        self._tmp = tempfile.mkdtemp(prefix="watcher-")
        self._threads = [
            threading.Thread(target=self._poll_loop, daemon=True),
            threading.Thread(target=self._load_loop, daemon=True),
        ]

    def add_source(self, model_dir: Path) -> None:
        result = self.loader.load(str(model_dir), self.probe)
        assert result["ok"], result
        self.sources.append(Published(tree_crcs(model_dir), result["outputs"]))

    def __enter__(self) -> ServingWatcher:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self.settle()
        self._stop.set()
        self._work.put(None)
        for t in self._threads:
            t.join(60)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def settle(self, quiet: float = 0.5, timeout: float = 60.0) -> None:
        """Wait until every aspired version has been tried and nothing new appeared for ``quiet`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            polls = self.polls
            time.sleep(quiet)
            if self._work.empty() and self.polls > polls and not self._pending():
                return

    def _pending(self) -> bool:
        """A load under way (its retry time is the in-flight sentinel). A version whose load
        failed has been tried: its retries go on, but settling does not wait for them (a version
        killed before saved_model.pb never loads)."""
        in_flight = time.monotonic() + 1000
        return any(n not in self._loaded and at > in_flight for n, at in self._retry_at.items())

    # ---- what TF Serving aspires -----------------------------------------------------------------

    def _numeric_children(self) -> list[int]:
        self.fs.invalidate_cache(self.base)
        try:
            entries = self.fs.ls(self.base, detail=True)
        except FileNotFoundError:
            return []
        names = [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries]
        return sorted(int(n) for n in names if n.isdigit())

    def aspired(self) -> list[int]:
        present = self._numeric_children()
        if self.config is None:
            return present[-1:]
        from google.protobuf import text_format
        from tensorflow_serving.config import model_server_config_pb2

        fs, path = self.config
        try:
            text = fs.cat_file(path).decode()
        except FileNotFoundError:
            return []
        config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
        for model in config.model_config_list.config:
            if model.name != self.model_name:
                continue
            policy = model.model_version_policy
            if policy.WhichOneof("policy_choice") == "specific":
                return [int(n) for n in policy.specific.versions if int(n) in present]
            return present[-max(1, policy.latest.num_versions) :]
        return []

    # ---- loops -----------------------------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                for number in self.aspired():
                    if number in self._loaded or self._retry_at.get(number, 0) > now:
                        continue
                    self._retry_at[number] = now + 10**6  # until the load finishes
                    self._work.put((number, self._snapshot(number)))
            except Exception as exc:  # a listing error is what TF Serving logs and retries too
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.polls += 1
            time.sleep(self.interval)

    def _snapshot(self, number: int) -> str:
        target = os.path.join(self._tmp, f"{number}-{time.monotonic_ns()}")
        source = f"{self.base.rstrip('/')}/{number}"
        os.makedirs(target)
        try:
            if hasattr(self.fs, "local_file") or self.fs.protocol in ("file", ("file", "local")):
                shutil.copytree(source, target, dirs_exist_ok=True)
            else:
                self.fs.invalidate_cache()
                self.fs.get(source + "/", target + "/", recursive=True)
        except (FileNotFoundError, OSError, shutil.Error) as exc:
            self.errors.append(f"snapshot of {number}: {type(exc).__name__}: {exc}")
        return target

    def _load_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            number, path = item
            result = self.loader.load(path, self.probe)
            if result["ok"]:
                files = tree_crcs(Path(path))
                matches = any(files == s.files and _close(result["outputs"], s.outputs) for s in self.sources)
                closest = min(self.sources, key=lambda s: len(set(s.files.items()) ^ set(files.items())))
                missing = tuple(sorted(set(closest.files) - set(files)))
                differing = tuple(sorted(f for f in files if closest.files.get(f) != files[f]))
                self.loads.append(Load(number, True, None, matches, missing, differing))
                self._loaded.add(number)
            else:
                self.loads.append(Load(number, False, result["error"]))
                self._retry_at[number] = time.monotonic() + 0.5
            shutil.rmtree(path, ignore_errors=True)

    # ---- figures ---------------------------------------------------------------------------------

    @property
    def failed(self) -> list[Load]:
        return [x for x in self.loads if not x.ok]

    @property
    def mismatched(self) -> list[Load]:
        return [x for x in self.loads if x.ok and not x.matches]

    @property
    def served(self) -> list[int]:
        return sorted({x.version for x in self.loads if x.ok})


def _close(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(np.allclose(a[k], b[k], rtol=1e-6, atol=1e-6) for k in a)
