#!/usr/bin/env python
"""The seed's second program, ported to Python 3 and served by ferrule.

Two changes from the seed: the import names ferrule's ``make_server`` instead of
wsgiref's, and the body is an iterable of bytes, as PEP 3333 requires under Python 3
(the seed returned a ``str``, a Python 2 habit). The port comes from ``PORT``
(default 8000, as in the seed) so that tests can pick a free one.

Run it with ``python examples/seed_hello.py``, or serve ``RunServer`` with the CLI:
``ferrule examples.seed_hello:RunServer``.
"""

import os

from ferrule.simple_server import make_server


def RunServer(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/html")])
    return [b"<h1>Hello, web!</h1>"]


if __name__ == "__main__":
    httpd = make_server("", int(os.environ.get("PORT", "8000")), RunServer)
    print(f"Serving HTTP on port {httpd.server_port}...", flush=True)
    httpd.serve_forever()
