"""What a running TensorFlow Serving says about a model version, through its REST API, and the
replicas a fleet of TF Serving processes is made of.

``GET /v1/models/{name}/versions/{N}`` (or ``/labels/{label}``, or neither: every version)
answers ``{"model_version_status": [{"version": "N", "state": "START|LOADING|AVAILABLE|
UNLOADING|END", "status": {"error_code": "OK|...", "error_message": "..."}}]}``; a version the
server does not know (yet) is a 404. A version that failed to load ends in END with the
loader's error. Blocking and asyncio clients share the parsing, so a sensor's poke and its
trigger (on the triggerer's event loop, with aiohttp) decide alike. No Airflow imports.

A :class:`Fleet` is TF Serving as its replicas: a list of base URLs, or one
``dns+http(s)://NAME:PORT`` whose DNS answers (A and AAAA records) are the replicas, as a
Kubernetes headless Service gives, resolved again whenever the replicas are asked for.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Endpoint:
    """Where TF Serving's REST API answers: ``url`` (``http(s)://host:8501``), extra headers (a
    bearer token), and TLS verification (True, False, or a CA bundle's path). Header values are
    never printed."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    verify: bool | str = True
    timeout: float = TIMEOUT_SECONDS
    host: str | None = None  # a replica found by DNS: the name TLS checks and the Host header carries

    def __repr__(self) -> str:
        return f"Endpoint({redact(self.url)!r}, headers={sorted(self.headers)}, verify={self.verify!r})"

    @property
    def replica(self) -> str:
        """The replica's name in messages and records: ``host:port`` of its URL."""
        parsed = urllib.parse.urlsplit(self.url)
        return parsed.netloc.rsplit("@", 1)[-1] or self.display

    def request_headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **dict(self.headers)}
        if self.host:
            port = urllib.parse.urlsplit(self.url).port
            headers["Host"] = f"{self.host}:{port}" if port else self.host
        return headers

    @property
    def display(self) -> str:
        return redact(self.url.rstrip("/"))

    def model_url(self, model: str, *, label: str | None = None, version: int | str | None = None) -> str:
        return status_url(self.url, model, version, label)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https://"):
            return None
        if self.verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if isinstance(self.verify, str):
            return ssl.create_default_context(cafile=self.verify)
        return ssl.create_default_context()

    def open(self, url: str, body: bytes | None = None) -> tuple[int, bytes]:
        """(HTTP status, body) of one GET (or POST with ``body``); transport failures raise OSError."""
        request = urllib.request.Request(
            url, data=body, headers=self.request_headers(), method="POST" if body else "GET"
        )
        context = self.ssl_context()
        opener = (
            urllib.request.build_opener(_NamedHTTPSHandler(context, self.host))
            if self.host and context is not None
            else None
        )
        try:
            if opener is not None:
                with opener.open(request, timeout=self.timeout) as answer:
                    return answer.status, answer.read()
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


class _NamedHTTPSHandler(urllib.request.HTTPSHandler):
    """https to an address found by DNS, with TLS checking the certificate against the name."""

    def __init__(self, context: ssl.SSLContext, name: str) -> None:
        super().__init__(context=context)
        self.context, self.name = context, name

    def https_open(self, req: urllib.request.Request) -> Any:
        context, name = self.context, self.name

        class Connection(http.client.HTTPSConnection):
            def connect(self) -> None:
                http.client.HTTPConnection.connect(self)
                self.sock = context.wrap_socket(self.sock, server_hostname=name)

        return self.do_open(Connection, req)


DNS_SCHEME = "dns+"


@dataclass(frozen=True)
class Fleet:
    """TF Serving as the replicas a rollout waits for and judges one by one.

    ``servers``: one base URL per replica, or one ``dns+http(s)://NAME:PORT`` whose DNS answers
    are the replicas (``?nameserver=HOST[:PORT]`` asks that DNS server instead of the system's
    resolver). Headers, TLS verification and the timeout apply to every replica. One URL is a
    fleet of one.
    """

    servers: tuple[str, ...]
    headers: Mapping[str, str] = field(default_factory=dict)
    verify: bool | str = True
    timeout: float = TIMEOUT_SECONDS

    def __repr__(self) -> str:  # header values (a bearer token) are never printed
        return f"Fleet({self.display!r}, headers={sorted(self.headers)}, verify={self.verify!r})"

    def __post_init__(self) -> None:
        if not self.servers:
            raise ServingError("no TF Serving given: a fleet needs a URL, a list of URLs or a dns+ name")
        if any(s.startswith(DNS_SCHEME) for s in self.servers) and len(self.servers) > 1:
            raise ServingError("a dns+ name stands for the whole fleet: give it alone, not in a list")

    @property
    def discovered(self) -> bool:
        """Whether the replicas are a DNS name's answers (and may change between two calls)."""
        return self.servers[0].startswith(DNS_SCHEME)

    @property
    def display(self) -> str:
        return ", ".join(redact(s.split("?", 1)[0].rstrip("/")) for s in self.servers)

    def replicas(self) -> list[Endpoint]:
        """Each replica's endpoint, the DNS name resolved now (sorted by address)."""
        if not self.discovered:
            return [Endpoint(s, self.headers, self.verify, self.timeout) for s in self.servers]
        parsed = urllib.parse.urlsplit(self.servers[0][len(DNS_SCHEME) :])
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ServingError("a dns+ fleet is dns+http://NAME:PORT or dns+https://NAME:PORT", self.display)
        name = parsed.hostname
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        nameserver = urllib.parse.parse_qs(parsed.query).get("nameserver", [None])[0]
        out = []
        for address in resolve_addresses(name, port, nameserver):
            host = f"[{address}]" if ":" in address else address
            url = f"{parsed.scheme}://{host}:{port}{parsed.path}".rstrip("/")
            out.append(Endpoint(url, self.headers, self.verify, self.timeout, host=name))
        return out


def fleet(servers: str | Endpoint | Fleet | list[str] | tuple[str, ...]) -> Fleet:
    """A Fleet from what a user gives: one URL (a fleet of one), a list, or an Endpoint."""
    if isinstance(servers, Fleet):
        return servers
    if isinstance(servers, Endpoint):
        return Fleet((servers.url,), servers.headers, servers.verify, servers.timeout)
    if isinstance(servers, str):
        servers = [s.strip() for s in servers.split(",") if s.strip()]
    return Fleet(tuple(servers))


def resolve_addresses(name: str, port: int, nameserver: str | None = None) -> list[str]:
    """Every address ``name`` resolves to (A and AAAA), sorted; from ``nameserver`` when given
    (``HOST[:PORT]``), else from the system's resolver. A name that resolves to nothing is an
    error naming it: a fleet of no replicas would pass every check."""
    try:
        if nameserver:
            found = _ask_nameserver(name, nameserver)
        else:
            found = {str(info[4][0]) for info in socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)}
    except (OSError, ValueError) as exc:
        raise ServingError(f"cannot resolve {name}: {exc}", name) from None
    if not found:
        raise ServingError(f"{name} resolves to no address: no replica to ask", name)
    return sorted(found, key=lambda a: (ipaddress.ip_address(a).version, ipaddress.ip_address(a)))


def _ask_nameserver(name: str, nameserver: str) -> set[str]:
    import dns.exception
    import dns.resolver

    host, _, port = nameserver.rpartition(":") if nameserver.count(":") == 1 else (nameserver, "", "")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [host or nameserver]
    resolver.port = int(port or 53)
    resolver.lifetime = 5.0
    found: set[str] = set()
    for kind in ("A", "AAAA"):
        try:
            found |= {r.to_text() for r in resolver.resolve(name, kind)}
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as exc:
            raise OSError(f"{type(exc).__name__}: {exc}") from None
    return found


def endpoint(server: str | Endpoint) -> Endpoint:
    """An Endpoint for a bare URL (local use: no headers, default TLS verification)."""
    return server if isinstance(server, Endpoint) else Endpoint(server)


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
    server: str | Endpoint, model: str, version: int | str | None = None, label: str | None = None
) -> VersionStatus:
    """Ask the server (blocking)."""
    where = endpoint(server)
    url = where.model_url(model, version=version, label=label)
    status, body = where.open(url)
    return parse_status(status, body, url, version)


async def afetch_status(
    server: str | Endpoint,
    model: str,
    version: int | str | None = None,
    label: str | None = None,
    session: Any = None,
) -> VersionStatus:
    """Ask the server from an event loop (aiohttp), never blocking it; ``session`` (from
    :func:`client_session`) keeps connections and TLS set-up across a waiter's polls."""
    where = endpoint(server)
    url = where.model_url(model, version=version, label=label)
    if session is None:
        async with client_session(where) as own:
            return await afetch_status(where, model, version, label, own)
    context = where.ssl_context()
    extra: dict[str, Any] = {}
    if where.host:  # a replica found by DNS: its name for TLS and in the Host header
        extra["headers"] = {"Host": where.request_headers()["Host"]}
        if context is not None:
            extra["server_hostname"] = where.host
    async with session.get(url, ssl=context if context is not None else True, **extra) as answer:
        return parse_status(answer.status, await answer.read(), url, version)


def client_session(where: Endpoint) -> Any:
    """An aiohttp session with the endpoint's headers and timeout (use with ``async with``)."""
    import aiohttp

    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=where.timeout), headers=dict(where.headers)
    )


def is_model_url(url: str) -> bool:
    """Whether ``url`` is a TF Serving REST model URL (``http://host:8501/v1/models/NAME[...]``),
    the same URL of each replica separated by commas, or ``dns+http://NAME:8501/v1/models/...``."""
    parts = [p.strip() for p in url.split(",")]
    return all(
        p.removeprefix(DNS_SCHEME).startswith(("http://", "https://")) and "/v1/models/" in p for p in parts
    ) and (len(parts) == 1 or not any(p.startswith(DNS_SCHEME) for p in parts))


def fetch_signatures(url: str, server: Endpoint | None = None) -> Baseline:
    """The signatures TF Serving serves at a model URL; for a fleet (URLs separated by commas, or
    ``dns+http://NAME:PORT/v1/models/...``) each replica is asked, and they must agree: clients
    reach any of them, so a candidate is compared with what every replica serves."""
    parts = [p.strip() for p in url.split(",")]
    if len(parts) == 1 and not url.startswith(DNS_SCHEME):
        return _replica_signatures(url, server)
    path, _, query = ("/v1/models/" + parts[0].split("/v1/models/", 1)[1]).partition("?")
    servers = tuple(p.split("/v1/models/", 1)[0] + (f"?{query}" if query else "") for p in parts)
    kept = server or Endpoint(servers[0].removeprefix(DNS_SCHEME))
    replicas = Fleet(servers, kept.headers, kept.verify, kept.timeout).replicas()
    found = [(r, _replica_signatures(r.url + path, r)) for r in replicas]
    first_replica, first = found[0]
    for replica, baseline in found[1:]:
        if dict(baseline.signatures) != dict(first.signatures):
            raise ServingError(
                f"replicas serve different signatures ({first_replica.replica} and {replica.replica}): "
                "a rollout is under way; compare once every replica serves the same version",
                redact(url),
            )
    return Baseline(redact(url), first.signatures)


def _replica_signatures(url: str, server: Endpoint | None = None) -> Baseline:
    """The signatures a running TF Serving exposes for a model (REST ``.../metadata``; ``url``:
    ``http://host:8501/v1/models/NAME`` optionally with ``/versions/N`` or ``/labels/L``;
    ``server``: the connection's headers and TLS settings, when the URL is behind one)."""
    from google.protobuf import json_format

    from airflow_savedmodel.format.signatures import signature
    from airflow_savedmodel.protos import meta_graph_pb2

    target = url.rstrip("/") + "/metadata"
    where = server if server is not None else Endpoint(url)
    try:
        status, body = where.open(target)
        if status != 200:
            raise ServingError(f"HTTP {status}: {body[:300]!r}", redact(target))
        doc = json.loads(body)
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
