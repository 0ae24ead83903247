"""A Flask application served by ferrule: ``ferrule examples.flask_app:app``.

Routes:

- ``GET /``: an HTML page linking the others.
- ``GET /api/items``: the items as JSON; ``POST /api/items`` with a JSON object
  ``{"name": ...}`` creates one (201, the new item; 400 for anything else).
- ``GET /form`` shows a form; ``POST /form`` (urlencoded) echoes its fields as JSON,
  every value of a repeated field in order.
- ``POST /upload`` (multipart, field ``file``): the file's name, size and SHA-256.
- ``GET /session``: a counter kept in Flask's signed cookie session.
- ``GET /stream?chunks=N&delay=S``: a streamed response, one line per chunk, produced by
  a generator while the request context stays available (``stream_with_context``).

The session is signed with ``FLASK_SECRET_KEY``; the default is for development only.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from flask import Flask, Response, jsonify, request, session, stream_with_context

app = Flask(__name__)
app.secret_key = os.environ.get(
    "FLASK_SECRET_KEY", "dev-only-secret-set-FLASK_SECRET_KEY-in-production"
)
app.config["MAX_CONTENT_LENGTH"] = 32 * 1024 * 1024

# In-memory store: shared by the server's threads, so guarded by a lock.
_items: list[dict[str, Any]] = [{"id": 1, "name": "ferrule"}]
_items_lock = threading.Lock()

INDEX = """<!doctype html>
<html><head><title>ferrule + Flask</title></head>
<body>
<h1>Flask on ferrule</h1>
<ul>
  <li><a href="/api/items">/api/items</a> (JSON)</li>
  <li><a href="/form">/form</a> (form POST)</li>
  <li><a href="/session">/session</a> (cookie session counter)</li>
  <li><a href="/stream">/stream</a> (streamed response)</li>
</ul>
<form action="/upload" method="post" enctype="multipart/form-data">
  <input type="file" name="file"> <button>Upload</button>
</form>
</body></html>
"""

FORM = """<!doctype html>
<html><body>
<form action="/form" method="post">
  <input name="name"> <input name="message"> <button>Send</button>
</form>
</body></html>
"""


@app.get("/")
def index() -> str:
    return INDEX


@app.get("/api/items")
def list_items() -> Response:
    with _items_lock:
        return jsonify(list(_items))


@app.post("/api/items")
def create_item() -> tuple[Response, int]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return jsonify(error='expected a JSON object with a string "name"'), 400
    with _items_lock:
        item = {"id": max((i["id"] for i in _items), default=0) + 1, "name": data["name"]}
        _items.append(item)
    return jsonify(item), 201


@app.get("/form")
def show_form() -> str:
    return FORM


@app.post("/form")
def echo_form() -> Response:
    return jsonify(fields=request.form.to_dict(flat=False))


@app.post("/upload")
def upload() -> Response | tuple[Response, int]:
    upload = request.files.get("file")
    if upload is None:
        return jsonify(error='expected a multipart field named "file"'), 400
    digest = hashlib.sha256()
    size = 0
    while block := upload.stream.read(64 * 1024):
        digest.update(block)
        size += len(block)
    return jsonify(filename=upload.filename, size=size, sha256=digest.hexdigest())


@app.get("/session")
def session_counter() -> Response:
    session["count"] = session.get("count", 0) + 1
    return jsonify(count=session["count"])


@app.get("/stream")
def stream() -> Response:
    @stream_with_context
    def generate() -> Iterator[str]:
        # Reading request.args here, after the view returned, is what
        # stream_with_context makes possible.
        chunks = min(request.args.get("chunks", 5, type=int), 1000)
        delay = min(request.args.get("delay", 0.0, type=float), 2.0)
        for number in range(chunks):
            if number and delay:
                time.sleep(delay)
            yield f"chunk {number}\n"

    return Response(generate(), mimetype="text/plain")
