"""``app`` reads ``wsgi.input`` in the way the path asks.

- ``/echo``: ``read()`` and answer with the same bytes (Content-Length set);
  ``?mode=read-1`` uses ``read(-1)``, ``?mode=chunks&n=N`` loops on ``read(N)``.
- ``/pieces?mode=...``: JSON ``{"pieces": [...], "after": ...}`` — every value returned by
  ``read()``, ``read(-1)``, ``read(n)`` (loop), ``readline()`` (loop), ``readline(n)``
  (loop), ``readlines()``, ``readlines(hint)`` or iteration, as latin-1 text; ``after`` is a
  further ``read()`` past EOF.
- ``/ignore``: never touches the body.
- ``/reject``: 403 without reading (an ``Expect: 100-continue`` refusal).
"""

from __future__ import annotations

import json

from apps import query, record


def read_pieces(inp, mode: str, n: int) -> list[bytes]:
    if mode == "read":
        return [inp.read()]
    if mode == "read-1":
        return [inp.read(-1)]
    if mode == "read-none":
        return [inp.read(None)]
    out = []
    if mode == "readn":
        while piece := inp.read(n):
            out.append(piece)
        return out
    if mode == "readline":
        while line := inp.readline():
            out.append(line)
        return out
    if mode == "readline-n":
        while line := inp.readline(n):
            out.append(line)
        return out
    if mode == "readlines":
        return list(inp.readlines())
    if mode == "iter":
        return list(inp)
    raise ValueError(f"unknown mode {mode!r}")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = query(environ)
    inp = environ["wsgi.input"]
    if path == "/echo":
        mode = q.get("mode", "read")
        if mode == "chunks":
            data = b"".join(read_pieces(inp, "readn", int(q.get("n", "8192"))))
        else:
            data = inp.read(-1) if mode == "read-1" else inp.read()
        record(environ, f"read:{len(data)}")
        start_response(
            "200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(data)))],
        )
        return [data]
    if path == "/pieces":
        pieces = read_pieces(inp, q.get("mode", "read"), int(q.get("n", "0") or 0))
        after = inp.read()
        data = json.dumps(
            {"pieces": [p.decode("latin-1") for p in pieces], "after": after.decode("latin-1")}
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [data]
    if path == "/ignore":
        record(environ, "ignored")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "7")])
        return [b"ignored"]
    if path == "/reject":
        record(environ, "rejected")
        start_response("403 Forbidden", [("Content-Type", "text/plain"), ("Content-Length", "4")])
        return [b"nope"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such path\n"]
