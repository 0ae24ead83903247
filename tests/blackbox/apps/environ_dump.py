"""``app`` answers with its environ, in the dict's order, and the body it read, as JSON.

Every entry whose value JSON can hold as it is (``str``, ``bool``, ``int``, the
``wsgi.version`` tuple) is kept, as ``[key, value]`` pairs in iteration order; the
objects (``wsgi.input``, ``wsgi.errors``, ``wsgi.file_wrapper``) are left out. The
body is read whole and reported as latin-1 text; ``thread`` names the thread that ran
the call (the event loop's for the inline path, a worker thread's otherwise).
"""

from __future__ import annotations

import json
import threading


def app(environ, start_response):
    body = environ["wsgi.input"].read()
    pairs = [
        [key, list(value) if isinstance(value, tuple) else value]
        for key, value in environ.items()
        if isinstance(value, (str, bool, int, tuple))
    ]
    payload = {
        "environ": pairs,
        "body": body.decode("latin-1"),
        "thread": threading.current_thread().name,
    }
    data = json.dumps(payload).encode("ascii")
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]
