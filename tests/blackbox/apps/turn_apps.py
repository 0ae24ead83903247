"""``app`` for ``test_turn.py``: whole and streamed bodies in every shape the inline
path's end-of-turn writes (``src/http/turn.rs``) tell apart.

Every body is a function of the query (``body_for``), so a test knows each response's
bytes. ``t`` is the :func:`apps.record` token and ``id`` names the request in it: an
iterable with ``close()`` records ``close:<id>`` (the test counts them), a generator
that must not be held records what it saw.

Paths (``size`` bytes of body, ``n`` chunks):

- ``/list``: a one-element list (whole); ``/empty``: ``[]`` with Content-Length 0.
- ``/flask``: an iterable with ``close()`` whose one item is the declared
  Content-Length (whole; the rest runs in a spawned task).
- ``/chunks``: an iterable with ``close()`` yielding ``n`` chunks, Content-Length
  declared (streamed); ``/gen``: a generator of ``n`` chunks, no length (chunked).
- ``/write``: ``n`` ``write()`` calls, then ``[]``.
- ``/status?code=204|304``: no body.
- ``/echo``: the request body back, whole; ``/echo-chunked``: the same, read to the
  end (a chunked request).
- ``/sleep?s=``: ``time.sleep`` in the call, then a whole body.
- ``/drip?max=&pause=``: a generator of small rows, ``pause`` s apart, until the
  client goes or ``max`` s pass.
- ``/first-then-poll?marker=&wait=&cl=``: yields ``b"first"``, then polls (bounded)
  for the file ``marker``, which the client creates once it has ``b"first"``, and
  yields ``b"+seen"`` or ``b"+late"`` (the Content-Length, with ``cl=1``, counts the
  ``b"first"`` only: the body is whole after the first item).
"""

from __future__ import annotations

import hashlib
import os
import time

from apps import query, record

TEXT = ("Content-Type", "text/plain")


def body_for(tag: str, size: int) -> bytes:
    """``size`` bytes that differ for every ``tag`` (the test side computes the same)."""
    seed = hashlib.sha256(tag.encode()).digest()
    whole = (seed * (size // len(seed) + 1))[:size]
    return whole


def chunks_for(tag: str, n: int, size: int) -> list[bytes]:
    return [body_for(f"{tag}/{i}", size) for i in range(n)]


class Closing:
    """A framework-like iterable: yields ``chunks``, records ``close:<id>``."""

    def __init__(self, environ, chunks):
        self.environ = environ
        self.chunks = iter(chunks)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.chunks)

    def close(self):
        record(self.environ, "close:" + query(self.environ).get("id", ""))


def app(environ, start_response):
    q = query(environ)
    path = environ["PATH_INFO"]
    tag = q.get("tag", path)
    size = int(q.get("size", "100"))
    n = int(q.get("n", "3"))
    if path == "/list":
        body = body_for(tag, size)
        start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
        return [body]
    if path == "/empty":
        start_response("200 OK", [TEXT, ("Content-Length", "0")])
        return []
    if path == "/flask":
        body = body_for(tag, size)
        start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
        return Closing(environ, [body])
    if path == "/chunks":
        parts = chunks_for(tag, n, size)
        length = str(sum(map(len, parts)))
        start_response("200 OK", [TEXT, ("Content-Length", length)])
        return Closing(environ, parts)
    if path == "/gen":
        start_response("200 OK", [TEXT])
        return generate(environ, chunks_for(tag, n, size))
    if path == "/write":
        write = start_response("200 OK", [TEXT])
        for part in chunks_for(tag, n, size):
            write(part)
        return []
    if path == "/status":
        code = q.get("code", "204")
        start_response(f"{code} X", [("X-Tag", tag)])
        return []
    if path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        data = environ["wsgi.input"].read(length)
        body = b"echo:" + data
        start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
        return [body]
    if path == "/echo-chunked":
        data = environ["wsgi.input"].read()
        body = b"echo:" + data
        start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
        return [body]
    if path == "/sleep":
        time.sleep(float(q.get("s", "0.3")))
        body = b"slept:" + tag.encode()
        start_response("200 OK", [TEXT, ("Content-Length", str(len(body)))])
        return [body]
    if path == "/drip":
        start_response("200 OK", [TEXT])
        return drip(float(q.get("max", "30")), float(q.get("pause", "0")))
    if path == "/first-then-poll":
        headers = [TEXT]
        if q.get("cl") == "1":
            headers.append(("Content-Length", "5"))
        start_response("200 OK", headers)
        return first_then_poll(environ, q["marker"], float(q.get("wait", "5")))
    start_response("404 Not Found", [TEXT, ("Content-Length", "9")])
    return [b"not found"]


def generate(environ, parts):
    try:
        yield from parts
    finally:
        record(environ, "close:" + query(environ).get("id", ""))


def drip(limit: float, pause: float):
    """Small rows, ``pause`` s apart (a CSV export, row by row), for ``limit`` s."""
    end = time.monotonic() + limit
    row = b"row,of,a,streamed,export\n"
    while time.monotonic() < end:
        if pause:
            time.sleep(pause)
        yield row


def first_then_poll(environ, marker: str, wait: float):
    yield b"first"
    # The client creates ``marker`` once it has read b"first": with the block sent
    # before this step runs, the marker is there at once.
    deadline = time.monotonic() + wait
    seen = False
    while time.monotonic() < deadline:
        if os.path.exists(marker):
            seen = True
            break
        time.sleep(0.01)
    record(environ, "seen" if seen else "late")
    yield b"+seen" if seen else b"+late"
