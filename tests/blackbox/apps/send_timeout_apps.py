"""``app`` for the ``--send-timeout`` tests: big responses for clients that stop reading.

- ``/stream?blocks=N&t=TOKEN``: N blocks of :func:`block` (64 KiB each, with
  Content-Length) from an iterable whose ``close()`` records ``closed`` (``started``
  when the application is called).
- ``/file?t=TOKEN``: ``wsgi.file_wrapper`` over ``$FERRULE_TEST_FILE`` (sent with
  sendfile(2) on a plain connection), whose ``close()`` records ``closed``.
- anything else: ``small`` at once.
"""

from __future__ import annotations

import io
import os

from apps import query, record

BLOCK = 64 * 1024


def block(i: int) -> bytes:
    """Block ``i`` of ``/stream``: its number, 8 bytes, repeated to 64 KiB."""
    return (b"%07d\n" % i) * (BLOCK // 8)


class Blocks:
    """The body of ``/stream``: an iterable with a ``close()`` that is recorded."""

    def __init__(self, environ: dict, count: int) -> None:
        self.environ = environ
        self.count = count

    def __iter__(self):
        for i in range(self.count):
            yield block(i)

    def close(self) -> None:
        record(self.environ, "closed")


class RecordingFile(io.FileIO):
    """A real file (so it is sent with sendfile(2)) whose ``close()`` is recorded."""

    def __init__(self, path: str, environ: dict) -> None:
        super().__init__(path, "rb")
        self.environ = environ

    def close(self) -> None:
        if not self.closed:
            record(self.environ, "closed")
        super().close()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    record(environ, "started")
    if path == "/stream":
        count = int(query(environ).get("blocks", "1"))
        headers = [("Content-Type", "text/plain"), ("Content-Length", str(count * BLOCK))]
        start_response("200 OK", headers)
        return Blocks(environ, count)
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        filelike = RecordingFile(os.environ["FERRULE_TEST_FILE"], environ)
        return environ["wsgi.file_wrapper"](filelike)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"small"]
