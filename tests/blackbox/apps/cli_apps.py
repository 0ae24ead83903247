"""Targets for the command-line tests: a plain app, a non-callable, and helpers."""

from __future__ import annotations

import os
import threading

from apps import query

not_callable = {"this": "is a dict"}

_BARRIER = threading.Barrier(2, timeout=30)


def app(environ, start_response):
    """``/osenv?name=X`` answers ``os.environ[X]``; ``/barrier`` waits for a 2nd request."""
    if environ["PATH_INFO"] == "/osenv":
        body = os.environ.get(query(environ)["name"], "<unset>").encode()
    elif environ["PATH_INFO"] == "/barrier":
        _BARRIER.wait()
        body = b"met"
    else:
        body = b"cli app"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
