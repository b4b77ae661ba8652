"""The update repository, read-only over plain HTTP in TUF's standard layout.

`GET /metadata/timestamp.json`, `/metadata/<V>.root.json`, `/targets/<dir>/<sha256>.<name>`:
what a stock TUF client (python-tuf's ngclient, go-tuf) fetches, with nothing of fedota's, and
what a CDN can front. Targets are immutable (their name holds their hash) and cached for a year;
`timestamp.json` must not be cached past its own short expiry. `Range: bytes=N-` resumes a cut
download. Serves nothing but the repository's files, and never writes.
"""

from __future__ import annotations

import logging
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from fedota.server.config import Address
from fedota.server.runtime import Runtime
from fedota.server.updates.files import UnknownFile, resolve

logger = logging.getLogger("fedota.server.repository")
_RANGE = re.compile(r"bytes=(?P<start>[0-9]{1,19})-")


class RepositoryHTTPServer:
    """The repository over HTTP: bound on construction (so a busy port fails before anything
    else changes), serving from `start(runtime)` until `stop()`.

    Raises (on construction):
        OSError: the address cannot be bound.
    """

    def __init__(self, address: Address) -> None:
        self._handler = type("Handler", (_Handler,), {})
        self._server = ThreadingHTTPServer((address.host, address.port), self._handler)
        self._server.daemon_threads = True
        self.address = address.with_port(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self, runtime: Runtime) -> None:
        self._handler.runtime = runtime
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fedota-repository-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    runtime: Runtime
    server_version = "fedota-repository"
    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        path = unquote(urlsplit(self.path).path).lstrip("/")
        try:
            with self.runtime.database.session() as session:
                found = resolve(session, path)
        except UnknownFile:
            self._plain(HTTPStatus.NOT_FOUND, "not a file of the update repository\n", body)
            return
        blobs = self.runtime.blobs
        size = blobs.size(found.blob_sha256)
        start = 0
        requested = self.headers.get("Range")
        if requested is not None:
            match = _RANGE.fullmatch(requested.strip())
            if match is None or int(match["start"]) >= max(size, 1):
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(match["start"])
        self.send_response(HTTPStatus.PARTIAL_CONTENT if start else HTTPStatus.OK)
        self.send_header(
            "Content-Type", "application/json" if found.is_metadata else "application/octet-stream"
        )
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        fixed_name = path != "metadata/timestamp.json"
        self.send_header(
            "Cache-Control", "public, max-age=31536000, immutable" if fixed_name else "no-cache"
        )
        self.end_headers()
        if body:
            for chunk in blobs.open_range(found.blob_sha256, start):
                self.wfile.write(chunk)

    def _plain(self, status: HTTPStatus, text: str, body: bool) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.address_string(), format % args)


__all__ = ["RepositoryHTTPServer"]
