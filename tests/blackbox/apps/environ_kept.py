"""``app`` keeps or changes its environ on request, and reports on what it kept.

A keep-alive connection's next request reuses the last request's environ dict only
when the application neither kept nor changed it (``src/py/environ.rs``). ``/keep``
keeps its environ in :data:`KEPT`; ``/change`` adds a key to its own and replaces
``PATH_INFO``; ``/report`` answers, as JSON, with what the kept environ holds now and
whether its own environ has any trace of an earlier request.
"""

from __future__ import annotations

import json

KEPT: list[dict] = []


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/keep":
        KEPT.append(environ)
    elif path == "/change":
        environ["app.added"] = "by /change"
        environ["PATH_INFO"] = "/changed-by-the-app"
    data = {}
    if path == "/report":
        kept = KEPT[-1] if KEPT else {}
        data = {
            "kept": {k: kept.get(k) for k in ("PATH_INFO", "QUERY_STRING", "HTTP_X_TAG")},
            "own": {
                k: environ.get(k) for k in ("PATH_INFO", "QUERY_STRING", "HTTP_X_TAG", "app.added")
            },
        }
    body = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
