"""A local HTTP mirror of a GLDv2-layout folder, with Range requests and optional throttling."""

from __future__ import annotations

import http.server
import logging
import mimetypes
import posixpath
import re
import threading
import time
import urllib.parse
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

# Only this machine can reach the mirror unless asked otherwise.
DEFAULT_HOST = "127.0.0.1"
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_SLICE_BYTES = 256 * 1024


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    """Serves files under `root` by GET and HEAD, honouring one `Range: bytes=` range.

    Subclasses may override `send_file_range` to shape or break the body (tests do).
    """

    protocol_version = "HTTP/1.1"  # keep-alive, as S3 and GCS offer
    server_version = "delf-mirror"
    root: Path
    rate_limit: float | None = None  # bytes per second per connection

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def resolve(self) -> Path | None:
        """The file a request names, or None when it is missing or outside the root."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        relative = posixpath.normpath(path).lstrip("/")
        if relative.startswith("..") or relative in ("", "."):
            return None
        candidate = (self.root / relative).resolve()
        if self.root.resolve() not in candidate.parents or not candidate.is_file():
            return None
        return candidate

    def _serve(self, send_body: bool) -> None:
        file = self.resolve()
        if file is None:
            self.send_error(404, "Not Found")
            return
        size = file.stat().st_size
        start, length, status = 0, size, 200
        header = self.headers.get("Range")
        if header:
            span = _parse_range(header, size)
            if span is None:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, length, status = span[0], span[1], 206
        self.send_response(status)
        content_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{start + length - 1}/{size}")
        self.end_headers()
        if send_body and length:
            with open(file, "rb") as handle:
                self.send_file_range(handle, start, length)

    def send_file_range(self, handle: BinaryIO, start: int, length: int) -> None:
        """Sends `length` bytes from `start`, zero-copy, at most `rate_limit` bytes/s."""
        began = time.perf_counter()
        sent = 0
        while sent < length:
            count = min(_SLICE_BYTES, length - sent)
            if self.rate_limit:
                # Wait before each slice, so no byte leaves ahead of the limit.
                ahead = (sent + count) / self.rate_limit - (time.perf_counter() - began)
                if ahead > 0:
                    time.sleep(ahead)
            sent += self.connection.sendfile(handle, start + sent, count)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, length) of a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range, if satisfiable."""
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        start = max(0, size - int(last))
        end = size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return None
    return start, end - start + 1


class MirrorServer:
    """A threaded mirror on `host:port` (port 0 picks a free one), usable as a context manager.

    Args:
      root: the folder laid out like the GLDv2 bucket.
      rate_limit_mb: per-connection limit in MB/s (1 MB = 10^6 bytes), None for none.
      handler: a MirrorHandler subclass, to change how requests are answered.
    """

    def __init__(
        self,
        root: str | Path,
        host: str = DEFAULT_HOST,
        port: int = 0,
        rate_limit_mb: float | None = None,
        handler: type[MirrorHandler] = MirrorHandler,
    ) -> None:
        attributes = {"root": Path(root), "rate_limit": rate_limit_mb and rate_limit_mb * 1e6}
        handler_class = type("BoundMirrorHandler", (handler,), attributes)
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler_class)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> MirrorServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread:
            self._thread.join()

    def __enter__(self) -> MirrorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
