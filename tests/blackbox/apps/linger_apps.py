"""``app`` for ``test_linger.py``: large deterministic bodies, closing or not.

- ``/big?id=X&size=N``: :func:`body` of ``X``, ``N`` bytes, with its Content-Length;
  ``close=1`` adds ``Connection: close`` (the application ends the connection). The
  request body, if any, is read whole first.
"""

from __future__ import annotations

import hashlib

from apps import query


def body(tag: str, size: int) -> bytes:
    """``size`` bytes that differ for every ``tag`` (the test side computes the same)."""
    seed = hashlib.sha256(tag.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def app(environ, start_response):
    q = query(environ)
    environ["wsgi.input"].read()
    if environ.get("PATH_INFO") != "/big":
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    out = body(q.get("id", ""), int(q.get("size", "0")))
    headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(out)))]
    if q.get("close") == "1":
        headers.append(("Connection", "close"))
    start_response("200 OK", headers)
    return [out]
