"""A static HTTP server with byte ranges, for tests of remote sources.

Tests use :func:`start` (the ``serve`` fixture in conftest.py);
``python tests/range_server.py FOLDER [LOG [DELAY [FAIL_ONCE [STALL_AFTER]]]]`` serves
FOLDER on 127.0.0.1 at a free port, prints the port on one line, and runs until killed;
with LOG it appends a line per request (``METHOD PATH RANGE START``, START in seconds of
``time.time()``) to that file, with DELAY it answers each request after DELAY seconds (a
remote store's latency). FAIL_ONCE (1) answers each request with 503 the first time it
is made (the same method, path and byte range; a store that is busy now and then: a
client that retries gets everything), STALL_AFTER (> 0) never answers the requests after
the first STALL_AFTER (a connection that hangs); failed and stalled requests are not
logged. A file ``NAME.http-status`` next to ``NAME`` (which need not exist) makes the
server answer every request for ``NAME`` with the status on its first line and the rest
of the file as the body (an expired signed URL: 403; an S3 error: its XML); a test writes
it to make a file fail from then on, mid-run too. Those answers are logged, with the
status as a fifth field. GDAL's ``/vsicurl/`` asks for byte ranges
(``Range: bytes=a-b``), which Python's own ``http.server`` ignores. It must run in a process
of its own: rasterio holds the GIL while GDAL opens a URL, so a server thread in the test's
process could not answer.
"""

from __future__ import annotations

import functools
import http.server
import io
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

LOG: str | None = None  # set by main() from the command line
DELAY = 0.0
FAIL_ONCE = False
STALL_AFTER = 0
_log_lock = threading.Lock()
_count = [0]  # requests so far
_seen: set[tuple[str, str, str]] = set()  # requests made before (FAIL_ONCE)


class _Slice:
    """``length`` bytes of an open file from its current offset, as a readable."""

    def __init__(self, f: BinaryIO, length: int) -> None:
        self._f, self._left = f, length

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data = self._f.read(size) if size > 0 else b""
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._f.close()


def _status_of(path: str) -> tuple[int, bytes] | None:
    """The status and body ``PATH.http-status`` gives, if it exists."""
    try:
        with open(path + ".http-status", "rb") as f:
            first, _, body = f.read().partition(b"\n")
    except OSError:
        return None
    return int(first), body


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def send_head(self) -> Any:
        request = (self.command, self.path, self.headers.get("Range", "-"))
        with _log_lock:
            _count[0] += 1
            n = _count[0]
            first = request not in _seen
            _seen.add(request)
        if FAIL_ONCE and first:
            self.send_error(503, "busy, try again")
            return None
        if STALL_AFTER and n > STALL_AFTER:
            time.sleep(3600)
            return None
        path = self.translate_path(self.path)
        status = _status_of(path)
        if LOG is not None:
            with _log_lock, open(LOG, "a") as log:
                line = f"{self.command} {self.path} {self.headers.get('Range', '-')} {time.time()}"
                log.write(line + (f" {status[0]}" if status else "") + "\n")
        time.sleep(DELAY)
        if status is not None:
            code, body = status
            self.send_response(code)
            self.send_header(
                "Content-Type", "application/xml" if body[:1] == b"<" else "text/plain"
            )
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            return io.BytesIO(body if self.command == "GET" else b"")
        if not os.path.isfile(path):
            self.send_error(404, "not found")
            return None
        size = os.path.getsize(path)
        f = open(path, "rb")  # noqa: SIM115  (closed by the caller, as http.server does)
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if wanted is None:
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            return f
        first = int(wanted.group(1))
        last = min(int(wanted.group(2)) if wanted.group(2) else size - 1, size - 1)
        if first > last:
            f.close()
            self.send_error(416, "range not satisfiable")
            return None
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        f.seek(first)
        return _Slice(f, last - first + 1)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's backlog of 5 drops the connections of many readers opening at once,
    # and each dropped one waits a second for TCP to try again
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that closes early (GDAL does) is not an error here


class Served:
    """A folder served over HTTP: its base URL and the requests it answered."""

    def __init__(self, folder: Path, base: str, log: Path, proc: subprocess.Popen) -> None:
        self.folder, self.base, self.log, self.proc = folder, base, log, proc

    def stop(self) -> None:
        """The server goes away (a network failure)."""
        self.proc.kill()
        self.proc.wait()

    def requests(self) -> list[str]:
        """The paths asked for so far (a line each)."""
        return [line.split()[1] for line in self.log.read_text().splitlines()]

    def starts(self) -> list[float]:
        """When each request came in (``time.time()``)."""
        return [float(line.split()[3]) for line in self.log.read_text().splitlines()]


def start(
    folder: Path, log: Path, delay: float = 0.0, fail_once: bool = False, stall_after: int = 0
) -> Served:
    """Serve ``folder`` from a process of its own (the caller stops it: :meth:`Served.stop`),
    logging each request to ``log`` (``fail_once``, ``stall_after``: see the module)."""
    log.touch()
    args = [sys.executable, __file__, str(folder), str(log), str(delay)]
    args += [str(int(fail_once)), str(stall_after)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return Served(folder, f"http://127.0.0.1:{port}", log, proc)


def main() -> None:
    global LOG, DELAY, FAIL_ONCE, STALL_AFTER
    LOG = sys.argv[2] if len(sys.argv) > 2 else None
    DELAY = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    FAIL_ONCE = len(sys.argv) > 4 and sys.argv[4] == "1"
    STALL_AFTER = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    handler = functools.partial(RangeHandler, directory=sys.argv[1])
    with _Server(("127.0.0.1", 0), handler) as server:
        print(server.server_address[1], flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
