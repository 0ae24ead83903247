#!/usr/bin/env python
"""The seed's third program, a hand-written URL router, ported to Python 3.

As in ``seed_hello.py``, only the import (ferrule's ``make_server``) and the bodies
(bytes, in an iterable) changed; the port comes from ``PORT`` (default 8000). The
routing logic is the seed's: a tuple of ``(url, function)`` pairs searched in order
for an exact match on ``PATH_INFO``.

Run it with ``python examples/seed_urls.py``, or ``ferrule examples.seed_urls:RunServer``.
"""

import os

from ferrule.simple_server import make_server


def index():
    return b"index"


def login():
    return b"login"


def routers():
    urlpatterns = (
        ("/index/", index),
        ("/login/", login),
    )

    return urlpatterns


def RunServer(environ, start_response):
    # The seed's bug, kept on purpose: an unknown URL also gets "200 OK", because the
    # status is sent before the route is looked up. ferrule.routing fixes it later
    # (a real 404 status, and 405 with Allow for a known path under another method).
    start_response("200 OK", [("Content-Type", "text/html")])
    url = environ["PATH_INFO"]
    urlpatterns = routers()
    func = None
    for item in urlpatterns:
        if item[0] == url:
            func = item[1]
            break
    if func:
        return [func()]
    else:
        return [b"404 not found"]


if __name__ == "__main__":
    httpd = make_server("", int(os.environ.get("PORT", "8000")), RunServer)
    print(f"Serving HTTP on port {httpd.server_port}...", flush=True)
    httpd.serve_forever()
