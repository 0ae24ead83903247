"""``app`` for the nginx reverse-proxy test: which instance answered, and what it saw.

Each ferrule instance runs with ``--env INSTANCE=<name>``; the answer is JSON with that
name, the worker's pid, the proxy-relevant environ keys and, for a request with a body,
its length and SHA-256 (the body is read in small pieces, the way a streaming app would).
"""

from __future__ import annotations

import hashlib
import json
import os

KEYS = (
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "REMOTE_ADDR",
    "wsgi.url_scheme",
    "HTTP_HOST",
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "CONTENT_LENGTH",
    "HTTP_TRANSFER_ENCODING",
    "SERVER_PROTOCOL",
)


def app(environ, start_response):
    payload = {
        "instance": os.environ.get("INSTANCE"),
        "pid": os.getpid(),
        "environ": {key: environ.get(key) for key in KEYS},
    }
    if environ["REQUEST_METHOD"] in ("POST", "PUT"):
        digest = hashlib.sha256()
        length = 0
        stream = environ["wsgi.input"]
        while True:
            chunk = stream.read(8192)
            if not chunk:
                break
            digest.update(chunk)
            length += len(chunk)
        payload["body_len"] = length
        payload["body_sha256"] = digest.hexdigest()
    data = json.dumps(payload, sort_keys=True).encode("ascii")
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]
