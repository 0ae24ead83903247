#!/usr/bin/env python
"""The seed's third program, rewritten on :mod:`ferrule.routing`.

The seed's ``routers()`` tuple is kept as written and handed to :class:`Router`; what
changes is HTTP: an unknown URL is now a real ``404 Not Found`` (the seed sent
``'404 not found'`` under status 200), ``POST /index/`` is a 405 with ``Allow``, HEAD
works, and ``/index`` redirects to ``/index/``. The rest shows what grew around it:
typed parameters, a form post, JSON in and out, and an included sub-router.

Serve it with ``ferrule examples.seed_router:app`` from the repository root, or run
``python examples/seed_router.py`` (port from ``PORT``, default 8000).
"""

import os
from html import escape

from ferrule.routing import HTTPError, Request, Router


def index():
    return "index"


def login():
    return "login"


def routers():
    urlpatterns = (
        ("/index/", index),
        ("/login/", login),
    )

    return urlpatterns


app = Router(routers())


@app.route("/login/", methods=["POST"])
def login_submit(request: Request):
    user = request.form().get("user", "")
    if not user:
        raise HTTPError(400, "user is required")
    return f"<h1>Welcome, {escape(user)}</h1>"


@app.route("/users/{id:int}")
def user(id: int):
    return {"id": id, "type": type(id).__name__}


@app.route("/users/{name}/files/{path:path}")
def user_file(name: str, path: str):
    return {"name": name, "path": path}


@app.route("/users/me")
def me():
    return "<h1>It's you</h1>"


# A sub-router, included under /api: its routes join this one's matcher.
api = Router()


@api.route("/echo", methods=["POST", "PUT"])
def echo(request: Request):
    return {
        "method": request.method,
        "json": request.json(),
        "query": {key: request.query.getall(key) for key in request.query},
    }, 201


@api.route("/upload", methods=["POST"])
def upload(request: Request):
    form = request.form()
    files = {key: value for key, value in form.items() if not isinstance(value, str)}
    return {
        "fields": {key: value for key, value in form.items() if isinstance(value, str)},
        "files": {key: [f.filename, f.content_type, len(f.data)] for key, f in files.items()},
    }


app.include(api, prefix="/api")


if __name__ == "__main__":
    from ferrule.simple_server import make_server

    httpd = make_server("", int(os.environ.get("PORT", "8000")), app)
    print(f"Serving HTTP on port {httpd.server_port}...", flush=True)
    httpd.serve_forever()
