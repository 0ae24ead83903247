"""Apps for ``test_adversarial_changes.py``: field echo, files, streams.

- ``/echo?id=X``: JSON of every ``HTTP_*`` and ``CONTENT_*`` environ key, the id, the
  method, the protocol and the body (read whole, its length and SHA-256 prefix).
- ``/file?path=P&offset=O&cl=L&block=B``: ``wsgi.file_wrapper`` over ``P`` seeked to
  ``O``, with ``Content-Length: L`` when given.
- ``/gen?size=N&chunk=C&seed=S``: a generator body of ``N`` deterministic bytes.
- ``/small?id=X``: ``small:X``.
- ``/pad?id=X&size=N``: ``pad:X:`` and dots, ``N`` bytes in all (one whole body).
"""

from __future__ import annotations

import hashlib
import json

from apps import query


def pattern(size: int, seed: int = 0) -> bytes:
    """``size`` deterministic bytes."""
    block = bytes((i * 7 + seed) % 251 for i in range(65536))
    reps, rest = divmod(size, len(block))
    return block * reps + block[:rest]


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = query(environ)
    if path == "/echo":
        body = environ["wsgi.input"].read()
        fields = {k: v for k, v in environ.items() if k.startswith(("HTTP_", "CONTENT_"))}
        payload = {
            "id": q.get("id"),
            "method": environ["REQUEST_METHOD"],
            "protocol": environ["SERVER_PROTOCOL"],
            "fields": fields,
            "body_len": len(body),
            "body_sha": hashlib.sha256(body).hexdigest()[:16],
        }
        out = json.dumps(payload, sort_keys=True).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))]
        )
        return [out]
    if path == "/file":
        f = open(q["path"], "rb")  # noqa: SIM115 - closed by the file wrapper
        offset = int(q.get("offset", "0"))
        if offset:
            f.seek(offset)
        headers = [("Content-Type", "application/octet-stream")]
        if "cl" in q:
            headers.append(("Content-Length", q["cl"]))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, int(q.get("block", "65536")))
    if path == "/gen":
        size, chunk, seed = int(q["size"]), int(q.get("chunk", "65536")), int(q.get("seed", "0"))
        data = pattern(size, seed)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (data[i : i + chunk] for i in range(0, size, chunk))
    if path == "/pad":
        out = f"pad:{q.get('id', '')}:".encode()
        out += b"." * (int(q["size"]) - len(out))
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]
    if path == "/small":
        out = f"small:{q.get('id', '')}".encode()
        start_response("200 OK", [("Content-Length", str(len(out)))])
        return [out]
    start_response("404 Not Found", [("Content-Length", "0")])
    return [b""]
