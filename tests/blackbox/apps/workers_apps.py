"""``app`` for the pre-fork tests: every answer names the worker process that served it.

``/`` answers ``pid=<worker pid>`` at once; ``/sleep?s=SECONDS`` first records
``sleeping pid=<pid>`` (see :func:`apps.record`, token ``t``) and sleeps that long.
``/stream?chunks=N`` yields N blocks of :func:`block` (64 KiB each, with Content-Length);
``/upload`` reads ``wsgi.input`` to its end and answers ``length=<bytes read>``.
Importing the module appends ``imported pid=<pid>`` to ``$FERRULE_TEST_STATE/imports.log``:
without ``--preload`` every worker imports it, so the line shows a worker loaded the app.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from wsgiref.validate import validator

from apps import query, record

if os.environ.get("FERRULE_TEST_STATE"):
    with open(Path(os.environ["FERRULE_TEST_STATE"]) / "imports.log", "a") as _f:
        _f.write(f"imported pid={os.getpid()}\n")


BLOCK = 64 * 1024


def block(i: int) -> bytes:
    """Block ``i`` of ``/stream``: its number, 8 bytes, repeated to 64 KiB."""
    return (b"%07d\n" % i) * (BLOCK // 8)


def _stream(count: int):
    for i in range(count):
        yield block(i)


def _inner(environ, start_response):
    if environ["PATH_INFO"] == "/stream":
        count = int(query(environ).get("chunks", "1"))
        length = str(count * BLOCK)
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", length)])
        return _stream(count)
    body = f"pid={os.getpid()}".encode("ascii")
    if environ["PATH_INFO"] == "/upload":
        stream, read = environ["wsgi.input"], 0
        while piece := stream.read(BLOCK):
            read += len(piece)
        body = f"length={read}".encode("ascii")
    if environ["PATH_INFO"] == "/sleep":
        record(environ, f"sleeping pid={os.getpid()}")
        time.sleep(float(query(environ).get("s", "1")))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = validator(_inner)
