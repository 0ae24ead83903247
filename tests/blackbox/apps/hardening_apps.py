"""Applications for the request-hardening tests (corpus, limits, response headers, proxies).

- ``echo``: records a ``begin`` event on entry, reads the whole body from ``wsgi.input``,
  records ``done`` (with the body length), then answers with the CGI part of the environ
  (every ``str`` value), ``wsgi.url_scheme`` and the body (latin-1) as JSON. Events go to
  ``$FERRULE_TEST_STATE/calls.jsonl``, one JSON object a line, keyed by ``REMOTE_PORT``
  so a test can tell which of its connections reached the application.
- ``hop``: answers ``ok`` with the response headers the path names (``/te``, ``/keep-alive``,
  ``/upgrade``, ``/trailer``, ``/te-header``, ``/proxy``, ``/close``, ``/plain``), which a
  WSGI application must not send (PEP 3333 hop-by-hop headers) except ``Connection``.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

_LOCK = threading.Lock()


def _record(environ: dict, event: str, **extra: object) -> None:
    state = os.environ.get("FERRULE_TEST_STATE")
    if not state:
        return
    line = {
        "event": event,
        "port": environ.get("REMOTE_PORT"),
        "method": environ.get("REQUEST_METHOD"),
        "path": environ.get("PATH_INFO"),
        "query": environ.get("QUERY_STRING"),
        **extra,
    }
    with _LOCK, open(Path(state) / "calls.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def calls(state_dir: Path) -> list[dict]:
    """Every event recorded so far (test side)."""
    path = Path(state_dir) / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def echo(environ, start_response):
    _record(environ, "begin")
    body = environ["wsgi.input"].read()
    _record(environ, "done", body_len=len(body))
    payload = {
        "environ": {k: v for k, v in environ.items() if isinstance(v, str)},
        "body": body.decode("latin-1"),
    }
    data = json.dumps(payload, sort_keys=True).encode("ascii")
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


HOP_HEADERS = {
    "/te": [("Transfer-Encoding", "chunked")],
    "/keep-alive": [("Keep-Alive", "timeout=99")],
    "/upgrade": [("Upgrade", "websocket")],
    "/trailer": [("Trailer", "X-Checksum")],
    "/te-header": [("TE", "trailers")],
    "/proxy": [("Proxy-Authenticate", 'Basic realm="x"')],
    "/close": [("Connection", "close")],
    "/plain": [],
}


def hop(environ, start_response):
    extra = HOP_HEADERS.get(environ["PATH_INFO"], [])
    start_response(
        "200 OK",
        [("Content-Type", "text/plain"), ("Content-Length", "2"), ("X-App", "hop"), *extra],
    )
    return [b"ok"]
