"""``app``: applications wrapped in :func:`wsgiref.validate.validator`.

The validator asserts PEP 3333 rules on both sides — the environ, ``wsgi.input`` and
``wsgi.errors`` the server gives, and how the server drives ``start_response``, the
write callable and the iterable (including that ``close()`` is called) — and warns
(``WSGIWarning``) about softer problems. Run the server with ``PYTHONWARNINGS=error``.
"""

from __future__ import annotations

import io
from wsgiref.validate import validator

TEXT = [("Content-Type", "text/plain")]


def _read_all(inp, environ) -> bytes:
    # the validator's InputWrapper allows only read(size), so loop on a size
    out = b""
    while piece := inp.read(8192):
        out += piece
    return out


def _inner(environ, start_response):
    path = environ["PATH_INFO"]
    inp = environ["wsgi.input"]
    if path == "/":
        start_response("200 OK", [*TEXT, ("Content-Length", "5")])
        return [b"hello"]
    if path == "/gen":
        start_response("200 OK", TEXT)
        return (chunk for chunk in (b"a", b"", b"b", b"c"))
    if path == "/write":
        w = start_response("200 OK", TEXT)
        w(b"written;")
        return [b"returned"]
    if path == "/echo":
        body = _read_all(inp, environ)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [body]
    if path == "/lines":
        first = inp.readline()
        second = inp.readline(3)
        rest = inp.readlines()
        start_response("200 OK", TEXT)
        return [b"|".join([first, second, *rest])]
    if path == "/iter":
        lines = list(inp)
        start_response("200 OK", TEXT)
        return [b"|".join(lines)]
    if path == "/errors":
        environ["wsgi.errors"].write("validated-errors-write\n")
        environ["wsgi.errors"].writelines(["validated-errors-writelines\n"])
        environ["wsgi.errors"].flush()
        start_response("200 OK", TEXT)
        return [b"logged"]
    if path == "/file":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"file-wrapper-bytes"), 4)
    if path == "/nocontent":
        start_response("204 No Content", [])
        return []
    if path == "/notmodified":
        start_response("304 Not Modified", [])
        return []
    start_response("404 Not Found", TEXT)
    return [b"not found"]


app = validator(_inner)
