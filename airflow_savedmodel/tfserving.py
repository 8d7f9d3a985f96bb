"""What a running TensorFlow Serving says about a model version, through its REST API.

``GET /v1/models/{name}/versions/{N}`` (or ``/labels/{label}``, or neither: every version)
answers ``{"model_version_status": [{"version": "N", "state": "START|LOADING|AVAILABLE|
UNLOADING|END", "status": {"error_code": "OK|...", "error_message": "..."}}]}``; a version the
server does not know (yet) is a 404. A version that failed to load ends in END with the
loader's error. Blocking and asyncio clients share the parsing, so a sensor's poke and its
trigger (on the triggerer's event loop, with aiohttp) decide alike. No Airflow imports.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from airflow_savedmodel.errors import ServingError
from airflow_savedmodel.format.compat import Baseline
from airflow_savedmodel.location import redact

TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class VersionStatus:
    """One version as the server reports it; ``state`` None: the server does not know it (yet)."""

    version: int | None
    state: str | None
    error_code: str = "OK"
    error_message: str = ""

    @property
    def available(self) -> bool:
        return self.state == "AVAILABLE" and self.error_code == "OK"

    @property
    def failed(self) -> bool:
        return self.error_code not in ("OK", "") or self.state in ("UNLOADING", "END")

    def waiting_for(self) -> str:
        if self.state is None:
            return "not known to the server yet"
        return f"version {self.version} is {self.state}"

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "state": self.state,
            "error_code": self.error_code,
            "error_message": self.error_message,
        }


def status_url(server: str, model: str, version: int | str | None = None, label: str | None = None) -> str:
    """The REST status URL of ``model`` (one version, or the version a label names)."""
    url = f"{server.rstrip('/')}/v1/models/{urllib.parse.quote(model, safe='')}"
    if version is not None and str(version) != "":
        return f"{url}/versions/{int(version)}"
    if label:
        return f"{url}/labels/{urllib.parse.quote(label, safe='')}"
    return url


def parse_status(status: int, body: bytes, url: str, version: int | str | None = None) -> VersionStatus:
    """The status of the asked version from a REST answer (``status``: the HTTP code)."""
    if status == 404:
        return VersionStatus(int(version) if version not in (None, "") else None, None)
    try:
        doc = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ServingError(f"HTTP {status}: not JSON: {body[:200]!r}", redact(url)) from None
    if status != 200:
        raise ServingError(
            f"HTTP {status}: {doc.get('error', doc) if isinstance(doc, dict) else doc}", redact(url)
        )
    entries = doc.get("model_version_status") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ServingError("the answer has no model_version_status", redact(url))
    wanted = [e for e in entries if version in (None, "") or str(e.get("version")) == str(version)]
    if not wanted:
        return VersionStatus(int(version) if version not in (None, "") else None, None)
    entry = max(wanted, key=lambda e: int(e.get("version") or 0))
    status_doc = entry.get("status") or {}
    return VersionStatus(
        int(entry.get("version") or 0),
        str(entry.get("state") or ""),
        str(status_doc.get("error_code") or "OK"),
        str(status_doc.get("error_message") or ""),
    )


def fetch_status(
    server: str, model: str, version: int | str | None = None, label: str | None = None
) -> VersionStatus:
    """Ask the server (blocking)."""
    url = status_url(server, model, version, label)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:
            return parse_status(answer.status, answer.read(), url, version)
    except urllib.error.HTTPError as exc:
        return parse_status(exc.code, exc.read(), url, version)


async def afetch_status(
    server: str, model: str, version: int | str | None = None, label: str | None = None
) -> VersionStatus:
    """Ask the server from an event loop (aiohttp), never blocking it."""
    import aiohttp

    url = status_url(server, model, version, label)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as answer:
        return parse_status(answer.status, await answer.read(), url, version)


def is_model_url(url: str) -> bool:
    """Whether ``url`` is a TF Serving REST model URL (``http://host:8501/v1/models/NAME[...]``)."""
    return url.startswith(("http://", "https://")) and "/v1/models/" in url


def fetch_signatures(url: str) -> Baseline:
    """The signatures a running TF Serving exposes for a model (REST ``.../metadata``; ``url``:
    ``http://host:8501/v1/models/NAME`` optionally with ``/versions/N`` or ``/labels/L``)."""
    from google.protobuf import json_format

    from airflow_savedmodel.format.signatures import signature
    from airflow_savedmodel.protos import meta_graph_pb2

    target = url.rstrip("/") + "/metadata"
    try:
        with urllib.request.urlopen(target, timeout=TIMEOUT_SECONDS) as answer:  # an http(s) URL
            doc = json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        raise ServingError(f"HTTP {exc.code}: {exc.read()[:300]!r}", redact(target)) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ServingError(f"{type(exc).__name__}: {exc}", redact(target)) from None
    found = (
        (((doc.get("metadata") or {}).get("signature_def") or {}).get("signature_def"))
        if isinstance(doc, dict)
        else None
    )
    if not isinstance(found, dict):
        raise ServingError("the metadata answer has no signature_def map", redact(target))
    signatures = {}
    for key, value in found.items():
        proto = json_format.ParseDict(value, meta_graph_pb2.SignatureDef(), ignore_unknown_fields=True)
        signatures[key] = signature(key, proto)
    return Baseline(redact(url), signatures)
