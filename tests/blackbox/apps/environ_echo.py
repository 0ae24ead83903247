"""``app`` answers with the request's environ as JSON, with the type of every value.

``?read=1`` reads the whole body first (its length and text are reported);
``?errors=<tag>`` writes the tag to ``wsgi.errors`` with write(), writelines() and flush().
"""

from __future__ import annotations

import json
import os

from apps import query


def _plain(value: object) -> object:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return f"<{type(value).__name__}>"


def app(environ, start_response):
    q = query(environ)
    body = None
    if q.get("read"):
        body = environ["wsgi.input"].read()
    if q.get("errors"):
        tag = q["errors"]
        errors = environ["wsgi.errors"]
        errors.write(f"errors-write-{tag}\n")
        errors.writelines([f"errors-writelines-{tag}-a\n", f"errors-writelines-{tag}-b\n"])
        errors.flush()
    try:
        import ferrule

        file_wrapper_ok = environ.get("wsgi.file_wrapper") is ferrule.FileWrapper
    except ImportError:  # pragma: no cover - only when run under another server
        file_wrapper_ok = False
    inp, err = environ.get("wsgi.input"), environ.get("wsgi.errors")
    payload = {
        "environ": {str(k): _plain(v) for k, v in environ.items()},
        "types": {str(k): type(v).__name__ for k, v in environ.items()},
        "key_types": sorted({type(k).__name__ for k in environ}),
        "environ_type": type(environ).__name__,
        "input_methods": all(
            callable(getattr(inp, m, None)) for m in ("read", "readline", "readlines", "__iter__")
        ),
        "errors_methods": all(
            callable(getattr(err, m, None)) for m in ("write", "writelines", "flush")
        ),
        "file_wrapper_is_ferrule": file_wrapper_ok,
        "pid": os.getpid(),
    }
    if body is not None:
        payload["body_len"] = len(body)
        payload["body"] = body.decode("latin-1")
    data = json.dumps(payload, sort_keys=True).encode("ascii")
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]
