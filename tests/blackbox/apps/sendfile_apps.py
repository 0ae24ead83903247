"""``app`` serves the files of ``$FERRULE_TEST_DIR`` through ``wsgi.file_wrapper``.

``/NAME`` sends the file ``NAME`` (opened unbuffered, closed by the server). The query
may add:

- ``seek=N``: move the file's offset to N before wrapping it;
- ``length=N``: declare ``Content-Length: N`` (shorter or longer than the file);
- ``status=CODE``: answer with that status instead of 200 (204, 304);
- ``close=1``: add ``Connection: close``;
- ``t=TOKEN``: record ``close`` (see :func:`apps.record`) when the file is closed.

``/-/ok`` answers ``ok``; any other name is a 404.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from apps import query, record

STATUS = {"200": "200 OK", "204": "204 No Content", "304": "304 Not Modified"}


class RecordingFile(io.FileIO):
    """A real file (it has ``fileno()``) that records its ``close()``."""

    def __init__(self, path: Path, environ: dict) -> None:
        super().__init__(path, "rb")
        self.environ = environ

    def close(self) -> None:
        if not self.closed:
            record(self.environ, "close")
        super().close()


def app(environ, start_response):
    q = query(environ)
    name = environ["PATH_INFO"].lstrip("/")
    if name == "-/ok":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    path = Path(os.environ["FERRULE_TEST_DIR"]) / name
    if "/" in name or not path.is_file():
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such file\n"]
    f = RecordingFile(path, environ)
    if "seek" in q:
        f.seek(int(q["seek"]))
    headers = [("Content-Type", "application/octet-stream")]
    if "length" in q:
        headers.append(("Content-Length", q["length"]))
    if q.get("close") == "1":
        headers.append(("Connection", "close"))
    start_response(STATUS[q.get("status", "200")], headers)
    return environ["wsgi.file_wrapper"](f, 64 * 1024)
