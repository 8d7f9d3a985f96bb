"""Real object-store servers for tests, bound to 127.0.0.1 and stopped by the tests that start them.

GCS: gcp-storage-emulator (a JSON-API server from PyPI) in a subprocess. S3: moto's server mode.
DenyingServer: answers every request 401, as a store does to bad credentials.
FaultProxy: forwards to a real server, adding latency or answering chosen requests with errors.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@dataclass
class Store:
    """A running server: its URL scheme, fsspec options, and a fresh bucket per test."""

    protocol: str
    options: dict[str, Any]

    def fs(self) -> Any:
        return fsspec.filesystem(self.protocol, **self.options)

    def bucket(self) -> str:
        name = f"b{uuid.uuid4().hex[:16]}"
        if self.protocol == "s3":
            self.fs().mkdir(name, region_name="us-west-2")
        else:
            self.fs().mkdir(name)
        return f"{self.protocol}://{name}"


class GcsServer:
    def __init__(self) -> None:
        self.port = free_port()
        exe = Path(sys.executable).parent / "gcp-storage-emulator"
        self.proc = subprocess.Popen(
            [str(exe), "start", "--host=127.0.0.1", f"--port={self.port}", "--in-memory"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
        self.store = Store("gs", {"token": "anon", "endpoint_url": self.endpoint})

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class S3Server:
    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        wait_for_port(self.port)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.store = Store(
            "s3",
            {
                "key": "testing",
                "secret": "testing",
                "client_kwargs": {"endpoint_url": self.endpoint, "region_name": "us-west-2"},
            },
        )

    def stop(self) -> None:
        self.server.stop()


class DenyingServer:
    """An HTTP server on 127.0.0.1 that refuses every request with 401 (bad credentials)."""

    def __init__(self) -> None:
        class Deny(http.server.BaseHTTPRequestHandler):
            def deny(self) -> None:
                body = b'{"error": {"code": 401, "message": "Invalid Credentials"}}'
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = deny

            def log_message(self, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Deny)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SilentServer:
    """A black hole on 127.0.0.1: accepts every connection, reads what is sent, never answers
    (a store behind a proxy or firewall that swallows requests). Stopped by the test."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.setblocking(False)  # held open, never read from or written to
            self.connections.append(conn)

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()
        for conn in self.connections:
            conn.close()


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of a real server (the GCS server): every request is
    forwarded after ``delay`` seconds, unless ``fault(method, path)`` returns a status code,
    which is answered instead with a JSON error body, as GCS answers it."""

    def __init__(self, upstream: str, delay: float = 0.0) -> None:
        import http.client
        import urllib.parse

        target = urllib.parse.urlsplit(upstream)
        proxy = self
        self.delay = delay
        self.fault: Any = lambda method, path: None
        self.mangle: Any = lambda method, path, body: body  # may change a request body in flight
        self.requests: list[tuple[str, str, int]] = []
        self.uploaded = self.downloaded = 0  # object bytes sent (uploads) and received (media downloads)
        lock = threading.Lock()
        upstream_slots = threading.BoundedSemaphore(4)

        class Forward(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real stores do
            timeout = 10  # an idle connection is closed (the client reconnects), never held forever

            def forward(self) -> None:
                if self.path == "/__bytes__":  # the counters, for a proxy in another process
                    total = f"{proxy.uploaded} {proxy.downloaded} {len(proxy.requests)}".encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(total)))
                    self.end_headers()
                    self.wfile.write(total)
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if body is not None:
                    body = proxy.mangle(self.command, self.path, body)
                if "/upload/" in self.path:
                    with lock:
                        proxy.uploaded += length
                if proxy.delay:
                    time.sleep(proxy.delay)
                status = proxy.fault(self.command, self.path)
                if status is not None:
                    proxy.requests.append((self.command, self.path, status))
                    payload = json.dumps(
                        {"error": {"code": status, "message": "injected by the test proxy"}}
                    ).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                if body is not None:
                    headers = {k: v for k, v in headers.items() if k.lower() != "content-length"}
                # The GCS test server answers one request at a time and listens with a backlog
                # of 5: more connections at once than that are dropped and retried by TCP a
                # second later. It is serial anyway, so requests queue here instead.
                with upstream_slots:
                    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                    conn.request(self.command, self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                if "alt=media" in self.path:
                    with lock:
                        proxy.downloaded += len(data)
                proxy.requests.append((self.command, self.path, answer.status))
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        # resumable uploads continue through the proxy, not around it
                        self.send_header(key, value.replace(upstream.rstrip("/"), proxy.endpoint))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def forward_quietly(self) -> None:
                try:
                    self.forward()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up on this request (a test's timeout, a retry)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = forward_quietly

            def log_message(self, *args: Any) -> None:
                return

        class Server(http.server.ThreadingHTTPServer):
            # Clients open many connections at once (16 uploads); the default backlog of 5
            # drops SYNs, which TCP retries a second later: stalls that are the harness's own.
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Forward)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_proxy_main() -> None:
    """``python -m integration.servers UPSTREAM DELAY``: a FaultProxy in its own process (so its
    Python work does not compete with the client's for one interpreter); prints its endpoint."""
    proxy = FaultProxy(sys.argv[1], delay=float(sys.argv[2]))
    print(proxy.endpoint, flush=True)
    try:
        proxy.thread.join()
    except KeyboardInterrupt:
        proxy.stop()


if __name__ == "__main__":
    serve_proxy_main()
